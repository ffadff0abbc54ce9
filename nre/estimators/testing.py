"""Synthetic absolute-pose problems with known poses: loss maps whose peaks sit at the true reprojections
(inliers) or at decoys as high as the inliers' peaks (outliers). Used by the tests and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nre.estimators.problem import Matches, Problem
from nre.geometry import Camera, Pose, img_to_map, so3_exp
from nre.maps.dense import SparseLossMaps, bilinear_corners, log_omega


def sparse_from_logprob(logp: np.ndarray, scale, trunc: float | None = None) -> SparseLossMaps:
    """Truncated sparse loss maps from dense log-probabilities (N, h, w). Cells with loss exactly 0 are kept."""
    N, h, w = logp.shape
    trunc = log_omega(h, w) if trunc is None else trunc
    loss = -logp.reshape(N, -1)
    keep = loss < trunc
    rows, cols = np.nonzero(keep)
    offsets = np.concatenate([[0], np.cumsum(keep.sum(1))])
    return SparseLossMaps((h, w), offsets, cols, loss[rows, cols], trunc, scale)


def dense_coarse_mass(maps: SparseLossMaps, pose: Pose, points3d: np.ndarray, camera: Camera) -> np.ndarray:
    """Reference for ``nre.maps.local.coarse_mass``: the same mass read from a dense (N, h * w) copy of every coarse
    map instead of the sparse cells (O(N h w) memory: for tests and benchmarks only)."""
    uv, valid = camera.project(points3d, pose)
    xy = img_to_map(uv, maps.scale)
    xy = np.where(valid[:, None] & np.isfinite(xy), xy, -10.0)
    flat, _, inside = bilinear_corners(xy, maps.shape)
    dense = maps.to_dense(dtype=np.float32).reshape(maps.n, -1)
    v = dense[np.arange(maps.n)[:, None], flat]
    prob = np.where(inside, np.exp(-v), 0.0)
    return np.where(v >= maps.trunc, 0.0, prob).sum(1)


def gaussian_logprob(centers: np.ndarray, shape: tuple[int, int], width: float, rng=None, noise: float = 0.0):
    """Log-softmax maps (N, h, w) with one Gaussian logit bump of ``width`` cells at each centre (map coords)."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    d2 = (xs[None] - centers[:, 0, None, None]) ** 2 + (ys[None] - centers[:, 1, None, None]) ** 2
    logits = -d2 / (2 * width**2) * 4.0
    if noise and rng is not None:
        logits = logits + rng.normal(0, noise, logits.shape)
    logits = logits - logits.max(axis=(1, 2), keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=(1, 2), keepdims=True))


@dataclass
class SyntheticProblem:
    camera: Camera
    pose: Pose
    points3d: np.ndarray
    inlier: np.ndarray  # (N,) bool
    coarse: SparseLossMaps
    true_xy: np.ndarray  # (N, 2) true reprojections (pixels)
    peak_xy: np.ndarray  # (N, 2) map peak positions (pixels): true reprojection + noise, or decoy
    fine_scale: np.ndarray
    fine_shape: tuple[int, int]
    fine_peak_xy: np.ndarray  # (N, 2) fine peak positions (pixels)

    def fine_source(self, width: float = 1.0):
        """A fine map source (nre.solver.nre.DescriptorFineSource's interface) whose local log-softmax windows
        peak at ``fine_peak_xy``."""
        return _SyntheticFineSource(self, width)


class _SyntheticFineSource:
    def __init__(self, prob: SyntheticProblem, width: float):
        self.p, self.width = prob, width
        self.scale, self.shape = prob.fine_scale, prob.fine_shape

    def window_logprob(self, idx, x0, y0, size):
        c = img_to_map(self.p.fine_peak_xy[idx], self.scale)
        ys, xs = np.mgrid[0:size, 0:size]
        dx = x0[:, None, None] + xs - c[:, 0, None, None]
        dy = y0[:, None, None] + ys - c[:, 1, None, None]
        logits = -(dx**2 + dy**2) / (2 * self.width**2) * 4.0
        logits -= logits.max(axis=(1, 2), keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=(1, 2), keepdims=True))


def make_problem(
    seed: int = 0,
    n: int = 1000,
    outlier_ratio: float = 0.8,
    size: tuple[int, int] = (640, 480),
    coarse_stride: int = 16,
    fine_stride: int = 2,
    noise_px: float = 1.0,
    width_cells: float = 1.0,
) -> SyntheticProblem:
    rng = np.random.default_rng(seed)
    W, H = size
    f = 0.8 * W
    cam = Camera("PINHOLE", W, H, [f, f, (W - 1) / 2, (H - 1) / 2])
    pose = Pose(so3_exp(rng.normal(0, 0.3, 3)), rng.normal(0, 1.0, 3))
    xy = np.c_[rng.uniform(8, W - 8, n), rng.uniform(8, H - 8, n)]
    depth = rng.uniform(5, 20, n)
    Xc = np.c_[(xy - [cam.cx, cam.cy]) / f * depth[:, None], depth]
    X = pose.inverse().transform(Xc)
    inlier = rng.random(n) >= outlier_ratio
    peak = np.where(
        inlier[:, None], xy + rng.normal(0, noise_px, (n, 2)), np.c_[rng.uniform(0, W, n), rng.uniform(0, H, n)]
    )
    cshape = (int(round(H / coarse_stride)), int(round(W / coarse_stride)))
    cscale = np.array([cshape[1] / W, cshape[0] / H])
    logp = gaussian_logprob(img_to_map(peak, cscale), cshape, width_cells)
    coarse = sparse_from_logprob(logp, cscale)
    fshape = (int(round(H / fine_stride)), int(round(W / fine_stride)))
    fscale = np.array([fshape[1] / W, fshape[0] / H])
    fine_peak = np.where(inlier[:, None], xy + rng.normal(0, noise_px * 0.3, (n, 2)), peak)
    return SyntheticProblem(cam, pose, X, inlier, coarse, xy, peak, fscale, fshape, fine_peak)


class SyntheticFeatures:
    """A ``FeatureAccess`` with synthetic descriptors whose correspondence maps peak at known places.

    Each point n gets a random unit descriptor d_n; the target map of a level is the sum of small Gaussian blobs
    (radius ``radius`` cells, support 7 x 7 cells) carrying d_n at the point's peak on that level (``fine_peak_xy``
    at every level, so outliers peak at their decoys). Source descriptors are beta * d_n, so a map's logits are
    beta at its own peak and about beta * N(0, overlapping blobs / D) elsewhere. Used to test the estimators'
    descriptor paths (local fine windows, single-level dense maps) end to end."""

    def __init__(
        self,
        prob: SyntheticProblem,
        strides: dict[str, int] | None = None,
        dim: int = 128,
        beta: float = 20.0,
        radius: float = 0.6,
        seed: int = 0,
    ):
        import torch

        strides = strides or {"coarse": 16, "fine": 2}
        rng = np.random.default_rng(seed)
        d = rng.normal(size=(prob.points3d.shape[0], dim))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        W, H = prob.camera.width, prob.camera.height
        self.levels = tuple(strides)
        self._src, self._map, self._scale = {}, {}, {}
        for level, stride in strides.items():
            h, w = int(round(H / stride)), int(round(W / stride))
            scale = np.array([w / W, h / H])
            c = img_to_map(prob.fine_peak_xy, scale)
            base = np.round(c).astype(np.int64)
            oy, ox = np.mgrid[-3:4, -3:4]
            X = base[:, 0, None, None] + ox
            Y = base[:, 1, None, None] + oy
            g = np.exp(-((X - c[:, 0, None, None]) ** 2 + (Y - c[:, 1, None, None]) ** 2) / (2 * radius**2))
            ok = (X >= 0) & (X < w) & (Y >= 0) & (Y < h)
            n_idx = np.broadcast_to(np.arange(len(c))[:, None, None], X.shape)[ok]
            flat = torch.as_tensor((Y * w + X)[ok])
            contrib = torch.as_tensor(d[n_idx] * g[ok][:, None], dtype=torch.float32)  # (M, D)
            tgt = torch.zeros(h * w, dim).index_add_(0, flat, contrib)
            self._map[level] = tgt.T.reshape(dim, h, w).contiguous()
            self._src[level] = torch.as_tensor(beta * d, dtype=torch.float32)
            self._scale[level] = scale

    def source_descriptors(self, level: str):
        return self._src[level]

    def target_map(self, level: str):
        return self._map[level]

    def target_scale(self, level: str) -> np.ndarray:
        return self._scale[level]


def matches_problem(
    seed: int, n: int = 500, outliers: float = 0.5, noise: float = 1.0, distortion: bool = False
) -> tuple[Problem, float]:
    """A matches-only problem with a known pose, for tests and benchmarks: ``n`` points at depths 5-15 seen by a
    640 x 480 camera (OPENCV model with distortion if asked), observations with Gaussian ``noise`` px, a fraction
    ``outliers`` replaced by uniform pixels. Returns (problem, median depth)."""
    from nre.geometry import Camera, so3_exp

    rng = np.random.default_rng(seed)
    W, H = 640, 480
    if distortion:
        cam = Camera("OPENCV", W, H, [500, 500, 319.5, 239.5, -0.1, 0.02, 0.001, -0.001])
    else:
        cam = Camera("PINHOLE", W, H, [500, 500, 319.5, 239.5])
    pose = Pose(so3_exp(rng.normal(0, 0.3, 3)), rng.normal(0, 1, 3))
    xy = np.c_[rng.uniform(0, W - 1, n), rng.uniform(0, H - 1, n)]
    depth = rng.uniform(5, 15, n)
    nrm = cam.undistort_points(xy)
    X = pose.inverse().transform(np.c_[nrm * depth[:, None], depth])
    obs = xy + rng.normal(0, noise, (n, 2))
    out = rng.random(n) < outliers
    obs[out] = np.c_[rng.uniform(0, W - 1, out.sum()), rng.uniform(0, H - 1, out.sum())]
    score = np.where(out, rng.uniform(0.01, 0.5, n), rng.uniform(0.2, 1.0, n))
    problem = Problem(f"syn{seed}", X, cam, seed, gt_pose=pose, matches=Matches(obs, score, None))
    problem.extras["outlier_mask"] = out
    return problem, float(np.median(depth))
