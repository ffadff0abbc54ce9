"""The maps job (``nre maps``): each pair's cached maps (coarse sparse loss maps, dense-level argmax matches, stats).

One ``<pair_id>.npz`` per pair in ``out_dir`` (format: ``nre.maps.cache``). A pair whose cache exists with the same
layout version, backend options, point cap and seed, an intact content digest and the digests of the same inputs
(images, points, cameras) is reused, so a rerun computes only what is new or altered. A failing pair is recorded in
the manifest (status ``failed`` and the error) and in ``<pair_id>.npz.failed`` (its old cache removed, so that
``nre estimate`` records this error for the pair), and never stops the job. Descriptor maps of an image shared by
several pairs are extracted once per job and kept in memory (``NRE_FEATURE_MEMO_MB``, default 512; 0 turns it off),
so a pair's feature time in its cache reflects that.

Manifest columns: pair_id, path, status (ok / failed), error, seconds, cached (reused an existing file), n_points,
bytes.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nre.errors import OptionError

log = logging.getLogger("nre.maps")
MANIFEST_COLUMNS = ["pair_id", "path", "status", "error", "seconds", "cached", "n_points", "bytes"]


@dataclass
class MapsSummary:
    pairs: int
    computed: int
    reused: int
    failed: int
    manifest: pd.DataFrame


def _one_pair(row, out: Path, backend, *, root, max_points, seed, force, matches, exports) -> dict:
    """The manifest record of one pair, computing (or reusing) its cache; a failure is recorded, never raised."""
    from nre.data.pairs import load_pair
    from nre.maps import cache

    t0 = time.perf_counter()
    pid = str(row["pair_id"])
    rec = {"pair_id": pid, "path": "", "status": "ok", "error": "", "cached": False, "n_points": 0}
    path = None
    try:
        path = cache.cache_path(out, pid)  # an id such as ../x is a failed row, never a file outside out
        rec["path"] = str(path)
        pair = load_pair(root, row)
        capped = pair.capped(max_points, seed)  # its digests: an altered or stale cache is recomputed
        current = not force and cache.is_current(path, pid, backend, max_points, seed, matches=matches, pair=capped)
        if current and exports is None:
            rec["cached"] = True
            rec["n_points"] = len(cache.read_fields(path, ["point_index"])["point_index"])
        else:
            if current:
                arrays = cache.load(path)
                rec["cached"] = True
            else:
                arrays = cache.compute_pair_cache(pair, backend, max_points, seed, matches=matches)
                cache.save(path, arrays)
            rec["n_points"] = int(len(arrays["point_index"]))
            if exports is not None:
                exports.append((capped, arrays))
        rec["bytes"] = path.stat().st_size
    except Exception as e:  # one failing pair never kills the job
        rec.update(status="failed", error=f"{type(e).__name__}: {e}", bytes=0)
        if path is not None:  # nre estimate reports this error for the pair
            cache.mark_failed(path, rec["error"])
        log.warning("pair %s failed: %s\n%s", pid, rec["error"], traceback.format_exc(limit=3))
    rec["seconds"] = time.perf_counter() - t0
    return rec


def compute_maps(
    *,
    pairs: str | Path,
    root: str | Path,
    out_dir: str | Path,
    features: str = "dsift",
    features_options: dict | None = None,
    chunk: str | None = None,
    max_points: int = 1000,
    seed: int = 0,
    threads: int | None = None,
    manifest: str | Path | None = None,
    force: bool = False,
    matches: bool = True,
    export_h5: str | Path | None = None,
) -> MapsSummary:
    """The map caches of the pairs of chunk ``chunk`` of the pair table ``pairs`` in ``out_dir`` (see the module
    docstring); ``matches=False`` computes coarse maps only (a backend only coarse-to-fine NRE uses), ``force``
    recomputes current caches, ``manifest`` gets one row per pair, ``export_h5`` the chunk's matches and coarse maps
    as HDF5."""
    from nre.data.pairs import read_pair_table
    from nre.features import get_backend
    from nre.features.base import enable_memo, memo_mb_default
    from nre.progress import Progress
    from nre.threads import set_threads
    from nre.workflow.chunks import select_chunk

    if not matches and export_h5:
        raise OptionError("--export-h5 writes matches; it cannot be combined with --no-matches")
    set_threads(threads)
    backend = get_backend(features, **(features_options or {}))
    enable_memo(backend, memo_mb_default())  # an image's maps serve all its pairs of the chunk
    table = read_pair_table(pairs)
    try:
        table = select_chunk(table, chunk)
    except ValueError as e:
        raise OptionError(f"--chunk: {e}") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exports = [] if export_h5 else None
    label = f"maps {features} chunk {chunk or 'all'}"
    progress = Progress(log, label, len(table))
    rows = []
    for _, row in table.iterrows():
        rec = _one_pair(row, out, backend, root=root, max_points=max_points, seed=seed, force=force,
                        matches=matches, exports=exports)  # fmt: skip
        rows.append(rec)
        progress.step(reused=int(rec["cached"]), failed=int(rec["status"] == "failed"))
    if exports:
        from nre.maps.export import export_h5 as write_h5

        write_h5(export_h5, exports)
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if manifest:
        Path(manifest).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(manifest, index=False)
    if backend.memo is not None:
        log.info("%s: %s", label, backend.memo.summary())
    failed, reused = int((df["status"] == "failed").sum()), int(df["cached"].sum())
    progress.done(f"{len(df) - failed - reused} computed -> {out}")
    return MapsSummary(len(df), len(df) - failed - reused, reused, failed, df)
