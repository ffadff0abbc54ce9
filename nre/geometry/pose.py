"""Rotations and world-to-camera poses, and pose errors.

Convention (DESIGN.md): a pose (R, t) is world-to-camera, x_cam = R @ x_world + t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# ----------------------------------------------------------------------------------------------- rotations
def skew(v: np.ndarray) -> np.ndarray:
    """Skew-symmetric matrices of (..., 3) vectors -> (..., 3, 3)."""
    v = np.asarray(v, dtype=float)
    z = np.zeros(v.shape[:-1])
    return np.stack(
        [
            np.stack([z, -v[..., 2], v[..., 1]], -1),
            np.stack([v[..., 2], z, -v[..., 0]], -1),
            np.stack([-v[..., 1], v[..., 0], z], -1),
        ],
        -2,
    )


def so3_exp(w: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation vectors (..., 3) -> rotation matrices (..., 3, 3)."""
    w = np.asarray(w, dtype=float)
    theta = np.linalg.norm(w, axis=-1)[..., None, None]
    K = skew(w)
    small = theta < 1e-8
    th = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(th) / th)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(th)) / th**2)
    return np.eye(3) + a * K + b * (K @ K)


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle of rotation matrices (..., 3, 3) in degrees, numerically safe."""
    tr = np.trace(R, axis1=-2, axis2=-1)
    c = np.clip((tr - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(c))


def quat_wxyz_to_R(q: np.ndarray) -> np.ndarray:
    """Unit quaternion(s) (w, x, y, z) (..., 4) -> rotation matrices (..., 3, 3)."""
    q = np.asarray(q, dtype=float)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def R_to_quat_wxyz(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> unit quaternion (w, x, y, z) with w >= 0.

    Markley's method: build the quaternion from the largest of trace(R), R_00, R_11, R_22 (never a small
    denominator, exact at 180 degrees), then normalise. Equal to scipy's ``Rotation.from_matrix`` to rounding
    (tested); done here to keep the import of scipy.spatial.transform, a noticeable start-up cost, out of every job
    (docs/results-log.md)."""
    m = np.asarray(R, dtype=float).reshape(3, 3)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    c = int(np.argmax([m[0, 0], m[1, 1], m[2, 2], tr]))
    q = np.empty(4)  # (x, y, z, w)
    if c == 3:
        q[:] = m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1], 1.0 + tr
    else:
        i, j, k = c, (c + 1) % 3, (c + 2) % 3
        q[i] = 1.0 - tr + 2.0 * m[i, i]
        q[j] = m[j, i] + m[i, j]
        q[k] = m[k, i] + m[i, k]
        q[3] = m[k, j] - m[j, k]
    q /= np.linalg.norm(q)
    q = np.array([q[3], q[0], q[1], q[2]])
    return q if q[0] >= 0 else -q


# ----------------------------------------------------------------------------------------------- poses
@dataclass
class Pose:
    """World-to-camera rigid transform: x_cam = R @ x_world + t."""

    R: np.ndarray
    t: np.ndarray

    def __post_init__(self):
        self.R = np.asarray(self.R, dtype=float).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=float).reshape(3)

    @classmethod
    def identity(cls) -> Pose:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_matrix(cls, P: np.ndarray) -> Pose:
        P = np.asarray(P, dtype=float)
        if P.shape not in ((4, 4), (3, 4)):
            raise ValueError(f"pose matrix must be 3x4 or 4x4, got {P.shape}")
        return cls(P[:3, :3], P[:3, 3])

    @classmethod
    def from_qt(cls, q_wxyz, t) -> Pose:
        return cls(quat_wxyz_to_R(q_wxyz), t)

    @classmethod
    def from_pycolmap(cls, rigid) -> Pose:
        """From a pycolmap.Rigid3d (cam_from_world)."""
        M = np.asarray(rigid.matrix())
        return cls(M[:3, :3], M[:3, 3])

    def to_pycolmap(self):
        import pycolmap

        return pycolmap.Rigid3d(np.concatenate([self.R, self.t[:, None]], 1))

    @property
    def matrix(self) -> np.ndarray:
        M = np.eye(4)
        M[:3, :3] = self.R
        M[:3, 3] = self.t
        return M

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.R.T @ self.t

    def inverse(self) -> Pose:
        return Pose(self.R.T, -self.R.T @ self.t)

    def __matmul__(self, other: Pose) -> Pose:
        """Composition: (self @ other)(x) = self(other(x))."""
        return Pose(self.R @ other.R, self.R @ other.t + self.t)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> camera points (N, 3)."""
        return np.asarray(X, dtype=float) @ self.R.T + self.t

    def perturb(self, delta: np.ndarray) -> Pose:
        """Left update used by all optimisers: delta = (omega, dt), R <- Exp(omega) R, t <- Exp(omega) t + dt."""
        dR = so3_exp(np.asarray(delta[:3], dtype=float))
        return Pose(dR @ self.R, dR @ self.t + np.asarray(delta[3:6], dtype=float))


@dataclass
class PoseError:
    rotation_deg: float
    translation: float  # ||t_est - t_gt||, the paper's definition
    center: float  # ||c_est - c_gt||, camera-centre distance

    def as_dict(self) -> dict:
        return {
            "rotation_error_deg": self.rotation_deg,
            "translation_error": self.translation,
            "center_error": self.center,
        }


def pose_error(est: Pose | None, gt: Pose) -> PoseError:
    """Rotation angle of R_est^T R_gt in degrees, ||t_est - t_gt|| and camera-centre distance.

    ``est=None`` (a failure) gives infinite errors.
    """
    if est is None or not (np.all(np.isfinite(est.R)) and np.all(np.isfinite(est.t))):
        return PoseError(np.inf, np.inf, np.inf)
    rot = float(rotation_angle_deg(est.R.T @ gt.R))
    return PoseError(rot, float(np.linalg.norm(est.t - gt.t)), float(np.linalg.norm(est.center - gt.center)))
