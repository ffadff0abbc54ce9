"""``nre estimate``: run one estimator (all its sweep settings) over the pairs of a chunk; one row per result.

For each pair of the chunk: ``nre.data.pairs.load_pair`` -> ``PairData.capped(max_points, seed)`` ->
``nre.maps.cache.load_problem(pair, <maps-dir>/<pair_id>.npz, seed', backend)`` with the per-pair seed
``seed' = derive_seed(seed, pair_id, estimator)`` -> ``Estimator.run(problem, settings)`` (every setting of the sweep
in-process, sharing its set-up) -> ``rows_from_results``. A pair that fails anywhere (bad data, missing or
stale cache, estimator exception, time-out, a crash of the estimator) gives failure rows for every setting and stage,
and every pair has exactly one row per (setting, stage) (a missing one is a failure ``missing stage result``): never
dropped, never a crash of the run. An estimator that needs nothing (``needs`` empty, e.g. ``imported``) gets a
Problem without maps.

The pairs run in one long-lived worker process forked from this one (``nre.estimators.worker``): the estimator option
``timeout_s`` is a real time-out (the worker is killed when a pair's estimator call overruns it, the pair is recorded
as ``time-out (killed ...)`` and a fresh worker takes the next pair), and an estimator that ends the process
(``os._exit``, a segfault) costs its pair only (``worker died: exit code ...``). ``--no-worker`` runs the pairs in
this process (for a debugger): no real time-out, and a crash ends the job. Rows are appended pair by pair to
``<out>.part`` (``partrows``) and assembled into ``--out`` (atomically, ``nre.estimators.rows``) at the end;
a rerun after a crash resumes from the part file when it was made by the same job (same estimator, settings,
backend, seed, code) and the pairs' map caches are unchanged. Descriptor maps of an image shared by several pairs of
the chunk are extracted once and kept in memory (``nre.features.base.FeatureMemo``, 512 MB by default; the
environment variable ``NRE_FEATURE_MEMO_MB`` sets it, 0 turns it off): same results, less time.
"""

from __future__ import annotations

import json
import logging
import sys
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
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the workflow's jobs)")
    p.add_argument("--out", required=True, help="result rows (parquet); <out>.part holds the finished pairs meanwhile")
    p.add_argument(
        "--no-worker",
        action="store_true",
        help="run the pairs in this process (debugging): no real time-out, a crash of the estimator ends the job",
    )


def check_grid(cls, grid: dict | None) -> None:
    """A grid may only sweep the estimator's hyperparameters or options, with values of their declared types: a typo
    or ``threshold: ['four']`` must not fail every pair (``nre.workflow.config.check_grid_values``)."""
    from nre.workflow.config import check_grid_values

    if grid is None:
        return
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise SystemExit(f"nre estimate: --grid must map names to non-empty lists, got {grid!r}")
    problems = check_grid_values(cls, grid)
    if problems:
        raise SystemExit(f"nre estimate: {cls.name}: --grid {problems[0][0]}: {problems[0][1]}")


def check_options(cls, options: dict) -> None:
    from nre.workflow.config import check_options as problems_of

    if not isinstance(options, dict):
        raise SystemExit(f"nre estimate: --options must be a JSON object, got {options!r}")
    problems = problems_of(cls, options)
    if problems:
        raise SystemExit(f"nre estimate: {cls.name}: --options {problems[0][0]}: {problems[0][1]}")


def run(args) -> int:
    import pandas as pd

    from nre.data.pairs import load_pair
    from nre.estimators import registry, worker
    from nre.estimators.base import failures
    from nre.estimators.partrows import PartRows, code_digest, pair_key
    from nre.estimators.problem import EstimateResult, Problem
    from nre.estimators.rows import params_key, rows_from_results, write
    from nre.features import get_backend
    from nre.features.base import enable_memo, memo_mb_default
    from nre.maps import cache
    from nre.seeding import derive_seed
    from nre.versions import versions
    from nre.workflow.chunks import select_chunk

    set_threads(args.threads)
    try:
        cls = registry.get(args.estimator)
    except (KeyError, TypeError) as e:
        raise SystemExit(f"nre estimate: {e.args[0] if e.args else e}") from e
    grid = json_arg(args.grid, "--grid", "nre estimate")
    check_grid(cls, grid)
    options = json_arg(args.options, "--options", "nre estimate")
    check_options(cls, options)
    try:
        est = cls(**options)
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
    pair_rows = [row.to_dict() for _, row in table.iterrows()]
    maps_dir = Path(args.maps_dir)
    limit = est.options.get("timeout_s")

    def estimate_pair(i: int, started) -> tuple[list[dict], str | None]:
        """The rows of pair ``i`` (in the worker) and the content digest of the map cache they come from."""
        row = pair_rows[i]
        truth, digest = None, None if cls.needs else "-"
        try:
            pair = load_pair(args.root, row).capped(args.max_points, args.seed)
            truth = pair.target_pose
            seed = derive_seed(args.seed, row["pair_id"], cls.name)
            if cls.needs:
                path = cache.cache_path(maps_dir, row["pair_id"])  # an id such as ../x fails this pair only
                problem = cache.load_problem(pair, path, seed, backend, args.features)
                digest = problem.extras.get("cache_digest")
            else:  # e.g. imported poses: no maps needed
                problem = Problem(str(row["pair_id"]), pair.points3d, pair.target_camera, seed, pair.target_pose)
            started()
            results = est.run(problem, settings)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # a failing pair is recorded for every setting, never dropped
            reason = f"{type(e).__name__}: {e}"
            log.warning("pair %s: %s\n%s", row["pair_id"], reason, traceback.format_exc(limit=3))
            results = failures(reason, len(settings), stages)
        return rows_from_results(truth, row, label, settings, results, vers, args.features), digest

    def complete(row: dict, rows: list[dict]) -> list[dict]:
        """Exactly one row per (setting, stage), in that order; a missing one is a failure row."""
        by_key = {}
        for r in rows:
            by_key.setdefault((r["params"], r["stage"]), r)
        out = []
        for s in settings:
            for st in stages:
                r = by_key.get((params_key(s), st or ""))
                if r is None:
                    [r] = rows_from_results(
                        None, row, label, [s], [[EstimateResult.failure("missing stage result", stage=st)]], vers,
                        args.features,
                    )  # fmt: skip
                out.append(r)
        if len(out) != len(rows):
            log.warning("pair %s: %d rows for %d (setting, stage) keys", row["pair_id"], len(rows), len(out))
        return out

    def memo_summary(task, started):
        return backend.memo.summary() if backend is not None and backend.memo is not None else None

    def task_fn(task, started):
        return memo_summary(task, started) if task == "memo" else estimate_pair(task, started)

    # resume from the part file of an earlier run of this very job (same fingerprint), pair by pair
    spec = {
        "estimator": label,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "settings": [params_key(s) for s in settings],
        "options": est.options,
        "features": args.features,
        "backend": cache.backend_options(backend) if backend is not None else foptions,
        "max_points": args.max_points,
        "seed": args.seed,
        "root": str(Path(args.root).resolve()),
        "maps_dir": str(maps_dir.resolve()),
        "versions": vers,
        "code": code_digest(str(Path(sys.modules[cls.__module__].__file__ or "").resolve())),
    }
    part = PartRows(Path(args.out).with_name(Path(args.out).name + ".part"), spec)
    entries, found = part.read()
    done: dict[str, dict] = {}
    wanted = {str(r["pair_id"]): r for r in pair_rows}
    for e in entries:
        r = wanted.get(str(e["pair_id"]))
        if r is None or e["pair"] != pair_key(r) or e.get("cache") is None:
            continue
        if cls.needs:
            try:
                now = cache.read_fields(cache.cache_path(maps_dir, e["pair_id"]), ["content_digest"])
            except ValueError:  # an unsafe id (nre.data.pairdata.check_pair_id): redone, i.e. recorded as failed
                continue
            if now is None or now["content_digest"] != e["cache"]:
                continue
        done[str(e["pair_id"])] = e
    resumed = len(done)
    if entries or found != "no part file":
        log.info("%s: %s, %d kept", label, found, resumed)
    part.start(list(done.values()))

    use_worker = not args.no_worker and worker.available()
    if not args.no_worker and not use_worker:
        log.warning("%s: no fork on this platform: pairs run in-process (no real time-out)", label)
    pool = worker.Worker(task_fn, init=lambda: set_threads(args.threads)) if use_worker else None
    n_failed = 0
    t_start = time.perf_counter()
    log.info(
        "%s: %d settings x %d pairs (chunk %s, %d resumed, %s)",
        label,
        len(settings),
        len(table),
        args.chunk or "all",
        resumed,
        "worker process" if pool else "in-process",
    )
    try:
        for i, row in enumerate(pair_rows):
            pid = str(row["pair_id"])
            if pid in done:
                continue
            t0 = time.perf_counter()
            if pool is None:
                status, value = "done", estimate_pair(i, lambda: None)
            else:
                status, value = pool.call(i, limit)
            if status == "done":
                rows, digest = value
            else:
                if status == "timeout":
                    reason = f"time-out (killed after {value:.1f} s > {limit} s for the whole sweep)"
                else:  # died, or an exception outside the pair's own handler
                    reason = value
                log.warning("pair %s: %s", pid, reason)
                fails = failures(reason, len(settings), stages, time.perf_counter() - t0)
                rows, digest = rows_from_results(None, row, label, settings, fails, vers, args.features), None
            rows = complete(row, rows)
            n_failed += sum(not r["success"] for r in rows)
            entry = {"pair_id": pid, "pair": pair_key(row), "cache": digest, "rows": rows}
            part.append(entry)
            done[pid] = entry
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
        if pool is None:
            summary = memo_summary(None, None)
        else:  # the memo lives in the worker (none if every pair was resumed)
            status, summary = pool.call("memo") if pool.proc is not None else ("none", None)
            summary = summary if status == "done" else None
        if summary:
            log.info("%s: %s", label, summary)
    finally:
        if pool is not None:
            pool.close()
            if pool.starts > 1:
                log.info("%s: worker restarted %d times (time-outs or deaths)", label, pool.starts - 1)
        part.close()
    rows = [r for row in pair_rows for r in done[str(row["pair_id"])]["rows"]]
    df = write(rows, args.out)
    part.remove()
    print(f"{label}: {len(table)} pairs, {len(df)} rows, {int((~df['success']).sum())} failures -> {args.out}")
    return 0
