"""Camera models, projection with Jacobians, and the one image <-> map transform.

Conventions (DESIGN.md):
- Pixel centres are at integer coordinates. COLMAP puts the centre of the top-left pixel at (0.5, 0.5);
  the 0.5 shift is applied exactly once, in ``Camera.from_pycolmap`` / ``Camera.to_pycolmap``.
- Map cells are addressed (x, y) = (column, row). The one image <-> map transform is
  ``x_map = (x_img + 0.5) * scale - 0.5`` with ``scale = map_size / image_size`` (= 1 / stride);
  see ``img_to_map`` / ``map_to_img``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nre.geometry.pose import Pose, skew

# name -> parameter names, in COLMAP's order
CAMERA_MODELS: dict[str, tuple[str, ...]] = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
}

MIN_DEPTH = 1e-6


# ----------------------------------------------------------------------------------------------- cameras
def _distort(model: str, params: np.ndarray, u: np.ndarray, v: np.ndarray, jac: bool = False):
    """Apply the model's distortion to normalised coordinates; optionally d(ud, vd)/d(u, v) as (N, 2, 2)."""
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        if not jac:
            return u, v, None
        J = np.zeros(u.shape + (2, 2))
        J[..., 0, 0] = 1.0
        J[..., 1, 1] = 1.0
        return u, v, J
    uu, vv, uv = u * u, v * v, u * v
    r2 = uu + vv
    p1 = p2 = 0.0
    if model == "SIMPLE_RADIAL":
        k1, k2 = params[3], 0.0
    elif model == "RADIAL":
        k1, k2 = params[3], params[4]
    elif model == "OPENCV":
        k1, k2, p1, p2 = params[4:8]
    else:
        raise ValueError(f"unsupported camera model {model}")
    radial = k1 * r2 + k2 * r2 * r2
    ud = u + u * radial + 2 * p1 * uv + p2 * (r2 + 2 * uu)
    vd = v + v * radial + 2 * p2 * uv + p1 * (r2 + 2 * vv)
    if not jac:
        return ud, vd, None
    drad = k1 + 2 * k2 * r2  # d radial / d r2
    J = np.empty(u.shape + (2, 2))
    J[..., 0, 0] = 1 + radial + u * drad * 2 * u + 2 * p1 * v + p2 * 6 * u
    J[..., 0, 1] = u * drad * 2 * v + 2 * p1 * u + p2 * 2 * v
    J[..., 1, 0] = v * drad * 2 * u + 2 * p2 * v + p1 * 2 * u
    J[..., 1, 1] = 1 + radial + v * drad * 2 * v + 2 * p2 * u + p1 * 6 * v
    return ud, vd, J


@dataclass
class Camera:
    """A camera in this project's pixel convention (pixel centres at integer coordinates)."""

    model: str
    width: int
    height: int
    params: np.ndarray = field(repr=True)

    def __post_init__(self):
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"unsupported camera model {self.model!r}; supported: {sorted(CAMERA_MODELS)}")
        self.params = np.asarray(self.params, dtype=float).reshape(-1)
        n = len(CAMERA_MODELS[self.model])
        if self.params.size != n:
            raise ValueError(f"{self.model} takes {n} parameters {CAMERA_MODELS[self.model]}, got {self.params.size}")
        self.width, self.height = int(self.width), int(self.height)

    # --- constructors
    @classmethod
    def pinhole(cls, K: np.ndarray, width: int, height: int) -> Camera:
        K = np.asarray(K, dtype=float)
        return cls("PINHOLE", width, height, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]])

    @classmethod
    def from_K_dist(cls, K: np.ndarray, dist, width: int, height: int) -> Camera:
        """From a 3x3 K (this project's convention) and OpenCV-style (k1, k2, p1, p2) or fewer coefficients."""
        K = np.asarray(K, dtype=float)
        d = np.zeros(4) if dist is None else np.asarray(dist, dtype=float).reshape(-1)
        if d.size > 4 and np.any(d[4:] != 0):
            raise ValueError(f"only k1 k2 p1 p2 distortion is supported, got {d.size} non-zero coefficients")
        d = np.concatenate([d[:4], np.zeros(max(0, 4 - d.size))])
        if not np.any(d):
            return cls.pinhole(K, width, height)
        return cls("OPENCV", width, height, [K[0, 0], K[1, 1], K[0, 2], K[1, 2], *d])

    @classmethod
    def from_pycolmap(cls, cam) -> Camera:
        model = cam.model.name if hasattr(cam.model, "name") else str(cam.model)
        params = np.array(cam.params, dtype=float)
        c = cls(model, cam.width, cam.height, params)
        c.params[list(c._pp_idx)] -= 0.5
        return c

    def to_pycolmap(self):
        import pycolmap

        params = self.params.copy()
        params[list(self._pp_idx)] += 0.5
        return pycolmap.Camera(model=self.model, width=self.width, height=self.height, params=params)

    # --- accessors
    @property
    def _pp_idx(self) -> tuple[int, int]:
        return (1, 2) if CAMERA_MODELS[self.model][0] == "f" else (2, 3)

    @property
    def fx(self) -> float:
        return float(self.params[0])

    @property
    def fy(self) -> float:
        return float(self.params[0] if CAMERA_MODELS[self.model][0] == "f" else self.params[1])

    @property
    def cx(self) -> float:
        return float(self.params[self._pp_idx[0]])

    @property
    def cy(self) -> float:
        return float(self.params[self._pp_idx[1]])

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def has_distortion(self) -> bool:
        return self.model not in ("SIMPLE_PINHOLE", "PINHOLE")

    @property
    def dist(self) -> np.ndarray:
        """OpenCV (k1, k2, p1, p2)."""
        p = self.params
        if self.model == "SIMPLE_RADIAL":
            return np.array([p[3], 0.0, 0.0, 0.0])
        if self.model == "RADIAL":
            return np.array([p[3], p[4], 0.0, 0.0])
        if self.model == "OPENCV":
            return p[4:8].copy()
        return np.zeros(4)

    def scaled(self, sx: float, sy: float | None = None, width: int | None = None, height: int | None = None):
        """The camera of the image resized by (sx, sy), through the one image<->map transform."""
        sy = sx if sy is None else sy
        p = self.params.copy()
        if CAMERA_MODELS[self.model][0] == "f":
            if abs(sx - sy) > 1e-9 * max(sx, sy):
                raise ValueError(f"{self.model} has one focal length: anisotropic scaling {sx}, {sy} is not allowed")
            p[0] *= sx
        else:
            p[0] *= sx
            p[1] *= sy
        i, j = self._pp_idx
        p[i] = (p[i] + 0.5) * sx - 0.5
        p[j] = (p[j] + 0.5) * sy - 0.5
        w = int(round(self.width * sx)) if width is None else width
        h = int(round(self.height * sy)) if height is None else height
        return Camera(self.model, w, h, p)

    # --- projection
    def normalized_to_pixels(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        ud, vd, _ = _distort(self.model, self.params, u, v)
        return np.stack([self.fx * ud + self.cx, self.fy * vd + self.cy], -1)

    def project_cam(self, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame points (..., 3) -> pixels (..., 2) and a mask of points in front of the camera."""
        Xc = np.asarray(Xc, dtype=float)
        z = Xc[..., 2]
        valid = z > MIN_DEPTH
        zs = np.where(valid, z, 1.0)
        uv = self.normalized_to_pixels(Xc[..., 0] / zs, Xc[..., 1] / zs)
        return uv, valid

    def project(self, X: np.ndarray, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixels (N, 2) and the in-front mask."""
        return self.project_cam(pose.transform(X))

    def project_with_jacobian(self, X: np.ndarray, pose: Pose):
        """Pixels (N, 2), in-front mask (N,), and d pixels / d delta (N, 2, 6) for ``Pose.perturb(delta)``."""
        Xc = pose.transform(X)
        z = Xc[:, 2]
        valid = z > MIN_DEPTH
        zs = np.where(valid, z, 1.0)
        u, v = Xc[:, 0] / zs, Xc[:, 1] / zs
        ud, vd, Jd = _distort(self.model, self.params, u, v, jac=True)
        uv = np.stack([self.fx * ud + self.cx, self.fy * vd + self.cy], -1)
        # d(u, v)/d Xc
        Jn = np.zeros((len(z), 2, 3))
        Jn[:, 0, 0] = 1 / zs
        Jn[:, 0, 2] = -u / zs
        Jn[:, 1, 1] = 1 / zs
        Jn[:, 1, 2] = -v / zs
        # d Xc / d delta = [-[Xc]x, I]
        Jx = np.concatenate([-skew(Xc), np.broadcast_to(np.eye(3), (len(z), 3, 3))], 2)
        F = np.array([[self.fx, 0.0], [0.0, self.fy]])
        J = F @ Jd @ Jn @ Jx
        return uv, valid, J

    def undistort_points(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) -> normalised image coordinates (N, 2) with distortion removed (pycolmap's solver)."""
        uv = np.asarray(uv, dtype=float).reshape(-1, 2)
        if not self.has_distortion:
            return np.stack([(uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy], -1)
        return np.asarray(self.to_pycolmap().cam_from_img(uv + 0.5))[:, :2]

    def in_image(self, uv: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Inside the image area [-0.5, W - 0.5] x [-0.5, H - 0.5], shrunk by ``margin`` pixels."""
        return (
            (uv[..., 0] >= -0.5 + margin)
            & (uv[..., 0] <= self.width - 0.5 - margin)
            & (uv[..., 1] >= -0.5 + margin)
            & (uv[..., 1] <= self.height - 0.5 - margin)
        )

    def undistorted(self) -> Camera:
        """The pinhole camera with this camera's focal lengths and principal point (the camera of undistorted
        observations, ``undistort_points`` mapped back to pixels)."""
        return Camera("PINHOLE", self.width, self.height, [self.fx, self.fy, self.cx, self.cy])

    def to_dict(self) -> dict:
        return {"model": self.model, "width": self.width, "height": self.height, "params": self.params.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        return cls(d["model"], d["width"], d["height"], d["params"])


# ----------------------------------------------------------------------------------------------- image <-> map
def img_to_map(xy: np.ndarray, scale) -> np.ndarray:
    """Image pixels -> map cells, ``scale = map_size / image_size`` (scalar or (sx, sy))."""
    return (np.asarray(xy, dtype=float) + 0.5) * np.asarray(scale, dtype=float) - 0.5


def map_to_img(xy: np.ndarray, scale) -> np.ndarray:
    """Map cells -> image pixels, the inverse of ``img_to_map``."""
    return (np.asarray(xy, dtype=float) + 0.5) / np.asarray(scale, dtype=float) - 0.5


def map_scale(image_size: tuple[int, int], map_size: tuple[int, int]) -> np.ndarray:
    """(sx, sy) for an image of (W, H) whose map has (w, h) cells."""
    return np.array([map_size[0] / image_size[0], map_size[1] / image_size[1]], dtype=float)
