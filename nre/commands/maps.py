"""``nre maps``: compute each pair's cached maps (coarse sparse loss maps, dense-level argmax matches, stats).

One ``<pair_id>.npz`` per pair in ``--out-dir`` (format: ``nre.maps.cache``). A pair whose cache exists with the same
layout version, backend options, point cap and seed, an intact content digest and the digests of the same inputs
(images, points, cameras) is skipped, so a rerun computes only what is new or altered. A failing pair is recorded in
the manifest (status ``failed`` and the error) and in ``<pair_id>.npz.failed`` (its old cache removed, so that
``nre estimate`` records this error for the pair), and never stops the run.
Descriptor maps of an image shared by several pairs are extracted once per job and kept in memory
(``NRE_FEATURE_MEMO_MB``, default 512; 0 turns it off), so a pair's feature time in its cache reflects that.
Manifest columns: pair_id, path, status (ok / failed), error, seconds, cached (reused an existing file), n_points,
bytes.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

from nre.commands._args import json_arg

HELP = "compute the per-pair map caches shared by every estimator"
log = logging.getLogger("nre.maps.dense")
MANIFEST_COLUMNS = ["pair_id", "path", "status", "error", "seconds", "cached", "n_points", "bytes"]


def add_arguments(p):
    p.add_argument("--pairs", required=True, help="pair table (CSV)")
    p.add_argument("--root", required=True, help="data root")
    p.add_argument("--features", default="dsift", help="feature backend")
    p.add_argument("--features-options", default="{}", help="backend options (JSON)")
    p.add_argument("--chunk", default=None, help="K/N: the K-th of N chunks of the table")
    p.add_argument("--max-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--manifest", default=None, help="CSV: one row per pair (status, error, seconds)")
    p.add_argument("--force", action="store_true", help="recompute even when a current cache exists")
    p.add_argument(
        "--no-matches",
        action="store_true",
        help="coarse maps only (no dense-level argmax matches): for a backend that only coarse-to-fine NRE uses",
    )
    p.add_argument("--export-h5", default=None, help="also write matches and coarse maps of the chunk to this HDF5")


def run(args) -> int:
    import pandas as pd
    import torch

    from nre.data.pairs import load_pair
    from nre.features import get_backend
    from nre.features.base import enable_memo, memo_mb_default
    from nre.maps import cache
    from nre.workflow.chunks import select_chunk

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_matches and args.export_h5:
        raise SystemExit("nre maps: --export-h5 writes matches; it cannot be combined with --no-matches")
    backend = get_backend(args.features, **json_arg(args.features_options, "--features-options", "nre maps"))
    enable_memo(backend, memo_mb_default())  # an image's maps serve all its pairs of the chunk (NRE_FEATURE_MEMO_MB)
    table = pd.read_csv(args.pairs)
    if "pair_id" not in table.columns:
        raise SystemExit(f"{args.pairs}: no pair_id column (columns: {list(table.columns)})")
    table = select_chunk(table, args.chunk)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, exports = [], []
    t_start = time.perf_counter()
    for i, (_, row) in enumerate(table.iterrows()):
        t0 = time.perf_counter()
        pid = str(row["pair_id"])
        rec = {"pair_id": pid, "path": "", "status": "ok", "error": "", "cached": False, "n_points": 0}
        path = None
        try:
            path = cache.cache_path(out, pid)  # an id such as ../x is a failed row, never a file outside out
            rec["path"] = str(path)
            pair = load_pair(args.root, row)
            current = not args.force and cache.is_current(
                path,
                pid,
                backend,
                args.max_points,
                args.seed,
                matches=not args.no_matches,
                pair=pair.capped(args.max_points, args.seed),  # digests: an altered or stale cache is recomputed
            )
            if current and not args.export_h5:
                rec["cached"] = True
                rec["n_points"] = len(cache.read_fields(path, ["point_index"])["point_index"])
            else:
                if current:
                    arrays = cache.load(path)
                    rec["cached"] = True
                else:
                    arrays = cache.compute_pair_cache(
                        pair, backend, args.max_points, args.seed, matches=not args.no_matches
                    )
                    cache.save(path, arrays)
                rec["n_points"] = int(len(arrays["point_index"]))
                if args.export_h5:
                    exports.append((pair.capped(args.max_points, args.seed), arrays))
            rec["bytes"] = path.stat().st_size
        except Exception as e:  # one failing pair never kills the run
            rec.update(status="failed", error=f"{type(e).__name__}: {e}", bytes=0)
            if path is not None:  # nre estimate reports this error for the pair
                cache.mark_failed(path, rec["error"])
            log.warning("pair %s failed: %s\n%s", pid, rec["error"], traceback.format_exc(limit=3))
        rec["seconds"] = time.perf_counter() - t0
        rows.append(rec)
        if (i + 1) % 10 == 0 or i + 1 == len(table):
            n_failed = sum(r["status"] == "failed" for r in rows)
            n_cached = sum(r["cached"] for r in rows)
            log.info(
                "maps %s: %d/%d pairs (%d reused, %d failed), %.1f s",
                args.chunk or "all",
                i + 1,
                len(table),
                n_cached,
                n_failed,
                time.perf_counter() - t_start,
            )
    if args.export_h5 and exports:
        from nre.maps.export import export_h5

        export_h5(args.export_h5, exports)
    if args.manifest:
        Path(args.manifest).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(args.manifest, index=False)
    if backend.memo is not None:
        log.info("maps %s: %s", args.chunk or "all", backend.memo.summary())
    failed = sum(r["status"] == "failed" for r in rows)
    reused = sum(r["cached"] for r in rows)
    print(f"{len(rows)} pairs: {len(rows) - failed - reused} computed, {reused} reused, {failed} failed")
    return 0
