"""The per-pair map cache shared by every estimator of a run (``nre maps`` writes it, ``nre estimate`` reads it).

One compressed npz per pair, ``<pair_id>.npz``. Layout version ``CACHE_VERSION`` (this file's keys); the sparse
map arrays follow ``nre.maps.FORMAT_VERSION`` (stored as ``maps_format``). Both are checked on load: a mismatch is
an error asking to recompute, never a silent reuse. (*) Backend options are compared by ``same_backend``: without
the weights' file paths when their sha256 is recorded, so a moved checkout keeps its caches.

| key | dtype, shape | content |
| --- | --- | --- |
| version, maps_format | int | layout versions |
| pair_id | str | the pair |
| backend, backend_options | str, JSON str | feature backend name and every option that changes the maps (*) |
| max_points, seed | int (-1 = no cap) | the query-point cap and its seed (``PairData.capped``) |
| point_index | int32 (N,) | the capped query points, indices into the pair's source points |
| coarse_level, dense_level | str | the backend levels used |
| coarse_shape, _offsets, _cells, _values, _trunc, _scale | | coarse sparse truncated loss maps (SparseLossMaps) |
| coarse_argmax | int16 (N, 2) | argmax cell (x, y) of each dense coarse map |
| coarse_score, coarse_entropy | float32 (N,) | its probability; the map's entropy (nats) |
| has_matches | bool | False for a coarse-only cache (``nre maps --no-matches``): the keys below are then absent |
| match_xy | float32 (N, 2) | argmax of each dense map at the dense level, in target image pixels |
| match_score, match_entropy | float32 (N,) | its probability; the map's entropy |
| dense_shape, dense_scale | (2,) | the dense level's grid (h, w) and scale (its maps are never stored) |
| seconds | float64 (4,) | features, coarse maps, dense argmax, total |

Coarse maps are stored with offsets int32, cells uint16 (grids of at most 65536 cells) and values float16.
Dense-level maps are computed in chunks of points by ``nre.maps.dense_maps`` and reduced to their argmax on the
fly: memory stays at chunk x cells. Descriptors are not cached: estimators that need them recompute them lazily
through ``PairFeatures``. Size at 1000 points, dsift defaults, 640 x 480: 0.07 MB (scripts/bench_maps.py; 0.1-0.35 MB
on the quick preset at temperature 0.02, where more cells stay under the truncation). Budget: 2 MB (tested).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from nre.features.access import PairFeatures
from nre.features.base import FeatureBackend
from nre.geometry import map_to_img
from nre.maps import FORMAT_VERSION, MapStats, SparseLossMaps, dense_maps
from nre.pair import PairData
from nre.problem import Matches, Problem

CACHE_VERSION = 2
IDENTITY_KEYS = ("version", "maps_format", "pair_id", "backend_options", "max_points", "seed")


class CacheError(ValueError):
    pass


def backend_options(backend: FeatureBackend) -> str:
    """The backend's identity as a canonical JSON string (name and every option that changes the maps)."""
    opts = backend.options() if hasattr(backend, "options") else {}
    return json.dumps({"name": backend.name, "temperature": float(backend.temperature), **opts}, sort_keys=True)


def backend_identity(options_json: str) -> dict:
    """What makes two backends' maps the same: the options minus the weights' file paths when their content digest
    (``sha256``) is recorded. A checkout moved elsewhere or weights copied to another folder keep their caches."""
    d = json.loads(options_json)
    if d.get("sha256") is not None:
        d.pop("weights", None)
    return d


def options_diff(cached_options: str, backend: FeatureBackend) -> str:
    """The options that differ between a cache's backend_options JSON and a backend, e.g.
    ``strides: {'coarse': 16, 'fine': 4} (cache) vs {'coarse': 8, 'fine': 4}`` (a changed coarse stride)."""
    try:
        a = backend_identity(str(cached_options))
    except (ValueError, TypeError):
        return "unreadable backend_options"
    b = backend_identity(backend_options(backend))
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "; ".join(f"{k}: {a.get(k)!r} (cache) vs {b.get(k)!r}" for k in keys)


def same_backend(cached_options: str, backend: FeatureBackend) -> bool:
    """True if a cache made with ``cached_options`` (its backend_options JSON) comes from this backend's maps."""
    try:
        return backend_identity(str(cached_options)) == backend_identity(backend_options(backend))
    except (ValueError, TypeError):
        return False


def _levels(backend: FeatureBackend, coarse_level: str | None, dense_level: str | None) -> tuple[str, str]:
    levels = tuple(backend.levels)
    c = levels[0] if coarse_level is None else coarse_level
    d = levels[-1] if dense_level is None else dense_level  # the finest level by convention
    for lv in (c, d):
        if lv not in levels:
            raise ValueError(f"backend {backend.name!r} has no level {lv!r} (levels: {levels})")
    return c, d


def _compute(
    pair: PairData,
    backend: FeatureBackend,
    max_points: int | None,
    seed: int,
    coarse_level: str | None = None,
    dense_level: str | None = None,
    chunk: int = 256,
    matches: bool = True,
) -> tuple[dict, PairFeatures, PairData]:
    pair = pair.capped(max_points, seed)
    cl, dl = _levels(backend, coarse_level, dense_level)
    feats = PairFeatures(backend, pair)
    t0 = time.perf_counter()
    src_c = feats.source_descriptors(cl)  # temperature folded in
    src_d = feats.source_descriptors(dl) if matches else None
    if matches:
        feats.release_source_maps()  # only the sampled query descriptors are needed from now on
    tc = feats.target_features(cl)
    td = feats.target_features(dl) if matches else None
    t1 = time.perf_counter()
    coarse, cstats = dense_maps(src_c, tc.desc, 1.0, tc.scale, True, chunk)
    t2 = time.perf_counter()
    if matches:
        _, dstats = dense_maps(src_d, td.desc, 1.0, td.scale, False, chunk)
    t3 = time.perf_counter()
    idx = np.asarray(pair.meta.get("point_index", np.arange(pair.n)), dtype=np.int32)
    arrays = {
        "version": np.array(CACHE_VERSION),
        "maps_format": np.array(FORMAT_VERSION),
        "pair_id": np.array(pair.pair_id),
        "backend": np.array(backend.name),
        "backend_options": np.array(backend_options(backend)),
        "max_points": np.array(-1 if max_points is None else int(max_points)),
        "seed": np.array(int(seed)),
        "point_index": idx,
        "coarse_level": np.array(cl),
        "dense_level": np.array(dl),
        **coarse.to_arrays("coarse_"),
        "coarse_argmax": cstats.argmax_xy.astype(np.int16),
        "coarse_score": cstats.score.astype(np.float32),
        "coarse_entropy": cstats.entropy.astype(np.float32),
        "has_matches": np.array(bool(matches)),
        "seconds": np.array([t1 - t0, t2 - t1, t3 - t2, t3 - t0]),
    }
    if matches:
        arrays.update(
            match_xy=map_to_img(dstats.argmax_xy, td.scale).astype(np.float32),
            match_score=dstats.score.astype(np.float32),
            match_entropy=dstats.entropy.astype(np.float32),
            dense_shape=np.array(td.desc.shape[1:]),
            dense_scale=np.asarray(td.scale, dtype=float),
        )
    arrays["coarse_offsets"] = arrays["coarse_offsets"].astype(np.int32 if coarse.nnz < 2**31 else np.int64)
    if coarse.shape[0] * coarse.shape[1] <= 2**16:
        arrays["coarse_cells"] = arrays["coarse_cells"].astype(np.uint16)
    return arrays, feats, pair


def compute_pair_cache(
    pair: PairData,
    backend: FeatureBackend,
    max_points: int | None = None,
    seed: int = 0,
    *,
    coarse_level: str | None = None,
    dense_level: str | None = None,
    chunk: int = 256,
    matches: bool = True,
) -> dict:
    """The cache arrays of a pair (capped here with ``PairData.capped(max_points, seed)``; a pair capped already
    with the same values is unchanged). Levels default to the backend's first (coarse) and last (finest).
    ``matches=False``: coarse maps only (no dense-level argmax, so no finest-level features either), for a backend
    on which only coarse-to-fine NRE runs (it reads the coarse maps and computes its fine windows itself)."""
    return _compute(pair, backend, max_points, seed, coarse_level, dense_level, chunk, matches)[0]


def save(path: str | Path, arrays: dict) -> Path:
    """Write atomically (a crash never leaves a truncated cache that looks current)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def _check_version(path, version, maps_format) -> None:
    if version != CACHE_VERSION or maps_format != FORMAT_VERSION:
        raise CacheError(
            f"{path}: cache layout {version} / maps format {maps_format}, this code reads "
            f"{CACHE_VERSION} / {FORMAT_VERSION}; recompute the maps (`nre maps`)"
        )


def load(path: str | Path) -> dict:
    """All arrays of a cache file, after its version check; a missing or unreadable file is a CacheError."""
    path = Path(path)
    if not path.exists():
        raise CacheError(f"{path}: no map cache (run `nre maps` first)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise CacheError(f"{path}: unreadable map cache ({type(e).__name__}: {e})") from e
    missing = [k for k in IDENTITY_KEYS if k not in arrays]
    if missing:
        raise CacheError(f"{path}: not a map cache of layout {CACHE_VERSION} (missing {missing}); recompute the maps")
    _check_version(path, int(arrays["version"]), int(arrays["maps_format"]))
    return arrays


def read_fields(path: str | Path, keys=IDENTITY_KEYS) -> dict | None:
    """Some fields of a cache file (reads only those members; scalars as Python values), or None if the file is
    absent, unreadable or lacks one of them."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in keys}
    except Exception:
        return None


def read_identity(path: str | Path) -> dict | None:
    """The identity fields of a cache file (``IDENTITY_KEYS``), or None."""
    return read_fields(path, IDENTITY_KEYS)


def is_current(
    path: str | Path,
    pair_id: str,
    backend: FeatureBackend,
    max_points: int | None = None,
    seed: int | None = None,
    matches: bool = True,
) -> bool:
    """True if ``path`` holds this pair's cache with this layout, backend options and (when given) cap and seed;
    with ``matches``, only a cache that has the dense-level matches (a coarse-only one is recomputed)."""
    ident = read_identity(path)
    if ident is None:
        return False
    if matches and not bool((read_fields(path, ["has_matches"]) or {}).get("has_matches", True)):
        return False  # a coarse-only cache (absent key: a cache with matches, made before the key existed)
    ok = (
        ident["version"] == CACHE_VERSION
        and ident["maps_format"] == FORMAT_VERSION
        and str(ident["pair_id"]) == str(pair_id)
        and same_backend(ident["backend_options"], backend)
    )
    if max_points is not None or seed is not None:
        ok = ok and ident["max_points"] == (-1 if max_points is None else int(max_points))
        ok = ok and (seed is None or ident["seed"] == int(seed))
    return bool(ok)


def problem_from_arrays(
    pair: PairData,
    arrays: dict,
    seed: int,
    backend: FeatureBackend | None = None,
    source: str = "",
    features: str | None = None,
) -> Problem:
    """The Problem of an (already capped) pair from cache arrays, after checking that they belong to it (and, with
    ``backend``, that they were made with its options; without one, ``features`` checks the backend's name)."""
    where = source or "map cache"
    if str(arrays["pair_id"]) != pair.pair_id:
        raise CacheError(f"{where}: cache is for pair {arrays['pair_id']}, not {pair.pair_id}")
    idx = np.asarray(pair.meta.get("point_index", np.arange(pair.n)))
    cached = np.asarray(arrays["point_index"])
    if len(idx) != len(cached) or np.any(idx != cached):
        raise CacheError(
            f"{where}: the cached query points ({len(cached)}, max_points={int(arrays.get('max_points', -1))}, "
            f"seed={int(arrays.get('seed', -1))}) differ from the pair's {len(idx)} capped points "
            "(different --max-points or seed, or a changed pair table); recompute the maps"
        )
    if backend is not None and not same_backend(arrays["backend_options"], backend):
        raise CacheError(
            f"{where}: cache made with other backend options ({options_diff(arrays['backend_options'], backend)}); "
            f"recompute the maps: cache {arrays['backend_options']}, backend {backend_options(backend)}"
        )
    if backend is None and features is not None and str(arrays["backend"]) != features:
        raise CacheError(f"{where}: cache made with the {arrays['backend']} backend, not {features}")
    coarse = SparseLossMaps.from_arrays(arrays, "coarse_")
    score = np.asarray(arrays["coarse_score"], dtype=np.float32)
    stats = MapStats(
        np.asarray(arrays["coarse_argmax"], dtype=np.float64),
        score,
        np.asarray(arrays["coarse_entropy"], dtype=np.float32),
        -np.log(np.maximum(score, 1e-30)),
    )
    matches = None
    extras = {"pair": pair}
    if "match_xy" in arrays:  # a coarse-only cache (nre maps --no-matches) has none: RE estimators then fail
        matches = Matches(
            np.asarray(arrays["match_xy"], dtype=np.float64),
            np.asarray(arrays["match_score"], dtype=np.float32),
            np.asarray(arrays["match_entropy"], dtype=np.float32),
        )
        extras["dense_shape"] = tuple(int(v) for v in arrays["dense_shape"])
        extras["dense_scale"] = np.asarray(arrays["dense_scale"], dtype=float)
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
        extras=extras,
    )


def load_problem(
    pair: PairData,
    cache_path: str | Path,
    seed: int,
    backend: FeatureBackend | None = None,
    features: str | None = None,
) -> Problem:
    """The Problem of an (already capped) pair from its cache file. With a backend, ``Problem.features`` recomputes
    descriptors lazily (only if an estimator asks) and the backend options must match the cache's; without one
    (estimators that read no descriptors), ``features`` names the backend the cache must come from."""
    return problem_from_arrays(pair, load(cache_path), seed, backend, str(cache_path), features)


def build_problem(pair: PairData, backend: FeatureBackend, *args, max_points: int | None = None, seed: int = 0):
    """Compute the maps in memory (no file) and return the Problem, its descriptors kept for the estimators.

    ``build_problem(pair, backend, max_points, seed)``; the older ``build_problem(pair, backend, seed)`` (pair
    capped by the caller) is still accepted. ``seed`` caps the points and is the Problem's seed."""
    if len(args) == 1:
        seed = args[0]
    elif len(args) == 2:
        max_points, seed = args
    elif args:
        raise TypeError("build_problem(pair, backend, max_points, seed) takes at most 4 positional arguments")
    arrays, feats, capped = _compute(pair, backend, max_points, seed)
    prob = problem_from_arrays(capped, arrays, seed, None)
    prob.features = feats
    prob.extras["seconds"] = arrays["seconds"]
    return prob
