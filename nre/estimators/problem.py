"""What an estimator receives for one pair: the ``Problem``; and what it returns: ``EstimateResult``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from nre.geometry import Camera, Pose
from nre.maps.dense import MapStats, SparseLossMaps


class FeatureAccess(Protocol):
    """Lazy access to descriptors for the estimators that need them (NRE coarse-to-fine, FPR, single-level NRE).

    Levels are backend-specific names ("coarse", "fine"); each returns torch tensors."""

    levels: tuple[str, ...]

    def source_descriptors(self, level: str):  # (N, D) descriptors of the query's 3D points
        ...

    def target_map(self, level: str):  # (D, h, w) target descriptor map; its scale is map_size / image_size
        ...

    def target_scale(self, level: str) -> np.ndarray: ...


@dataclass
class Matches:
    """2D-3D matches from each dense map's argmax: the identical input of every RE estimator (Table 1 setting)."""

    xy: np.ndarray  # (N, 2) target image pixels (this project's convention)
    score: np.ndarray  # (N,) probability of the argmax cell
    entropy: np.ndarray | None = None  # (N,) map entropy (nats)


@dataclass
class Problem:
    """One absolute pose problem: estimate the target's pose from the 3D points seen in the source."""

    pair_id: str
    points3d: np.ndarray  # (N, 3) world points
    camera: Camera  # the target camera
    seed: int = 0
    gt_pose: Pose | None = None
    matches: Matches | None = None  # dense-level argmax matches
    coarse_maps: SparseLossMaps | None = None  # cached coarse sparse loss maps
    coarse_stats: MapStats | None = None
    dense_maps: SparseLossMaps | None = None  # dense-level maps (Table 1), when available
    features: FeatureAccess | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.points3d)


@dataclass
class EstimateResult:
    """The outcome of one (estimator, hyperparameter values[, stage]) on one problem. Never raises: failures are
    ``success=False`` with a ``failure_reason``."""

    success: bool
    pose: Pose | None = None
    runtime_s: float = float("nan")
    inliers: int | None = None
    failure_reason: str | None = None
    stage: str | None = None  # e.g. "p3p", "coarse_gnc", "fine_gnc" for coarse-to-fine NRE
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failure(cls, reason: str, runtime_s: float = float("nan"), **kw) -> EstimateResult:
        return cls(success=False, pose=None, runtime_s=runtime_s, failure_reason=reason, **kw)
