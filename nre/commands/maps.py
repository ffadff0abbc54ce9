"""``nre maps``: compute each pair's cached maps (coarse sparse loss maps, dense-level argmax matches, stats)."""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path

HELP = "compute the per-pair map caches shared by every estimator"
log = logging.getLogger("nre.maps")


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


def run(args) -> int:
    import pandas as pd
    import torch

    from nre import cache
    from nre.chunks import select_chunk
    from nre.data.pairs import load_pair
    from nre.features import get_backend

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = get_backend(args.features, **json.loads(args.features_options))
    table = select_chunk(pd.read_csv(args.pairs), args.chunk)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (_, row) in enumerate(table.iterrows()):
        t0 = time.perf_counter()
        path = out / f"{row['pair_id']}.npz"
        status, err = "ok", ""
        try:
            if cache.is_current(path, row["pair_id"], backend):
                status = "cached"
            else:
                pair = load_pair(args.root, row).capped(args.max_points, args.seed)
                arrays, _ = cache.compute_pair_cache(pair, backend)
                cache.save(path, arrays)
        except Exception as e:  # one failing pair never kills the run
            status, err = "failed", f"{type(e).__name__}: {e}"
            log.warning("pair %s failed: %s\n%s", row["pair_id"], err, traceback.format_exc(limit=3))
        dt = time.perf_counter() - t0
        rows.append({"pair_id": row["pair_id"], "path": str(path), "status": status, "error": err, "seconds": dt})
        if (i + 1) % 10 == 0 or i + 1 == len(table):
            log.info("maps %d/%d (%s)", i + 1, len(table), args.chunk or "all")
    if args.manifest:
        Path(args.manifest).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=["pair_id", "path", "status", "error", "seconds"]).to_csv(args.manifest, index=False)
    failed = sum(r["status"] == "failed" for r in rows)
    print(f"{len(rows)} pairs, {failed} failed")
    return 0
