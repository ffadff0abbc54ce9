"""``nre estimate``: run one estimator (all its sweep settings) over the pairs of a chunk; one row per result.

For each pair of the chunk: ``nre.data.pairs.load_pair`` -> ``PairData.capped(max_points, seed)`` ->
``nre.cache.load_problem(pair, <maps-dir>/<pair_id>.npz, seed', backend)`` with the per-pair seed
``seed' = derive_seed(seed, pair_id, estimator)`` -> ``Estimator.run(problem, settings)`` (every setting of the sweep
in-process, sharing its set-up) -> ``nre.results.rows_from_results``. A pair that fails anywhere (bad data, missing or
stale cache, estimator exception, time-out) gives failure rows for every setting and stage: never dropped, never a
crash of the run. An estimator that needs nothing (``needs`` empty, e.g. ``imported``) gets a Problem without maps.
Rows are written once at the end (atomically) in the schema of ``nre/results.py``. Descriptor maps of an image
shared by several pairs of the chunk are extracted once and kept in memory (``nre.features.base.FeatureMemo``, 512 MB
by default; the environment variable ``NRE_FEATURE_MEMO_MB`` sets it, 0 turns it off): same results, less time.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path

from nre.commands._args import json_arg, set_threads

HELP = "run an estimator over pairs and write the per-pair result rows (parquet)"
log = logging.getLogger("nre.estimate")


def add_arguments(p):
    p.add_argument("--pairs", required=True, help="pair table (CSV, from nre pairs)")
    p.add_argument("--root", required=True, help="data root of the scenes")
    p.add_argument("--maps-dir", required=True, help="directory of the per-pair map caches <pair_id>.npz (nre maps)")
    p.add_argument("--features", default="dsift", help="feature backend of the maps (and of FPR / NRE descriptors)")
    p.add_argument("--features-options", default="{}", help="JSON options of the feature backend")
    p.add_argument("--estimator", required=True, help="registered name or package.module:Class (nre estimators)")
    p.add_argument("--name", default=None, help="label of the estimator column (default: the registered name)")
    p.add_argument("--grid", default=None, help="JSON: hyperparameter -> list of values (default: the estimator's)")
    p.add_argument("--options", default="{}", help="JSON: fixed estimator options")
    p.add_argument("--chunk", default=None, help="K/N: the K-th (0-based) of N contiguous chunks of the pair table")
    p.add_argument("--max-points", type=int, default=1000, help="query point cap per pair (as for nre maps)")
    p.add_argument("--seed", type=int, default=0, help="config seed; per pair: derive_seed(seed, pair_id, estimator)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--out", required=True, help="result rows (parquet)")


def check_grid(cls, grid: dict | None) -> None:
    """A grid may only sweep the estimator's hyperparameters or options: a typo must not fail every pair."""
    if grid is None:
        return
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise SystemExit(f"nre estimate: --grid must map names to non-empty lists, got {grid!r}")
    unknown = set(grid) - set(cls.grid) - set(cls.defaults)
    if unknown:
        raise SystemExit(
            f"nre estimate: {cls.name}: unknown hyperparameters {sorted(unknown)} in --grid "
            f"(grid: {sorted(cls.grid)}, options: {sorted(cls.defaults)})"
        )


def run(args) -> int:
    import pandas as pd

    from baselines import registry
    from nre import cache
    from nre.chunks import select_chunk
    from nre.commands.version import versions
    from nre.data.pairs import load_pair
    from nre.features import get_backend
    from nre.features.base import enable_memo, memo_mb_default
    from nre.problem import EstimateResult, Problem
    from nre.results import rows_from_results, write
    from nre.seeding import derive_seed

    set_threads(args.threads)
    try:
        cls = registry.get(args.estimator)
    except (KeyError, TypeError) as e:
        raise SystemExit(f"nre estimate: {e.args[0] if e.args else e}") from e
    grid = json_arg(args.grid, "--grid", "nre estimate")
    check_grid(cls, grid)
    try:
        est = cls(**json_arg(args.options, "--options", "nre estimate"))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"nre estimate: {e}") from e
    label = args.name or cls.name
    settings = est.settings(grid)
    needs_features = "features" in cls.needs
    foptions = json_arg(args.features_options, "--features-options", "nre estimate")
    # the backend (and torch with it) only for an estimator that reads descriptors: RANSAC jobs never load torch
    backend = get_backend(args.features, **foptions) if needs_features else None
    if backend is not None:  # maps of an image shared by several pairs are extracted once (NRE_FEATURE_MEMO_MB)
        enable_memo(backend, memo_mb_default())
    try:
        table = pd.read_csv(args.pairs, dtype={"pair_id": str})
    except Exception as e:
        raise SystemExit(f"nre estimate: cannot read the pair table {args.pairs}: {e}") from e
    if "pair_id" not in table.columns:
        raise SystemExit(f"nre estimate: {args.pairs} has no pair_id column (columns: {list(table.columns)})")
    try:
        table = select_chunk(table, args.chunk)
    except ValueError as e:
        raise SystemExit(f"nre estimate: --chunk: {e}") from e
    vers = json.dumps(versions(), sort_keys=True)
    stages = cls.stages or (None,)
    rows = []
    n_failed = 0
    t_start = time.perf_counter()
    log.info("%s: %d settings x %d pairs (chunk %s)", label, len(settings), len(table), args.chunk or "all")
    for i, (_, row) in enumerate(table.iterrows()):
        truth = None
        t0 = time.perf_counter()
        try:
            pair = load_pair(args.root, row).capped(args.max_points, args.seed)
            truth = pair.target_pose
            seed = derive_seed(args.seed, row["pair_id"], cls.name)
            if cls.needs:
                path = Path(args.maps_dir) / f"{row['pair_id']}.npz"
                problem = cache.load_problem(pair, path, seed, backend, features=args.features)
            else:  # e.g. imported poses: no maps needed
                problem = Problem(str(row["pair_id"]), pair.points3d, pair.target_camera, seed, pair.target_pose)
            results = est.run(problem, settings)
        except Exception as e:  # a failing pair is recorded for every setting, never dropped
            reason = f"{type(e).__name__}: {e}"
            log.warning("pair %s: %s\n%s", row["pair_id"], reason, traceback.format_exc(limit=3))
            results = [[EstimateResult.failure(reason, stage=s) for s in stages] for _ in settings]
        n_failed += sum(not r.success for res in results for r in res)
        rows += rows_from_results(truth, row.to_dict(), label, settings, results, vers, args.features)
        if (i + 1) % 10 == 0 or i + 1 == len(table):
            log.info(
                "%s: %d/%d pairs, last %.2f s, total %.1f s, %d failed results",
                label,
                i + 1,
                len(table),
                time.perf_counter() - t0,
                time.perf_counter() - t_start,
                n_failed,
            )
    if backend is not None and backend.memo is not None:
        log.info("%s: %s", label, backend.memo.summary())
    df = write(rows, args.out)
    print(f"{label}: {len(table)} pairs, {len(df)} rows, {int((~df['success']).sum())} failures -> {args.out}")
    return 0
