"""``nre estimate``: run one estimator (all its sweep settings) over the pairs of a chunk; one row per result."""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path

HELP = "run an estimator over pairs and write the per-pair result rows (parquet)"
log = logging.getLogger("nre.estimate")


def add_arguments(p):
    p.add_argument("--pairs", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--maps-dir", required=True)
    p.add_argument("--features", default="dsift")
    p.add_argument("--features-options", default="{}")
    p.add_argument("--estimator", required=True, help="registered name or package.module:Class")
    p.add_argument("--grid", default=None, help="JSON: hyperparameter -> list of values (default: the estimator's)")
    p.add_argument("--options", default="{}", help="JSON: fixed estimator options")
    p.add_argument("--chunk", default=None)
    p.add_argument("--max-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True, help="result rows (parquet)")


def run(args) -> int:
    import pandas as pd
    import torch

    from baselines import registry
    from nre import cache
    from nre.chunks import select_chunk
    from nre.commands.version import versions
    from nre.data.pairs import load_pair
    from nre.features import get_backend
    from nre.problem import EstimateResult
    from nre.results import rows_from_results, write
    from nre.seeding import derive_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    cls = registry.get(args.estimator)
    est = cls(**json.loads(args.options))
    settings = est.settings(json.loads(args.grid) if args.grid else None)
    backend = get_backend(args.features, **json.loads(args.features_options))
    needs_features = "features" in cls.needs
    table = select_chunk(pd.read_csv(args.pairs), args.chunk)
    vers = json.dumps(versions(), sort_keys=True)
    rows = []
    t_start = time.perf_counter()
    for i, (_, row) in enumerate(table.iterrows()):
        gt = None
        try:
            pair = load_pair(args.root, row).capped(args.max_points, args.seed)
            gt = pair.target_pose
            seed = derive_seed(args.seed, row["pair_id"], cls.name)
            problem = cache.load_problem(
                pair, Path(args.maps_dir) / f"{row['pair_id']}.npz", seed, backend if needs_features else None
            )
            results = est.run(problem, settings)
        except Exception as e:  # a failing pair is recorded for every setting, never dropped
            reason = f"{type(e).__name__}: {e}"
            log.warning("pair %s: %s\n%s", row["pair_id"], reason, traceback.format_exc(limit=3))
            stages = cls.stages or (None,)
            results = [[EstimateResult.failure(reason, stage=s) for s in stages] for _ in settings]
        rows += rows_from_results(row.to_dict(), cls.name, settings, results, gt, vers, args.features)
        if (i + 1) % 10 == 0 or i + 1 == len(table):
            log.info("%s: %d/%d pairs (%.1f s)", cls.name, i + 1, len(table), time.perf_counter() - t_start)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df = write(rows, args.out)
    print(f"{cls.name}: {len(df)} rows, {int((~df['success']).sum())} failures")
    return 0
