"""The estimator contract. The paper's estimators and every baseline implement it; ``nre.estimators.registry``
finds them by ``name``.

A plug-in subclasses ``Estimator``, sets ``name`` (the config key that selects it) and ``grid`` (the hyperparameters
its sweep tries), and implements ``estimate(problem, setting) -> Result``. Everything else is optional:

- ``label`` and ``units``: the display name and each hyperparameter's unit in tables and figures;
- ``defaults``: fixed options (``self.options``), which a config entry may override; ``presets``: named option sets
  a config selects with ``preset: NAME`` (e.g. the paper's literal settings);
- ``needs``: what the problem must carry (``matches``, ``coarse_maps``, ``features``); ``stages``: the names of the
  results of a multi-stage estimator, which then returns one ``Result`` per stage;
- ``estimate_many(problem, settings)``: the whole sweep in one call, to share work between settings.
"""

from __future__ import annotations

import itertools
import time
import traceback
from typing import Any, ClassVar

import numpy as np

from nre.estimators.problem import Problem, Result

COMMON_OPTIONS: dict[str, Any] = {"timeout_s": None}  # every estimator's: seconds for one pair's whole sweep


class Estimator:
    """A pose estimator with hyperparameters (see the module docstring)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    grid: ClassVar[dict[str, list]] = {}
    units: ClassVar[dict[str, str]] = {}
    defaults: ClassVar[dict[str, Any]] = {}
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    needs: ClassVar[frozenset[str]] = frozenset({"matches"})
    stages: ClassVar[tuple[str, ...] | None] = None
    default_params: ClassVar[dict[str, Any]] = {}  # the single setting used outside sweeps (e.g. nre localize)

    COMMON_OPTIONS: ClassVar[dict[str, Any]] = COMMON_OPTIONS

    def __init__(self, preset: str | None = None, **options):
        if preset is not None and preset not in self.presets:
            known = ", ".join(sorted(self.presets)) or "none"
            raise ValueError(f"estimator {self.name!r}: unknown preset {preset!r} (presets: {known})")
        unknown = set(options) - set(self.defaults) - set(self.grid) - set(self.COMMON_OPTIONS)
        if unknown:
            raise ValueError(f"estimator {self.name!r}: unknown options {sorted(unknown)}")
        self.preset = preset
        self.options = {**self.COMMON_OPTIONS, **self.defaults, **self.presets.get(preset, {}), **options}

    @classmethod
    def display_name(cls) -> str:
        return cls.label or cls.name

    @classmethod
    def implemented(cls) -> bool:
        """Whether the class implements the contract (``estimate`` or ``estimate_many``)."""
        return cls.estimate is not Estimator.estimate or cls.estimate_many is not Estimator.estimate_many

    def settings(self, grid: dict[str, list] | None = None) -> list[dict[str, Any]]:
        """The cartesian product of a sweep grid (default: the estimator's own)."""
        g = self.grid if grid is None else grid
        if not g:
            return [{}]
        keys = sorted(g)
        return [dict(zip(keys, vals)) for vals in itertools.product(*(g[k] for k in keys))]

    def default_setting(self) -> dict[str, Any]:
        """``default_params`` where given, else the middle value of each grid."""
        return {k: self.default_params.get(k, v[len(v) // 2]) for k, v in sorted(self.grid.items())}

    def estimate(self, problem: Problem, setting: dict[str, Any]) -> Result | list[Result]:
        """The pose of ``problem``'s query at hyperparameters ``setting`` (one ``Result``; one per stage for a
        multi-stage estimator)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither estimate nor estimate_many")

    def estimate_many(self, problem: Problem, settings: list[dict[str, Any]]) -> list[Result | list[Result]]:
        """Every setting of a sweep: by default ``estimate`` once per setting, each timed on its own."""
        out = []
        for s in settings:
            t0 = time.perf_counter()
            res = self.estimate(problem, s)
            dt = time.perf_counter() - t0
            for r in res if isinstance(res, (list, tuple)) else [res]:
                if isinstance(r, Result) and not np.isfinite(r.runtime_s):
                    r.runtime_s = dt
            out.append(res)
        return out

    def run(self, problem: Problem, settings: list[dict[str, Any]] | None = None) -> list[list[Result]]:
        """``estimate_many`` that never raises and always returns, per setting, one result per declared stage.

        An exception (``SystemExit`` from a plugin too; ``KeyboardInterrupt`` is re-raised), a wrong number of
        results or a soft time-out becomes a recorded failure for every setting and stage; a stage missing from a
        setting's results becomes a failure ``missing stage result``; a success with a NaN pose, or whose rotation is
        not orthonormal with det +1 (``check_pose``), a failure ``NaN pose`` / ``invalid rotation``. ``timeout_s`` is
        also enforced as a real time-out by the estimate job, whose worker process is killed when a call overruns it
        (``nre.estimators.worker``); here it is measured after the fact, for in-process callers."""
        settings = self.settings() if settings is None else settings
        stages = self.stages or (None,)
        t0 = time.perf_counter()
        try:
            out = self.estimate_many(problem, settings)
            if len(out) != len(settings):
                raise RuntimeError(f"returned {len(out)} result lists for {len(settings)} settings")
            out = [list(res) if isinstance(res, (list, tuple)) else [res] for res in out]
            for res_list in out:
                if not all(isinstance(r, Result) for r in res_list):
                    raise TypeError("estimate must return a Result (or, per stage, a list of Result)")
            out = [complete_stages(res_list, stages) for res_list in out]
            for res_list in out:  # a NaN pose or an invalid rotation is a failure, never a success
                for r in res_list:
                    if r.success:
                        bad = check_pose(r.pose)
                        if bad is not None:
                            r.success, r.failure_reason = False, bad
            limit = self.options.get("timeout_s")
            dt = time.perf_counter() - t0
            if limit is not None and dt > limit:  # measured after the fact: the call's results are void
                return failures(f"time-out ({dt:.1f} s > {limit} s for the whole sweep)", len(settings), stages, dt)
            return out
        except KeyboardInterrupt:  # the user stops the run
            raise
        except BaseException as e:  # recorded, never a crash: a plugin's SystemExit included
            reason = f"{type(e).__name__}: {e}"
            tb = traceback.format_exc(limit=5)
            return failures(reason, len(settings), stages, time.perf_counter() - t0, {"traceback": tb})


ROTATION_TOL = 1e-6  # max |R^T R - I| of an accepted rotation (estimators' rotations are orthonormal to ~1e-15)


def check_pose(pose) -> str | None:
    """Why a successful result's pose is unusable (``None`` if it is fine): missing or non-finite (``NaN pose``), or a
    rotation that is not orthonormal within ``ROTATION_TOL`` or has det -1 (a reflection: ``invalid rotation``)."""
    if pose is None:
        return "NaN pose (no pose given)"
    R, t = np.asarray(pose.R, dtype=float), np.asarray(pose.t, dtype=float)
    if R.shape != (3, 3) or t.size != 3:
        return f"invalid pose (R {R.shape}, t {t.shape})"
    if not (np.isfinite(R).all() and np.isfinite(t).all()):
        return "NaN pose"
    ortho = float(np.abs(R.T @ R - np.eye(3)).max())
    det = float(np.linalg.det(R))
    if ortho > ROTATION_TOL or det < 0:
        return f"invalid rotation (det {det:+.3f}, max |R^T R - I| = {ortho:.1e})"
    return None


def failures(reason: str, n_settings: int, stages, runtime_s: float = float("nan"), diagnostics=None):
    """A failure ``reason`` for every setting and stage (the shape ``Estimator.run`` returns)."""
    stages = tuple(stages) if stages else (None,)
    return [
        [Result.failure(reason, runtime_s, stage=s, diagnostics=dict(diagnostics or {})) for s in stages]
        for _ in range(n_settings)
    ]


def complete_stages(res_list: list[Result], stages) -> list[Result]:
    """One result per declared stage, in the declared order (``(None,)``: one stage-less result).

    A missing stage becomes a failure: ``missing stage result``, or the reason of a stage-less failure in the list
    (an estimator that failed before its first stage). Results for undeclared or repeated stages are left out (their
    count is kept in the first result's diagnostics, ``ignored_results``): the rows stay one per (setting, stage)."""
    stages = tuple(stages) if stages else (None,)
    if stages == (None,):
        picked = res_list[:1] or [Result.failure("missing stage result")]
        extra = len(res_list) - 1
    else:
        by_stage: dict = {}
        for r in res_list:
            if r.stage in stages and r.stage not in by_stage:
                by_stage[r.stage] = r
        general = next((r for r in res_list if not r.stage and not r.success), None)
        picked = []
        for s in stages:
            if s in by_stage:
                picked.append(by_stage[s])
            elif general is not None:
                reason = general.failure_reason or "failed (no reason given)"
                picked.append(Result.failure(reason, general.runtime_s, stage=s))
            else:
                picked.append(Result.failure("missing stage result", stage=s))
        extra = len(res_list) - len(by_stage) - (general is not None)
    if extra > 0:
        picked[0].diagnostics = {**picked[0].diagnostics, "ignored_results": int(extra)}
    return picked
