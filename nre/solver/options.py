"""The NRE estimators' options (``nre.solver.nre``), in a module of their own that imports nothing heavy: the
estimator registry reads their defaults when it scans the estimators, and a job that runs only a RANSAC library
then never loads torch."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SIGMAS = (2.0, 1.0, 0.9, 0.8, 0.7, 0.6)  # the paper's GNC schedule of both stages, in map cells
# coarse GNC without the sigma-2 step: at 2 coarse cells the kernel pulls a good start away (docs/results-log.md)
COARSE_SIGMAS = (1.0, 0.9, 0.8, 0.7, 0.6)


@dataclass
class NreOptions:
    msac_iterations: int = 5000
    best_fraction: float = 0.25
    coarse_sigmas: tuple = COARSE_SIGMAS
    fine_sigmas: tuple = DEFAULT_SIGMAS
    max_iterations: int = 100
    window: int = 16
    margin_px: float = 8.0
    local_norm: str = (
        "cells"  # nre.maps.local: divide the local maps by S^2 ("cells"), S ("side", the reference) or 1 ("mass")
    )
    mass_region: str = "corners"  # nre.maps.local: coarse mass of the 2 x 2 "corners" cells or of the "window"
    p3p_solver: str = "numpy"  # nre.geometry.p3p.p3p_batch, or "poselib" (one call per sample)
    coarse_level: str = "coarse"
    fine_level: str = "fine"
