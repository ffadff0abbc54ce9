"""What an estimator receives for one pair, the ``Problem``, and what it returns, a ``Result``."""

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

    def observations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The matches as a pinhole PnP problem: (uv (M, 2) undistorted pixels of the camera
        ``camera.undistorted()``, X (M, 3) their 3D points, idx (M,) their indices into ``points3d``), finite matches
        only. Distortion is handled here once, so RE thresholds stay in image pixels."""
        if self.matches is None:
            raise ValueError(f"problem {self.pair_id}: no matches (the estimator must declare needs = {{'matches'}})")
        xy = self.matches.xy
        idx = np.flatnonzero(np.isfinite(xy).all(1) & np.isfinite(self.points3d).all(1))
        cam = self.camera
        if cam.has_distortion:
            n = cam.undistort_points(xy[idx])
            uv = np.c_[cam.fx * n[:, 0] + cam.cx, cam.fy * n[:, 1] + cam.cy]
        else:
            uv = xy[idx].astype(np.float64)
        return uv, self.points3d[idx].astype(np.float64), idx

    def rng(self, *keys) -> np.random.Generator:
        """A random generator seeded from the problem's seed (itself derived from the config seed, the pair and the
        estimator) and ``keys``: results never depend on chunking, job order or --cores."""
        from nre.seeding import rng_for

        return rng_for(self.seed, *keys)


class Result:
    """The outcome of one (estimator, setting[, stage]) on one problem.

    ``Result(pose)`` is a success; ``Result.failure(reason)`` a failure (its row keeps infinite errors, never
    dropped). ``runtime_s`` left unset is measured by the harness; ``inliers`` and ``diagnostics`` (a dict of JSON
    values) are optional; ``stage`` names the stage of a multi-stage estimator (see ``Estimator.stages``)."""

    __slots__ = ("success", "pose", "runtime_s", "inliers", "failure_reason", "stage", "diagnostics")

    def __init__(
        self,
        pose: Pose | None = None,
        *,
        runtime_s: float = float("nan"),
        inliers: int | None = None,
        failure_reason: str | None = None,
        stage: str | None = None,
        diagnostics: dict[str, Any] | None = None,
        success: bool | None = None,
    ):
        self.success = (pose is not None and failure_reason is None) if success is None else bool(success)
        if not self.success and failure_reason is None:
            failure_reason = "NaN pose (no pose given)" if pose is None else "failed (no reason given)"
        self.pose = pose
        self.runtime_s = runtime_s
        self.inliers = inliers
        self.failure_reason = failure_reason
        self.stage = stage
        self.diagnostics = dict(diagnostics or {})

    @classmethod
    def failure(cls, reason: str, runtime_s: float = float("nan"), **kw) -> Result:
        return cls(None, runtime_s=runtime_s, failure_reason=reason, success=False, **kw)

    def __repr__(self) -> str:
        what = "success" if self.success else f"failure {self.failure_reason!r}"
        return f"Result({what}, stage={self.stage!r}, runtime_s={self.runtime_s:.3g})"
