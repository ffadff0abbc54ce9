"""MSAC initialisation (Sec. 5.1): P3P on triplets of map minima, every candidate scored with Eq. 6 over all maps.

No inlier threshold: a candidate pose's cost is sum_n L_n(w(u_n; R, t)), the truncated loss maps bilinearly
interpolated (nre.maps rule: out-of-grid corners and points behind the camera cost ln|Omega-ring|).

Scorers evaluate many poses at once, vectorised over (pose, point):
- ``DenseTableScorer``: dense loss maps laid out as a "quad table" (the 4 corners of every bilinear cell packed in
  16 bytes), so one gather serves a bilinear look-up; an all-"out" entry serves points outside the grid.
- ``OneHotScorer``: Eq. 6 on one-hot maps at each argmax (Eq. 11's MSAC), in closed form.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import poselib
import torch

from nre.geometry import Camera, Pose
from nre.maps import SparseLossMaps


def _project_many(cam: Camera, R: np.ndarray, t: np.ndarray, X: np.ndarray):
    """Pixels (K, N, 2) float32 and in-front mask (K, N) of N world points under K poses."""
    Xc = np.einsum("kij,nj->kni", R.astype(np.float32), X.astype(np.float32)) + t[:, None, :].astype(np.float32)
    z = Xc[..., 2]
    valid = z > 1e-6
    zs = np.where(valid, z, np.float32(1.0))
    u = Xc[..., 0] / zs
    v = Xc[..., 1] / zs
    if cam.has_distortion:
        uv = cam.normalized_to_pixels(u.astype(np.float64), v.astype(np.float64)).astype(np.float32)
        return uv[..., 0], uv[..., 1], valid
    return np.float32(cam.fx) * u + np.float32(cam.cx), np.float32(cam.fy) * v + np.float32(cam.cy), valid


class DenseTableScorer:
    """Eq. 6 over truncated loss maps on one grid, for many poses at once (torch, float32 arithmetic).

    The maps are laid out as a table of bilinear cells (4 corner losses per entry, "out" corners at the truncation
    level). Scoring is bound by random gathers into that table, so it is stored in float16 by default (the map cache
    stores losses in float16 anyway): half the memory traffic, measured 1.4x faster than float32 for MSAC."""

    def __init__(
        self, maps: SparseLossMaps, points3d: np.ndarray, camera: Camera, chunk_elems: int = 500_000, dtype=np.float16
    ):
        h, w = maps.shape
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"table dtype must be float32 or float16, got {dtype}")
        self.h, self.w, self.trunc = h, w, float(maps.trunc)
        self.X = torch.from_numpy(np.ascontiguousarray(points3d, dtype=np.float32))
        self.cam, self.scale = camera, maps.scale.astype(float)
        self.N = maps.n
        # The table stores the gain trunc - L (0 for "out", exact in float16 too); cost = N trunc - sum of gains.
        # P: the gains padded with one "out" cell on each side. Q[n, y0 + 2, x0 + 2] holds the 4 corner gains of the
        # bilinear cell whose top-left corner is (x0, y0), x0 in [-1, w - 1]; indices 0 and w + 2 (h + 2) are
        # all-"out" entries, reached by clamping, for positions entirely outside the grid or behind the camera.
        P = np.zeros((self.N, h + 2, w + 2), self.dtype)
        P[:, 1:-1, 1:-1] = self.trunc - maps.to_dense(dtype=np.float32)
        Q = np.zeros((self.N, h + 3, w + 3, 4), self.dtype)
        Q[:, 1 : h + 2, 1 : w + 2, 0] = P[:, :-1, :-1]
        Q[:, 1 : h + 2, 1 : w + 2, 1] = P[:, :-1, 1:]
        Q[:, 1 : h + 2, 1 : w + 2, 2] = P[:, 1:, :-1]
        Q[:, 1 : h + 2, 1 : w + 2, 3] = P[:, 1:, 1:]
        self.table = torch.from_numpy(Q.reshape(-1, 4))
        del P, Q
        self.base = torch.arange(self.N, dtype=torch.int64) * ((h + 3) * (w + 3))
        self.chunk = max(1, chunk_elems // max(self.N, 1))

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()

    def __call__(self, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        R = torch.from_numpy(np.ascontiguousarray(R, dtype=np.float32))
        t = torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32))
        with torch.no_grad():
            out = [self._score(R[s : s + self.chunk], t[s : s + self.chunk]) for s in range(0, len(R), self.chunk)]
        return torch.cat(out).numpy() if out else np.zeros(0)

    def _pixels(self, Xc):
        z = Xc[..., 2]
        valid = z > 1e-6
        inv = 1.0 / torch.where(valid, z, torch.ones_like(z))
        if self.cam.has_distortion:
            uv = self.cam.normalized_to_pixels((Xc[..., 0] * inv).double().numpy(), (Xc[..., 1] * inv).double().numpy())
            uv = torch.from_numpy(uv.astype(np.float32))
            return uv[..., 0], uv[..., 1], valid
        c = self.cam
        return c.fx * Xc[..., 0] * inv + c.cx, c.fy * Xc[..., 1] * inv + c.cy, valid

    def _score(self, R, t):
        """Costs of K poses: (K,) float64. Inputs are finite (checked by msac); a point behind the camera is sent
        to x = 1e6, whose clamped index is an all-"out" entry."""
        if self.cam.has_distortion:
            Xc = torch.einsum("kij,nj->kni", R, self.X) + t[:, None, :]
            u, v, valid = self._pixels(Xc)
            x = torch.where(valid, (u + 0.5) * float(self.scale[0]) - 0.5, 1e6)
            y = torch.where(valid, (v + 0.5) * float(self.scale[1]) - 0.5, 1e6)
        else:
            # pinhole: intrinsics and the image -> map transform folded into one 3x3 matrix, one batched product
            c, (sx, sy) = self.cam, self.scale
            Km = torch.tensor(
                [[c.fx * sx, 0, (c.cx + 0.5) * sx - 0.5], [0, c.fy * sy, (c.cy + 0.5) * sy - 0.5], [0, 0, 1.0]],
                dtype=torch.float32,
            )
            p = torch.matmul(Km @ R, self.X.T) + (t @ Km.T)[:, :, None]  # (K, 3, N)
            z = p[:, 2]
            valid = z > 1e-6
            inv = torch.reciprocal(z)
            x = torch.where(valid, p[:, 0] * inv, 1e6)
            y = torch.where(valid, p[:, 1] * inv, 1e6)
        x = x.clamp_(-1e6, 1e6)
        y = y.clamp_(-1e6, 1e6)
        x0 = torch.floor(x)
        y0 = torch.floor(y)
        a = x.sub_(x0)
        b = y.sub_(y0)
        idx = y0.add_(2).clamp_(0, self.h + 2).mul_(self.w + 3).add_(x0.add_(2).clamp_(0, self.w + 2)).long()
        q = self.table[idx.add_(self.base)].float()
        a1, b1 = 1 - a, 1 - b
        vals = (a1 * q[..., 0] + a * q[..., 1]) * b1 + (a1 * q[..., 2] + a * q[..., 3]) * b
        return self.N * self.trunc - vals.sum(1, dtype=torch.float64)


class OneHotScorer:
    """Eq. 6 on one-hot maps at argmax positions ``xy`` (pixels) on a grid of ``cell`` pixels:
    L(p) = trunc * (1 - tri(dx / cell) tri(dy / cell)), tri(s) = max(0, 1 - |s|)."""

    def __init__(
        self,
        xy: np.ndarray,
        points3d: np.ndarray,
        camera: Camera,
        cell: float,
        trunc: float,
        chunk_elems: int = 2_000_000,
    ):
        self.xy = xy.astype(np.float32)
        self.X, self.cam, self.cell, self.trunc = points3d, camera, np.float32(cell), float(trunc)
        self.chunk = max(1, chunk_elems // max(len(xy), 1))

    def __call__(self, R, t):
        out = np.empty(len(R), np.float64)
        for s in range(0, len(R), self.chunk):
            u, v, valid = _project_many(self.cam, R[s : s + self.chunk], t[s : s + self.chunk], self.X)
            tx = np.clip(1 - np.abs(u - self.xy[:, 0]) / self.cell, 0, 1)
            ty = np.clip(1 - np.abs(v - self.xy[:, 1]) / self.cell, 0, 1)
            hit = np.where(valid & np.isfinite(tx * ty), tx * ty, 0).sum(1, dtype=np.float64)
            out[s : s + self.chunk] = self.trunc * (len(self.xy) - hit)
        return out


@dataclass
class MsacResult:
    pose: Pose | None
    cost: float
    n_hypotheses: int
    n_samples: int
    runtime_s: float
    failure_reason: str | None = None
    timings: dict = field(default_factory=dict)


def sampling_weights(min_loss: np.ndarray, entropy: np.ndarray, usable: np.ndarray, best_fraction: float = 0.25):
    """Sampling pmf over maps: the ``best_fraction`` of usable maps with the lowest minimum, weighted by low entropy."""
    idx = np.flatnonzero(usable)
    p = np.zeros(len(min_loss))
    if len(idx) < 3:
        return p
    k = max(3, int(np.ceil(best_fraction * len(idx))))
    best = idx[np.argsort(min_loss[idx], kind="stable")[:k]]
    ent = np.maximum(entropy[best], 1e-3)
    p[best] = 1.0 / ent
    return p / p.sum()


def msac(
    points3d: np.ndarray,
    xy: np.ndarray,
    camera: Camera,
    scorer,
    weights: np.ndarray,
    rng: np.random.Generator,
    iterations: int = 5000,
) -> MsacResult:
    """P3P on ``iterations`` triplets drawn from ``weights`` among the observations ``xy`` (pixels), all candidate
    poses scored with ``scorer``; the lowest cost wins. Never raises: degenerate input gives a failure."""
    t0 = time.perf_counter()
    ok = np.isfinite(xy).all(1) & np.isfinite(points3d).all(1) & (weights > 0)
    if ok.sum() < 3:
        return MsacResult(None, np.inf, 0, 0, time.perf_counter() - t0, f"fewer than 3 usable maps ({ok.sum()})")
    p = np.where(ok, weights, 0)
    p = p / p.sum()
    support = np.flatnonzero(p)
    # triplets of distinct maps, vectorised rejection of repeats
    S = rng.choice(len(p), size=(iterations, 3), p=p)
    for _ in range(20):
        bad = (S[:, 0] == S[:, 1]) | (S[:, 0] == S[:, 2]) | (S[:, 1] == S[:, 2])
        if not bad.any():
            break
        S[bad] = rng.choice(len(p), size=(bad.sum(), 3), p=p)
    S = S[~((S[:, 0] == S[:, 1]) | (S[:, 0] == S[:, 2]) | (S[:, 1] == S[:, 2]))]
    if len(S) == 0 or len(support) < 3:
        return MsacResult(None, np.inf, 0, 0, time.perf_counter() - t0, "could not draw 3 distinct maps")
    nrm = camera.undistort_points(xy)
    bear = np.c_[nrm, np.ones(len(nrm))]
    bear /= np.linalg.norm(bear, axis=1, keepdims=True)
    t1 = time.perf_counter()
    Rs, ts = [], []
    for s in S:  # ~1.5 us per P3P call in poselib
        for sol in poselib.p3p(bear[s], points3d[s]):
            Rs.append(sol.R)
            ts.append(sol.t)
    t2 = time.perf_counter()
    if not Rs:
        return MsacResult(None, np.inf, 0, len(S), time.perf_counter() - t0, "P3P found no solution (degenerate)")
    R = np.asarray(Rs)
    t = np.asarray(ts)
    # finite poses whose translation fits float32 scoring
    good = np.isfinite(R).all((1, 2)) & np.isfinite(t).all(1) & (np.abs(t).max(1, initial=0) < 1e8)
    R, t = R[good], t[good]
    if len(R) == 0:
        return MsacResult(None, np.inf, 0, len(S), time.perf_counter() - t0, "P3P returned only NaN poses")
    costs = np.nan_to_num(scorer(R, t), nan=np.inf)
    best = int(np.argmin(costs))
    if not np.isfinite(costs[best]):
        return MsacResult(None, np.inf, len(R), len(S), time.perf_counter() - t0, "every candidate pose has NaN cost")
    t3 = time.perf_counter()
    return MsacResult(
        Pose(R[best], t[best]),
        float(costs[best]),
        len(R),
        len(S),
        t3 - t0,
        timings={"p3p_s": t2 - t1, "scoring_s": t3 - t2},
    )
