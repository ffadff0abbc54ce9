"""The per-pair map cache shared by every estimator of a run.

One npz per pair (``<pair_id>.npz``), format version ``CACHE_VERSION``:

| key | content |
| --- | --- |
| version, pair_id, backend, backend_options (JSON) | identity; a mismatch is an error, never a silent reuse |
| point_index | (N,) indices of the capped query points into the pair's source points |
| coarse_shape/offsets/cells/values/trunc/scale | coarse sparse truncated loss maps (SparseLossMaps, values float16) |
| coarse_argmax, coarse_score, coarse_entropy | per-map stats of the coarse maps |
| match_xy, match_score, match_entropy | argmax of each dense map at the finest level, in target image pixels |
| dense_shape, dense_scale | grid of the dense level (its maps are not stored) |

Descriptors are not cached: estimators that need them recompute them through ``PairFeatures``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from nre.features.access import PairFeatures
from nre.features.base import FeatureBackend
from nre.geometry import map_to_img
from nre.maps import MapStats, SparseLossMaps, dense_maps
from nre.pair import PairData
from nre.problem import Matches, Problem

CACHE_VERSION = 1


class CacheError(ValueError):
    pass


def backend_options(backend: FeatureBackend) -> str:
    opts = backend.options() if hasattr(backend, "options") else {}
    return json.dumps({"name": backend.name, **opts}, sort_keys=True)


def compute_pair_cache(
    pair: PairData, backend: FeatureBackend, coarse_level: str = "coarse", dense_level: str = "fine", chunk: int = 256
) -> tuple[dict, PairFeatures]:
    """Cache arrays of an (already capped) pair, and the PairFeatures used (to reuse its descriptors)."""
    feats = PairFeatures(backend, pair)
    t0 = time.perf_counter()
    tc = feats.target_features(coarse_level)
    coarse, cstats = dense_maps(feats.source_descriptors(coarse_level), tc.desc, 1.0, tc.scale, True, chunk)
    td = feats.target_features(dense_level)
    _, dstats = dense_maps(feats.source_descriptors(dense_level), td.desc, 1.0, td.scale, False, chunk)
    arrays = {
        "version": np.array(CACHE_VERSION),
        "pair_id": np.array(pair.pair_id),
        "backend": np.array(backend.name),
        "backend_options": np.array(backend_options(backend)),
        "point_index": np.asarray(pair.meta.get("point_index", np.arange(pair.n)), dtype=np.int64),
        **coarse.to_arrays("coarse_"),
        "coarse_argmax": cstats.argmax_xy.astype(np.int16),
        "coarse_score": cstats.score.astype(np.float32),
        "coarse_entropy": cstats.entropy.astype(np.float32),
        "match_xy": map_to_img(dstats.argmax_xy, td.scale).astype(np.float32),
        "match_score": dstats.score.astype(np.float32),
        "match_entropy": dstats.entropy.astype(np.float32),
        "dense_shape": np.array(td.desc.shape[1:]),
        "dense_scale": td.scale,
        "seconds": np.array(time.perf_counter() - t0),
    }
    if coarse.shape[0] * coarse.shape[1] < 2**16:
        arrays["coarse_cells"] = arrays["coarse_cells"].astype(np.uint16)
    return arrays, feats


def save(path: str | Path, arrays: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CacheError(f"{path}: no map cache (run `nre maps` first)")
    try:
        z = np.load(path, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise CacheError(f"{path}: unreadable map cache ({type(e).__name__}: {e})") from e
    if int(arrays.get("version", -1)) != CACHE_VERSION:
        raise CacheError(f"{path}: cache version {arrays.get('version')} != {CACHE_VERSION}; recompute the maps")
    return arrays


def is_current(path: str | Path, pair_id: str, backend: FeatureBackend) -> bool:
    try:
        a = load(path)
    except CacheError:
        return False
    return str(a["pair_id"]) == pair_id and str(a["backend_options"]) == backend_options(backend)


def problem_from_arrays(
    pair: PairData, arrays: dict, seed: int, backend: FeatureBackend | None = None, source: str = ""
) -> Problem:
    if str(arrays["pair_id"]) != pair.pair_id:
        raise CacheError(f"{source}: cache is for pair {arrays['pair_id']}, not {pair.pair_id}")
    idx = np.asarray(pair.meta.get("point_index", np.arange(pair.n)))
    if len(idx) != len(arrays["point_index"]) or np.any(idx != arrays["point_index"]):
        raise CacheError(
            f"{source}: the cached query points differ from the pair's capped points "
            "(different --max-points or seed); recompute the maps"
        )
    if backend is not None and str(arrays["backend_options"]) != backend_options(backend):
        raise CacheError(f"{source}: cache made with {arrays['backend_options']}, not {backend_options(backend)}")
    coarse = SparseLossMaps.from_arrays(arrays, "coarse_")
    stats = MapStats(
        arrays["coarse_argmax"].astype(np.float64),
        arrays["coarse_score"],
        arrays["coarse_entropy"],
        -np.log(np.maximum(arrays["coarse_score"], 1e-30)),
    )
    matches = Matches(arrays["match_xy"].astype(np.float64), arrays["match_score"], arrays["match_entropy"])
    return Problem(
        pair_id=pair.pair_id,
        points3d=pair.points3d,
        camera=pair.target_camera,
        seed=seed,
        gt_pose=pair.target_pose,
        matches=matches,
        coarse_maps=coarse,
        coarse_stats=stats,
        features=PairFeatures(backend, pair) if backend is not None else None,
        extras={
            "dense_shape": tuple(int(v) for v in arrays["dense_shape"]),
            "dense_scale": arrays["dense_scale"],
            "pair": pair,
        },
    )


def load_problem(pair: PairData, cache_path: str | Path, seed: int, backend: FeatureBackend | None = None) -> Problem:
    """The Problem of an (already capped) pair from its cache file."""
    return problem_from_arrays(pair, load(cache_path), seed, backend, str(cache_path))


def build_problem(pair: PairData, backend: FeatureBackend, seed: int) -> Problem:
    """Compute the maps in memory (no cache file) and return the Problem, its features ready for reuse."""
    arrays, feats = compute_pair_cache(pair, backend)
    prob = problem_from_arrays(pair, arrays, seed, None)
    prob.features = feats
    return prob
