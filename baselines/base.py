"""The estimator interface. NRE and every baseline implement it; ``baselines.registry`` finds them by name."""

from __future__ import annotations

import itertools
import time
import traceback
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from nre.problem import EstimateResult, Problem


class Estimator(ABC):
    """A pose estimator with hyperparameters.

    Subclasses set ``name``, ``grid`` (hyperparameter name -> default sweep values), ``defaults`` (fixed options) and
    ``needs`` (subset of {"matches", "coarse_maps", "dense_maps", "features"}), and implement ``estimate_many``, which
    takes the whole list of hyperparameter settings at once so that a sweep can share its set-up."""

    name: ClassVar[str] = ""
    grid: ClassVar[dict[str, list]] = {}
    defaults: ClassVar[dict[str, Any]] = {}
    needs: ClassVar[frozenset[str]] = frozenset({"matches"})
    stages: ClassVar[tuple[str, ...] | None] = None  # estimators emitting several results per setting
    default_params: ClassVar[dict[str, Any]] = {}  # the single setting used outside sweeps (e.g. nre localize)

    COMMON_OPTIONS: ClassVar[dict[str, Any]] = {"timeout_s": None}

    def __init__(self, **options):
        unknown = set(options) - set(self.defaults) - set(self.grid) - set(self.COMMON_OPTIONS)
        if unknown:
            raise ValueError(f"estimator {self.name!r}: unknown options {sorted(unknown)}")
        self.options = {**self.COMMON_OPTIONS, **self.defaults, **options}

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

    @abstractmethod
    def estimate_many(self, problem: Problem, settings: list[dict[str, Any]]) -> list[list[EstimateResult]]:
        """For each setting, the list of its results (one, or one per stage)."""

    def run(self, problem: Problem, settings: list[dict[str, Any]] | None = None) -> list[list[EstimateResult]]:
        """``estimate_many`` that never raises: an exception becomes a recorded failure for every setting."""
        settings = self.settings() if settings is None else settings
        t0 = time.perf_counter()
        try:
            out = self.estimate_many(problem, settings)
            if len(out) != len(settings):
                raise RuntimeError(f"returned {len(out)} result lists for {len(settings)} settings")
            for res_list in out:
                if not isinstance(res_list, (list, tuple)) or not all(isinstance(r, EstimateResult) for r in res_list):
                    raise TypeError("estimate_many must return, per setting, a list of EstimateResult")
            for res_list in out:  # a NaN pose is a failure, never a success
                for r in res_list:
                    if r.success and (
                        r.pose is None or not (np.isfinite(r.pose.R).all() and np.isfinite(r.pose.t).all())
                    ):
                        r.success, r.failure_reason = False, "NaN pose"
            limit = self.options.get("timeout_s")
            dt = time.perf_counter() - t0
            if limit is not None and dt > limit:  # a soft time-out: the call is not interrupted, its results are void
                stages = self.stages or (None,)
                reason = f"time-out ({dt:.1f} s > {limit} s for the whole sweep)"
                return [[EstimateResult.failure(reason, dt, stage=s) for s in stages] for _ in settings]
            return out
        except Exception as e:  # recorded, never a crash
            reason = f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            tb = traceback.format_exc(limit=5)
            stages = self.stages or (None,)
            return [
                [EstimateResult.failure(reason, dt, stage=s, diagnostics={"traceback": tb}) for s in stages]
                for _ in settings
            ]
