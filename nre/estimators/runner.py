"""Running estimators: an estimator configured from (name, options, grid), one estimator run on one problem, and the
estimate job of ``nre estimate``.

``configure`` checks a name, options and grid the way the workflow's config check does (an unknown name, option or
hyperparameter, a value of the wrong type is an ``OptionError`` naming it, before any pair runs). ``run_on_problem``
is the one place an estimator meets a problem: it seeds the problem for this estimator (``derive_seed(seed,
pair_id, estimator)``: results do not depend on chunking, job order or other estimators) and runs every setting
through ``Estimator.run``, which never raises. ``nre estimate``, ``nre timing`` and ``nre localize`` all go
through it.

The estimate job (``estimate_pairs``), for each pair of a chunk: ``nre.data.pairs.load_pair`` ->
``PairData.capped(max_points, seed)`` -> ``nre.maps.cache.load_problem(pair, <maps-dir>/<pair_id>.npz, seed',
backend)`` -> ``run_on_problem`` (every setting of the sweep in-process, sharing its set-up) ->
``rows_from_results``. A pair that fails anywhere (bad data, missing or stale cache, estimator exception, time-out,
a crash of the estimator) gives failure rows for every setting and stage, and every pair has exactly one row per
(setting, stage) (a missing one is a failure ``missing stage result``): never dropped, never a crash of the job. An
estimator that needs nothing (``needs`` empty, e.g. ``imported``) gets a Problem without maps.

The pairs run in one long-lived worker process forked from the job's (``nre.estimators.worker``): the estimator
option ``timeout_s`` is a real time-out (the worker is killed when a pair's estimator call overruns it, the pair is
recorded as ``time-out (killed ...)`` and a fresh worker takes the next pair), and an estimator that ends the
process (``os._exit``, a segfault) costs its pair only (``worker died: exit code ...``). ``worker=False`` runs the
pairs in the calling process (for a debugger): no real time-out, and a crash ends the job. Rows are appended pair
by pair to ``<out>.part`` (``nre.estimators.partrows``) and assembled into ``out`` (atomically,
``nre.estimators.rows``) at the end; a rerun after a crash resumes from the part file when it was made by the same
job (same estimator, settings, backend, seed, code) and the pairs' map caches are unchanged. Descriptor maps of an
image shared by several pairs of the chunk are extracted once and kept in memory
(``nre.features.base.FeatureMemo``, 512 MB by default; the environment variable ``NRE_FEATURE_MEMO_MB`` sets it, 0
turns it off): same results, less time.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nre.errors import OptionError, UnknownNameError
from nre.estimators.base import Estimator, failures
from nre.estimators.problem import Problem, Result
from nre.seeding import derive_seed

log = logging.getLogger("nre.estimate")


def estimator_class(name: str) -> type[Estimator]:
    """The registered estimator ``name`` (or ``package.module:Class``); an unknown or unusable one is an
    ``UnknownNameError`` / ``OptionError`` listing what is available."""
    from nre.estimators import registry

    try:
        return registry.get(name)
    except KeyError as e:
        raise UnknownNameError(str(e.args[0]) if e.args else f"unknown estimator {name!r}") from None
    except TypeError as e:
        raise OptionError(str(e)) from None


@dataclass
class Configured:
    """An estimator built with its options, and the settings (hyperparameter values) it runs."""

    label: str  # the estimator column of its rows (a config entry's key; default the registered name)
    cls: type[Estimator]
    estimator: Estimator
    settings: list[dict[str, Any]]  # the grid's settings (the estimator's own grid when none was given)
    grid: dict | None = None  # the grid given, if any

    def default_setting(self) -> dict[str, Any]:
        """The estimator's default setting when the sweep has it, else the sweep's first."""
        d = self.estimator.default_setting()
        return d if d in self.settings else self.settings[0]


def configure(
    name: str,
    *,
    options: dict | None = None,
    grid: dict | None = None,
    label: str | None = None,
    where: tuple[str, str] = ("--options", "--grid"),
) -> Configured:
    """Estimator ``name`` with ``options``, sweeping ``grid`` (default: its own grid). A grid may only sweep the
    estimator's hyperparameters or options, with values of their declared types, and options must be known and of
    their defaults' types (``nre.workflow.config``): a typo or ``threshold: ['four']`` must not fail every pair.
    ``where`` names the options and the grid in the messages (flags, or config keys)."""
    from nre.workflow.config import check_grid_values, check_options

    cls = estimator_class(name)
    who = label or cls.name
    if grid is not None:
        if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
            raise OptionError(f"{who}: {where[1]} must map names to non-empty lists, got {grid!r}")
        problems = check_grid_values(cls, grid)
        if problems:
            raise OptionError(f"{who}: {where[1]} {problems[0][0]}: {problems[0][1]}")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise OptionError(f"{who}: {where[0]} must be a JSON object, got {options!r}")
    problems = check_options(cls, options)
    if problems:
        raise OptionError(f"{who}: {where[0]} {problems[0][0]}: {problems[0][1]}")
    try:
        est = cls(**options)
    except (TypeError, ValueError) as e:
        raise OptionError(f"{who}: {where[0]}: {e}") from e
    return Configured(who, cls, est, est.settings(grid), grid)


def problem_seed(seed: int, pair_id: str, estimator: str, repeat: int = 0) -> int:
    """The seed of an estimator's problem: from the config seed, the pair and the estimator's name, so that results
    depend on neither chunking nor job order; repetition ``repeat`` > 0 of a randomised estimator (config
    ``seeds``) draws another seed for the same pair."""
    if repeat:
        return derive_seed(seed, pair_id, estimator, "repeat", int(repeat))
    return derive_seed(seed, pair_id, estimator)


@dataclass
class Run:
    """Per setting, the results of one estimator on one problem (one per stage), and the call's wall / CPU time."""

    results: list[list[Result]]
    wall_s: float
    cpu_s: float


def run_on_problem(
    est: Estimator,
    problem: Problem,
    settings: list[dict[str, Any]],
    *,
    seed: int,
    repeat: int = 0,
    features_first: bool = False,
    started: Callable[[], None] | None = None,
) -> Run:
    """Run every setting of ``est`` on ``problem``, seeded for this estimator with ``problem_seed(seed,
    problem.pair_id, est.name, repeat)``. ``features_first`` extracts the descriptors an estimator reads before the
    clock starts (timing: extraction is a stage of its own); ``started`` is called just before the estimator's call (the
    worker's time-out starts there). Never raises for the estimator's sake (``Estimator.run``)."""
    problem.seed = problem_seed(seed, problem.pair_id, est.name, repeat)
    if features_first and "features" in est.needs and problem.features is not None:
        for level in problem.features.levels:
            problem.features.source_descriptors(level)
            problem.features.target_features(level)
    if started is not None:
        started()
    w0, c0 = time.perf_counter(), time.process_time()
    results = est.run(problem, settings)
    return Run(results, time.perf_counter() - w0, time.process_time() - c0)


# ----------------------------------------------------------------------------------------------- the estimate job
@dataclass
class EstimateSummary:
    label: str
    pairs: int
    rows: int
    failed_rows: int
    resumed: int
    out: str


class _EstimateJob:
    """One estimator over the pairs of a chunk (see the module docstring); ``run()`` does the work."""

    def __init__(
        self, c: Configured, table, *, root, maps_dir, features, foptions, max_points, seed, threads, out, repeat=0
    ):
        from nre.estimators.rows import params_key
        from nre.features import get_backend
        from nre.features.base import enable_memo, memo_mb_default
        from nre.versions import versions

        self.c, self.root, self.maps_dir, self.features = c, root, Path(maps_dir), features
        self.max_points, self.seed, self.threads, self.out = max_points, seed, threads, str(out)
        self.repeat = int(repeat)
        self.pair_rows = [row.to_dict() for _, row in table.iterrows()]
        self.stages = c.cls.stages or (None,)
        self.vers = json.dumps(versions(), sort_keys=True)
        # the backend (and torch with it) only for an estimator that reads descriptors: RANSAC jobs never load torch
        self.backend = get_backend(features, **foptions) if "features" in c.cls.needs else None
        if self.backend is not None:  # maps of an image shared by several pairs are extracted once
            enable_memo(self.backend, memo_mb_default())
        self.foptions = foptions
        self.keys = [params_key(s) for s in c.settings]

    def rows_of(self, row: dict, truth, results) -> list[dict]:
        """The result rows of one pair (``truth``: its ground-truth pose, None when it could not be loaded)."""
        from nre.estimators.rows import rows_from_results

        return rows_from_results(truth, row, self.c.label, self.c.settings, results, self.vers, self.features)

    def estimate_pair(self, i: int, started) -> tuple[list[dict], str | None]:
        """The rows of pair ``i`` (in the worker) and the content digest of the map cache they come from."""
        from nre.data.pairs import load_pair
        from nre.maps import cache

        row, cls = self.pair_rows[i], self.c.cls
        truth, digest = None, None if cls.needs else "-"
        try:
            pair = load_pair(self.root, row).capped(self.max_points, self.seed)
            truth = pair.target_pose
            if cls.needs:
                seed = problem_seed(self.seed, row["pair_id"], cls.name, self.repeat)
                path = cache.cache_path(self.maps_dir, row["pair_id"])  # an id such as ../x fails this pair only
                problem = cache.load_problem(pair, path, seed, self.backend, self.features)
                digest = problem.extras.get("cache_digest")
            else:  # e.g. imported poses: no maps needed
                problem = Problem(str(row["pair_id"]), pair.points3d, pair.target_camera, 0, pair.target_pose)
            results = run_on_problem(
                self.c.estimator, problem, self.c.settings, seed=self.seed, repeat=self.repeat, started=started
            ).results
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # a failing pair is recorded for every setting, never dropped
            reason = f"{type(e).__name__}: {e}"
            log.warning("pair %s: %s\n%s", row["pair_id"], reason, traceback.format_exc(limit=3))
            results = failures(reason, len(self.c.settings), self.stages)
        return self.rows_of(row, truth, results), digest

    def complete(self, row: dict, rows: list[dict]) -> list[dict]:
        """Exactly one row per (setting, stage), in that order; a missing one is a failure row."""
        from nre.estimators.rows import rows_from_results

        by_key = {}
        for r in rows:
            by_key.setdefault((r["params"], r["stage"]), r)
        out = []
        for s, key in zip(self.c.settings, self.keys):
            for st in self.stages:
                r = by_key.get((key, st or ""))
                if r is None:
                    [r] = rows_from_results(
                        None, row, self.c.label, [s], [[Result.failure("missing stage result", stage=st)]],
                        self.vers, self.features,
                    )  # fmt: skip
                out.append(r)
        if len(out) != len(rows):
            log.warning("pair %s: %d rows for %d (setting, stage) keys", row["pair_id"], len(rows), len(out))
        return out

    def memo_summary(self) -> str | None:
        return self.backend.memo.summary() if self.backend is not None and self.backend.memo is not None else None

    def task(self, task, started):
        return self.memo_summary() if task == "memo" else self.estimate_pair(task, started)

    def part_file(self):
        """The part file of this very job (same fingerprint: estimator, settings, backend, seed, roots, code)."""
        from nre.estimators.partrows import PartRows, code_digest
        from nre.maps import cache

        cls = self.c.cls
        spec = {
            "estimator": self.c.label,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "settings": self.keys,
            "options": self.c.estimator.options,
            "features": self.features,
            "backend": cache.backend_options(self.backend) if self.backend is not None else self.foptions,
            "max_points": self.max_points,
            "seed": self.seed,
            "repeat": self.repeat,
            "root": str(Path(self.root).resolve()),
            "maps_dir": str(self.maps_dir.resolve()),
            "versions": self.vers,
            "code": code_digest(str(Path(sys.modules[cls.__module__].__file__ or "").resolve())),
        }
        return PartRows(Path(self.out).with_name(Path(self.out).name + ".part"), spec)

    def resumable(self, entries: list[dict]) -> dict[str, dict]:
        """The part file's entries still valid: same pair-table row, map cache with the digest they came from."""
        from nre.estimators.partrows import pair_key
        from nre.maps import cache

        done: dict[str, dict] = {}
        wanted = {str(r["pair_id"]): r for r in self.pair_rows}
        for e in entries:
            r = wanted.get(str(e["pair_id"]))
            if r is None or e["pair"] != pair_key(r) or e.get("cache") is None:
                continue
            if self.c.cls.needs:
                try:
                    now = cache.read_fields(cache.cache_path(self.maps_dir, e["pair_id"]), ["content_digest"])
                except ValueError:  # an unsafe id (nre.data.pairdata.check_pair_id): redone, i.e. recorded as failed
                    continue
                if now is None or now["content_digest"] != e["cache"]:
                    continue
            done[str(e["pair_id"])] = e
        return done

    def call(self, pool, i: int, row: dict) -> tuple[list[dict], str | None]:
        """Pair ``i`` in the worker (or in-process); a time-out or a death of the worker is a failure row."""
        limit = self.c.estimator.options.get("timeout_s")
        t0 = time.perf_counter()
        if pool is None:
            return self.estimate_pair(i, lambda: None)
        status, value = pool.call(i, limit)
        if status == "done":
            return value
        if status == "timeout":
            reason = f"time-out (killed after {value:.1f} s > {limit} s for the whole sweep)"
        else:  # died, or an exception outside the pair's own handler
            reason = value
        log.warning("pair %s: %s", row["pair_id"], reason)
        fails = failures(reason, len(self.c.settings), self.stages, time.perf_counter() - t0)
        return self.rows_of(row, None, fails), None

    def run(self, use_worker: bool, chunk: str | None) -> EstimateSummary:
        from nre.estimators import worker
        from nre.estimators.partrows import pair_key
        from nre.estimators.rows import write
        from nre.progress import Progress
        from nre.threads import set_threads

        label = self.c.label
        part = self.part_file()
        entries, found = part.read()
        done = self.resumable(entries)
        resumed = len(done)
        if entries or found != "no part file":
            log.info("%s: %s, %d kept", label, found, resumed)
        part.start(list(done.values()))
        pool_ok = use_worker and worker.available()
        if use_worker and not pool_ok:
            log.warning("%s: no fork on this platform: pairs run in-process (no real time-out)", label)
        pool = worker.Worker(self.task, init=lambda: set_threads(self.threads)) if pool_ok else None
        log.info(
            "%s: %d settings x %d pairs (chunk %s, %d resumed, %s)", label, len(self.c.settings),
            len(self.pair_rows), chunk or "all", resumed, "worker process" if pool else "in-process",
        )  # fmt: skip
        progress = Progress(log, f"estimate {label} chunk {chunk or 'all'}", len(self.pair_rows), done=resumed)
        try:
            for i, row in enumerate(self.pair_rows):
                pid = str(row["pair_id"])
                if pid in done:
                    continue
                rows, digest = self.call(pool, i, row)
                rows = self.complete(row, rows)
                entry = {"pair_id": pid, "pair": pair_key(row), "cache": digest, "rows": rows}
                part.append(entry)
                done[pid] = entry
                progress.step(failed=int(any(not r["success"] for r in rows)))
            if pool is None:
                summary = self.memo_summary()
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
        rows = [r for row in self.pair_rows for r in done[str(row["pair_id"])]["rows"]]
        df = write(rows, self.out)
        part.remove()
        n_failed = int((~df["success"]).sum())
        progress.done(f"{len(df)} rows, {n_failed} failed rows, {resumed} pairs resumed -> {self.out}")
        return EstimateSummary(label, len(self.pair_rows), len(df), n_failed, resumed, self.out)


def estimate_pairs(
    *,
    pairs: str | Path,
    root: str | Path,
    maps_dir: str | Path,
    out: str | Path,
    estimator: str,
    label: str | None = None,
    options: dict | None = None,
    grid: dict | None = None,
    features: str = "dsift",
    features_options: dict | None = None,
    chunk: str | None = None,
    max_points: int = 1000,
    seed: int = 0,
    threads: int | None = 1,
    worker: bool = True,
    repeat: int = 0,
) -> EstimateSummary:
    """Run ``estimator`` (all its settings of ``grid``, with ``options``) over the pairs of chunk ``chunk`` of the
    pair table ``pairs`` on the map caches of ``maps_dir``, and write one row per (pair, setting, stage) to ``out``
    (parquet). ``repeat`` > 0: another draw of the estimator's random choices (``problem_seed``). See the module
    docstring for failures, the worker, resuming and the feature memo."""
    from nre.data.pairs import read_pair_table
    from nre.threads import set_threads
    from nre.workflow.chunks import select_chunk

    set_threads(threads)
    c = configure(estimator, options=options, grid=grid, label=label)
    table = read_pair_table(pairs)
    try:
        table = select_chunk(table, chunk)
    except ValueError as e:
        raise OptionError(f"--chunk: {e}") from None
    job = _EstimateJob(
        c, table, root=root, maps_dir=maps_dir, features=features, foptions=features_options or {},
        max_points=max_points, seed=seed, threads=threads, out=out, repeat=repeat,
    )  # fmt: skip
    return job.run(worker, chunk)
