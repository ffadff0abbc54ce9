"""The per-pair map cache shared by every estimator of a run (``nre maps`` writes it, ``nre estimate`` reads it).

One compressed npz per pair, ``<pair_id>.npz`` (``cache_path``; ids checked by ``check_pair_id``). Layout
version ``CACHE_VERSION`` (this file's keys); the sparse map arrays follow ``nre.maps.dense.FORMAT_VERSION`` (stored as
``maps_format``). Both are checked on load: a mismatch is an error asking to recompute, never a silent reuse. (*)
Backend options are compared by ``same_backend``: without the weights' file paths when their sha256 is recorded, so a
moved checkout keeps its caches.

Two digests make a cache that was altered, or that was made from other inputs, detectable. ``content_digest`` is
the sha256 of every other array (name, dtype, shape, bytes), set by ``save``; ``inputs`` holds the sha256 of what
the maps were computed from (``input_digests``: the bytes of both image files, the capped 3D points, the source
camera and pose, the target camera). ``nre maps`` recomputes a cache whose digests do not match (``is_current``);
``nre estimate`` (``load_problem``) refuses it, a recorded failure of the pair naming what differs (rerun ``nre
maps``): the estimate jobs read the maps, they never make them. Layout 2 caches (before the digests) are refused
with the message to recompute. When ``nre maps`` fails for a pair it removes the pair's old cache and writes
``<pair_id>.npz.failed`` (the error), which ``load`` reports instead of "no map cache".

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
| inputs | JSON str | sha256 of the inputs (``input_digests``) |
| content_digest | str | sha256 of all the other arrays (``content_digest``) |

Coarse maps are stored with offsets int32, cells uint16 (grids of at most 65536 cells) and values float16.
Dense-level maps are computed in chunks of points by ``nre.maps.dense.dense_maps`` and reduced to their argmax on the
fly: memory stays at chunk x cells. Non-finite maps (e.g. a temperature so small that the logits overflow) are an
error naming the pair, never a cache of garbage argmaxes. Descriptors are not cached: estimators that need them
recompute them lazily through ``PairFeatures``. Budget: 2 MB per pair at 1000 points (tested; measured sizes in
docs/results-log.md, ``scripts/bench_maps.py`` measures them).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from nre.data.pairdata import PairData, check_pair_id
from nre.estimators.problem import Matches, Problem
from nre.features.access import PairFeatures
from nre.features.base import FeatureBackend
from nre.geometry import map_to_img
from nre.maps.dense import FORMAT_VERSION, MapStats, SparseLossMaps, dense_maps

CACHE_VERSION = 3
IDENTITY_KEYS = ("version", "maps_format", "pair_id", "backend_options", "max_points", "seed")
DIGEST_KEY = "content_digest"


class CacheError(ValueError):
    pass


def content_digest(arrays: dict) -> str:
    """sha256 of every array but ``content_digest`` itself (name, dtype, shape and bytes, keys sorted)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        if k == DIGEST_KEY:
            continue
        a = np.asarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes() if a.dtype.kind != "O" else str(a.tolist()).encode())
    return h.hexdigest()


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else np.ascontiguousarray(p, dtype=np.float64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def _camera_digest(cam) -> str:
    return _sha(f"{cam.model} {cam.width} {cam.height}".encode(), np.asarray(cam.params, dtype=np.float64))


def input_digests(pair: PairData) -> dict:
    """sha256 of what a (capped) pair's maps are computed from: both image files' bytes, the 3D points, the source
    camera and pose (where the query descriptors are sampled) and the target camera. Reads the two image files."""
    out = {}
    for side in ("source", "target"):
        path = Path(getattr(pair, f"{side}_image"))
        try:
            out[f"{side}_image"] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as e:
            raise CacheError(f"{path}: cannot read the image ({e.strerror or e})") from e
    out["points3d"] = _sha(pair.points3d)
    out["source_camera"] = _camera_digest(pair.source_camera)
    out["source_pose"] = _sha(pair.source_pose.matrix)
    out["target_camera"] = _camera_digest(pair.target_camera)
    return out


def inputs_mismatch(stored, pair: PairData, digests: dict | None = None) -> list[str]:
    """The inputs (names of ``input_digests``) that differ between a cache's ``inputs`` JSON and ``pair``."""
    try:
        old = json.loads(str(stored))
    except (TypeError, ValueError):
        return ["inputs (unreadable record)"]
    new = input_digests(pair) if digests is None else digests
    return [k for k in new if old.get(k) != new[k]]


def _describe_inputs(pair: PairData, keys: list[str]) -> str:
    names = {"source_image": f"source image {pair.source_image}", "target_image": f"target image {pair.target_image}"}
    return ", ".join(names.get(k, k.replace("_", " ")) for k in keys)


def failure_marker(path: str | Path) -> Path:
    """``<pair_id>.npz.failed``: the error of ``nre maps`` for a pair it could not make (see ``mark_failed``)."""
    path = Path(path)
    return path.with_name(path.name + ".failed")


def mark_failed(path: str | Path, error: str) -> None:
    """Record that ``nre maps`` failed for this cache: the old cache (not current, or it would not have been
    recomputed) is removed and the error kept, so that ``nre estimate`` reports it truthfully."""
    path = Path(path)
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    failure_marker(path).write_text(" ".join(str(error).split()) + "\n")


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
    keep_dense: bool = False,
) -> tuple[dict, PairFeatures, PairData, SparseLossMaps | None]:
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
    dense = None
    if matches:  # the dense-level maps themselves only when asked (in-memory problems: single-level NRE reads them)
        dense, dstats = dense_maps(src_d, td.desc, 1.0, td.scale, keep_dense, chunk)
    t3 = time.perf_counter()
    bad = [
        name
        for name, ok in (
            ("coarse maps", np.isfinite(cstats.score).all() and np.isfinite(coarse.values).all()),
            ("dense-level maps", not matches or bool(np.isfinite(dstats.score).all())),
        )
        if not ok
    ]
    if bad:
        raise ValueError(
            f"pair {pair.pair_id}: non-finite {' and '.join(bad)} ({backend.name} backend, temperature "
            f"{backend.temperature}): the softmax overflowed or the descriptors are broken"
        )
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
        "inputs": np.array(json.dumps(input_digests(pair), sort_keys=True)),
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
    return arrays, feats, pair, dense


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


def cache_path(maps_dir: str | Path, pair_id) -> Path:
    """``<maps_dir>/<pair_id>.npz``; an id that could leave ``maps_dir`` (``../x``, ``a/b``) is an InputError."""
    return Path(maps_dir) / f"{check_pair_id(pair_id)}.npz"


def save(path: str | Path, arrays: dict) -> Path:
    """Write atomically (a crash never leaves a truncated cache that looks current), with the ``content_digest`` of
    the arrays; removes an earlier failure marker of the pair."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **{**arrays, DIGEST_KEY: np.array(content_digest(arrays))})
    tmp.replace(path)
    failure_marker(path).unlink(missing_ok=True)
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
        marker = failure_marker(path)
        if marker.exists():
            raise CacheError(f"{path}: no map cache, `nre maps` failed for this pair: {marker.read_text().strip()}")
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
    if DIGEST_KEY not in arrays or str(arrays[DIGEST_KEY]) != content_digest(arrays):
        raise CacheError(
            f"{path}: content digest mismatch: the cache was altered after `nre maps` wrote it (or not written by "
            "it); recompute the maps (`nre maps --force`)"
        )
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
    pair: PairData | None = None,
) -> bool:
    """True if ``path`` holds this pair's cache with this layout, backend options and (when given) cap and seed;
    with ``matches``, only a cache that has the dense-level matches (a coarse-only one is recomputed). With ``pair``
    (capped as the cache), also the content digest (an altered file) and the input digests (other images, points or
    cameras) are checked: this reads the whole cache and the two image files."""
    ident = read_identity(path)
    if ident is None:
        return False
    if pair is not None:
        try:
            arrays = load(path)
        except CacheError:
            return False
        if "inputs" not in arrays or inputs_mismatch(arrays["inputs"], pair):
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
    if "inputs" in arrays and DIGEST_KEY in arrays:  # a saved cache (layout 3); not arrays computed in memory
        differ = inputs_mismatch(arrays["inputs"], pair)
        if differ:
            raise CacheError(
                f"{where}: cache made from other inputs: the {_describe_inputs(pair, differ)} changed since `nre "
                "maps` made it; recompute the maps (`nre maps`)"
            )
    coarse = SparseLossMaps.from_arrays(arrays, "coarse_")
    score = np.asarray(arrays["coarse_score"], dtype=np.float32)
    stats = MapStats(
        np.asarray(arrays["coarse_argmax"], dtype=np.float64),
        score,
        np.asarray(arrays["coarse_entropy"], dtype=np.float32),
        -np.log(np.maximum(score, 1e-30)),
    )
    matches = None
    extras = {"pair": pair, "cache_digest": str(arrays[DIGEST_KEY]) if DIGEST_KEY in arrays else None}
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
    arrays, feats, capped, dense = _compute(pair, backend, max_points, seed, keep_dense=True)
    prob = problem_from_arrays(capped, arrays, seed, None)
    prob.features = feats
    prob.dense_maps = dense  # computed once here, not again by single-level NRE
    prob.extras["seconds"] = arrays["seconds"]
    return prob
