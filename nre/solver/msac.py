"""MSAC initialisation (Sec. 5.1): P3P on triplets of map minima, every candidate scored with Eq. 6 over all maps.

No inlier threshold: a candidate pose's cost is sum_n L_n(w(u_n; R, t)), the truncated loss maps bilinearly
interpolated (nre.maps.dense rule: out-of-grid corners and points behind the camera cost ln|Omega-ring|).

Scorers evaluate many poses at once, vectorised over (pose, point):
- ``DenseTableScorer``: the truncated loss maps laid out as a "quad table" (the 4 corner gains of every bilinear
  cell packed in one 8- or 16-byte entry) over each map's bounding box of stored cells, so one gather serves a
  bilinear look-up; an all-"out" border entry serves points outside the box, the grid, or behind the camera.
  Chunks of poses run in parallel Python threads, each single-threaded in torch (see ``_map_chunks``).

P3P: ``nre.geometry.p3p.p3p_batch`` solves every sample at once (or poselib.p3p per sample, ``solver="poselib"``).
- ``OneHotScorer``: Eq. 6 on one-hot maps at each argmax (Eq. 11's MSAC), in closed form.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from nre.geometry import Camera, Pose
from nre.geometry.p3p import bearings_from_pixels, p3p_batch, p3p_poselib
from nre.maps.dense import SparseLossMaps


def _project_many(cam: Camera, R: np.ndarray, t: np.ndarray, X: np.ndarray):
    """Pixels (K, N, 2) float32 and in-front mask (K, N) of N world points under K poses."""
    # batched matmul (K, 3, 3) @ (3, N): far faster than the equivalent einsum (docs/results-log.md)
    Xc = R.astype(np.float32) @ np.ascontiguousarray(X.T, dtype=np.float32)
    Xc += t.astype(np.float32)[:, :, None]
    z = Xc[:, 2]
    valid = z > 1e-6
    zs = np.where(valid, z, np.float32(1.0))
    u = Xc[:, 0] / zs
    v = Xc[:, 1] / zs
    if cam.has_distortion:
        uv = cam.normalized_to_pixels(u.astype(np.float64), v.astype(np.float64)).astype(np.float32)
        return uv[..., 0], uv[..., 1], valid
    return np.float32(cam.fx) * u + np.float32(cam.cx), np.float32(cam.fy) * v + np.float32(cam.cy), valid


def _ragged(starts: np.ndarray, counts: np.ndarray, step=1) -> np.ndarray:
    """Concatenated ranges starts[i] + step * arange(counts[i]) (step scalar or per element of the result)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + within * step


def _map_chunks(fn, starts) -> list:
    """``[fn(s) for s in starts]``, the chunks spread over torch's thread count by Python threads, each running
    torch single-threaded (torch ops release the GIL). Each chunk is ~20 small element-wise ops: torch's own
    intra-op threading synchronises both threads at every op, which on a shared, loaded machine stalls on a
    descheduled thread (docs/results-log.md); the results are the same, bit for bit. The thread count is restored
    afterwards."""
    starts = list(starts)
    n = torch.get_num_threads()
    if n <= 1 or len(starts) < 2:
        return [fn(s) for s in starts]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(min(n, len(starts))) as ex:
            return list(ex.map(fn, starts))
    finally:
        torch.set_num_threads(n)


class DenseTableScorer:
    """Eq. 6 over truncated loss maps on one grid, for many poses at once (torch, float32 arithmetic).

    The maps are laid out as a table of bilinear cells (the 4 corner gains trunc - L per entry, "out" corners 0),
    over each map's bounding box of stored cells only. Scoring is bound by gathers into that table, so it is stored
    in float16 by default (the map cache stores losses in float16 anyway): half the memory traffic of float32."""

    def __init__(
        self, maps: SparseLossMaps, points3d: np.ndarray, camera: Camera, chunk_elems: int = 250_000, dtype=np.float16
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
        # Per map, only the bounding box [bx0, bx1] x [by0, by1] of its stored cells is laid out (no dense map over
        # the whole grid: a peaked map costs a few entries, a full-resolution dense map no more than its box).
        # Entry (iy, ix) of map n holds the 4 corner gains of the bilinear cell whose top-left corner is
        # (x0, y0) = (bx0 - 2 + ix, by0 - 2 + iy), ix in [0, bw + 2]: corners outside the box are "out" (gain 0),
        # and the border entries ix = 0 or bw + 2 (iy likewise) are all-"out", reached by clamping, for positions
        # entirely outside the box, the grid, or behind the camera.
        n_idx = maps.point_index()
        cx = (maps.cells % w).astype(np.int64)
        cy = (maps.cells // w).astype(np.int64)
        has = maps.counts > 0
        bx0 = np.zeros(self.N, np.int64)
        by0 = np.zeros(self.N, np.int64)
        bx1 = np.zeros(self.N, np.int64)
        by1 = np.zeros(self.N, np.int64)
        if maps.nnz:
            st = maps.offsets[:-1][has]
            bx0[has], bx1[has] = np.minimum.reduceat(cx, st), np.maximum.reduceat(cx, st)
            by0[has], by1[has] = np.minimum.reduceat(cy, st), np.maximum.reduceat(cy, st)
        bw, bh = bx1 - bx0 + 1, by1 - by0 + 1
        if (bw * bh).sum() > 0.5 * self.N * h * w:  # broad maps: one box, the whole grid (built by slicing, fast)
            bx0[:], by0[:], bw[:], bh[:] = 0, 0, w, h
        # P: the gains of each box padded by two "out" cells on each side, flat, rows of width pw = bw + 4:
        # P[n][r, c] = gain at (x, y) = (bx0 - 2 + c, by0 - 2 + r). Entry (iy, ix) of Q holds P[n][iy + dy, ix + dx]
        # for the 4 corners (dy, dx), i.e. Q is P without its last row and column, read at 4 shifts.
        pw, ph = bw + 4, bh + 4
        p_off = np.concatenate([[0], np.cumsum(pw * ph)])
        P = np.zeros(p_off[-1] + 1, self.dtype)
        P[p_off[n_idx] + (cy - by0[n_idx] + 2) * pw[n_idx] + (cx - bx0[n_idx] + 2)] = self.trunc - maps.values
        qw, qh = bw + 3, bh + 3
        q_off = np.concatenate([[0], np.cumsum(qw * qh)])
        if self.N and (pw == pw[0]).all() and (ph == ph[0]).all():  # same box size: reshape and slice
            P3 = P[:-1].reshape(self.N, ph[0], pw[0])
            Q = np.empty((self.N, ph[0] - 1, pw[0] - 1, 4), self.dtype)
            Q[..., 0], Q[..., 1] = P3[:, :-1, :-1], P3[:, :-1, 1:]
            Q[..., 2], Q[..., 3] = P3[:, 1:, :-1], P3[:, 1:, 1:]
            Q = Q.reshape(-1, 4)
            del P3
        else:
            keep = np.ones(p_off[-1], bool)
            # the last row of each box: pw entries from p_off + (ph - 1) pw; the last column: every pw-th entry
            keep[_ragged(p_off[:-1] + (ph - 1) * pw, pw)] = False
            keep[_ragged(p_off[:-1] + pw - 1, ph, step=np.repeat(pw, ph))] = False
            sel = np.flatnonzero(keep)
            del keep
            Q = np.empty((len(sel), 4), self.dtype)
            Q[:, 0] = P[sel]
            Q[:, 1] = P[sel + 1]
            sel += np.repeat(pw, qw * qh)
            Q[:, 2] = P[sel]
            Q[:, 3] = P[sel + 1]
            del sel
        self.table = torch.from_numpy(Q)
        # one 8- or 16-byte element per table entry: a flat index_select is cheaper than advanced indexing
        self._entries = self.table.view(torch.int64 if self.dtype == np.float16 else torch.complex128).view(-1)
        del P, Q
        col = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None]  # noqa: E731
        # per map: the grid offset of its box (x0 + 2 - bx0 is the entry column), the largest entry index, the width
        self.ox, self.oy = col(bx0 - 2), col(by0 - 2)
        self.mx, self.my = col(bw + 2), col(bh + 2)
        self.qw = col(qw)
        self.base = torch.from_numpy(q_off[:-1].astype(np.int64))[:, None]
        self.chunk = max(1, chunk_elems // max(self.N, 1))

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()

    def __call__(self, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        R = torch.from_numpy(np.ascontiguousarray(R, dtype=np.float32))
        t = torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32))
        starts = range(0, len(R), self.chunk)
        if not starts:
            return np.zeros(0)
        with torch.no_grad():
            out = _map_chunks(lambda s: self._score(R[s : s + self.chunk], t[s : s + self.chunk]), starts)
        return torch.cat(out).numpy()

    def _score(self, R, t):
        """Costs of K poses: (K,) float64. Inputs are finite (checked by msac); a point behind the camera is sent
        to x = 1e6, whose clamped index is an all-"out" entry.

        Layout: every (point, pose) array is (N, K), so consecutive look-ups of one point (over the poses of a chunk)
        stay inside that point's part of the table (cache-resident), and a look-up is a flat index_select of whole
        4-corner entries, faster than a (K, N) layout over dense per-map tables with advanced indexing and with a far
        smaller table (docs/results-log.md)."""
        K = len(R)
        c, (sx, sy) = self.cam, self.scale
        if c.has_distortion:
            Km = torch.eye(3, dtype=torch.float32)
        else:  # pinhole: intrinsics and the image -> map transform folded into one 3x3 matrix
            Km = torch.tensor(
                [[c.fx * sx, 0, (c.cx + 0.5) * sx - 0.5], [0, c.fy * sy, (c.cy + 0.5) * sy - 0.5], [0, 0, 1.0]],
                dtype=torch.float32,
            )
        A = Km @ R  # (K, 3, 3)
        b = t @ Km.T  # (K, 3)
        # p[n, i, k] = sum_j A[k, i, j] X[n, j] + b[k, i]: one (N, 3) x (3, 3K) product
        p = (self.X @ A.permute(2, 1, 0).reshape(3, 3 * K)).view(-1, 3, K) + b.T[None]
        z = p[:, 2]
        valid = z > 1e-6
        inv = torch.reciprocal(z)
        if c.has_distortion:
            u = (p[:, 0] * inv).double().numpy()
            v = (p[:, 1] * inv).double().numpy()
            uv = torch.from_numpy(c.normalized_to_pixels(u, v).astype(np.float32))
            x = torch.where(valid, (uv[..., 0] + 0.5) * float(sx) - 0.5, 1e6)
            y = torch.where(valid, (uv[..., 1] + 0.5) * float(sy) - 0.5, 1e6)
        else:
            x = torch.where(valid, p[:, 0] * inv, 1e6)
            y = torch.where(valid, p[:, 1] * inv, 1e6)
        x = x.nan_to_num_(1e6).clamp_(-1e6, 1e6)
        y = y.nan_to_num_(1e6).clamp_(-1e6, 1e6)
        x0 = torch.floor(x)
        y0 = torch.floor(y)
        a = x.sub_(x0)
        b = y.sub_(y0)
        # entry (iy, ix) of the point's box, clamped onto its all-"out" border (exact integers in float32)
        iy = torch.minimum(y0.sub_(self.oy).clamp_(min=0), self.my)
        ix = torch.minimum(x0.sub_(self.ox).clamp_(min=0), self.mx)
        idx = iy.mul_(self.qw).add_(ix).long().add_(self.base).view(-1)
        q = self._entries.index_select(0, idx).view(self.table.dtype).view(self.N, K, 4).float()  # (N, K, 4)
        vals = torch.lerp(torch.lerp(q[..., 0], q[..., 1], a), torch.lerp(q[..., 2], q[..., 3], a), b)  # bilinear
        return self.N * self.trunc - vals.sum(0, dtype=torch.float64)


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


class GaussianScorer:
    """Eq. 11 for many poses at once, at several widths: cost_s(R, t) = -w sum_n k_s(||xy_n - w(u_n; R, t)||),
    k_s(d) = exp(-d^2 / (2 s^2)), s in image pixels (the matches' unit), w = ``weight`` (ln|Omega-ring| of the
    one-hot maps: the same scale as GNC's Eq. 9 cost). Returns (K, S) costs for the S ``sigmas``; a point behind
    the camera contributes 0. Eq. 11's MSAC ranks its hypotheses with it, so initialisation and refinement share
    one objective, in pixels, whatever the feature grid's stride."""

    def __init__(
        self,
        xy: np.ndarray,
        points3d: np.ndarray,
        camera: Camera,
        sigmas,
        weight: float = 1.0,
        chunk_elems: int = 2_000_000,
    ):
        self.xy = xy.astype(np.float32)
        self.X, self.cam, self.weight = points3d, camera, float(weight)
        self.sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
        if not (np.isfinite(self.sigmas).all() and (self.sigmas > 0).all()):
            raise ValueError(f"GaussianScorer: sigmas must be positive pixels, got {list(sigmas)}")
        self.chunk = max(1, chunk_elems // max(len(xy), 1))
        # terms beyond 5 sigma (exp(-12.5) = 4e-6 of a term) are dropped, per sigma: a sigma's costs do not depend
        # on the other sigmas of the sweep
        self.radius2 = [np.float32((5.0 * s) ** 2) for s in self.sigmas]

    def __call__(self, R, t) -> np.ndarray:
        out = np.zeros((len(R), len(self.sigmas)), np.float64)
        for s in range(0, len(R), self.chunk):
            u, v, valid = _project_many(self.cam, R[s : s + self.chunk], t[s : s + self.chunk], self.X)
            with np.errstate(over="ignore", invalid="ignore"):  # far / degenerate projections: inf or NaN, dropped
                d2 = (u - self.xy[:, 0]) ** 2 + (v - self.xy[:, 1]) ** 2
                d2 = np.where(valid & np.isfinite(d2), d2, np.float32(np.inf))  # behind the camera: no term
            # dense float32 exponentials (faster than gathering the terms within 5 sigma, which on real pairs are
            # most of them: docs/results-log.md), float64 sums over the points
            for j, sig in enumerate(self.sigmas):
                k = np.exp(d2 * np.float32(-0.5 / (sig * sig)))
                k[d2 >= self.radius2[j]] = 0
                out[s : s + self.chunk, j] = -k.sum(1, dtype=np.float64)
        return self.weight * out


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


@dataclass
class Hypotheses:
    """P3P poses of MSAC's samples (finite, translation within float32 range), or why there are none."""

    R: np.ndarray  # (K, 3, 3)
    t: np.ndarray  # (K, 3)
    n_samples: int
    failure_reason: str | None = None
    timings: dict = field(default_factory=dict)


def draw_hypotheses(
    points3d: np.ndarray,
    xy: np.ndarray,
    camera: Camera,
    weights: np.ndarray,
    rng: np.random.Generator,
    iterations: int = 5000,
    solver: str = "numpy",
) -> Hypotheses:
    """``iterations`` triplets of distinct observations drawn from ``weights``, each solved by P3P (every solution
    kept). Shared by ``msac`` and by scorers that rank the same hypotheses under several objectives (Eq. 11's
    sweep over sigma)."""
    empty = (np.zeros((0, 3, 3)), np.zeros((0, 3)))
    ok = np.isfinite(xy).all(1) & np.isfinite(points3d).all(1) & (weights > 0)
    if ok.sum() < 3:
        return Hypotheses(*empty, 0, f"fewer than 3 usable maps ({ok.sum()})")
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
        return Hypotheses(*empty, 0, "could not draw 3 distinct maps")
    bear = bearings_from_pixels(camera, np.where(np.isfinite(xy), xy, 0.0))
    t1 = time.perf_counter()
    if solver == "numpy":
        R, t, _ = p3p_batch(bear[S], points3d[S])
    elif solver == "poselib":
        R, t, _ = p3p_poselib(bear[S], points3d[S])
    else:
        raise ValueError(f"msac: unknown P3P solver {solver!r} (numpy or poselib)")
    timings = {"p3p_s": time.perf_counter() - t1}
    if len(R) == 0:
        return Hypotheses(*empty, len(S), "P3P found no solution (degenerate)", timings)
    # finite poses whose translation fits float32 scoring
    good = np.isfinite(R).all((1, 2)) & np.isfinite(t).all(1) & (np.abs(t).max(1, initial=0) < 1e8)
    R, t = R[good], t[good]
    if len(R) == 0:
        return Hypotheses(*empty, len(S), "P3P returned only NaN poses", timings)
    return Hypotheses(R, t, len(S), None, timings)


def best_hypothesis(hyp: Hypotheses, costs: np.ndarray, t0: float) -> MsacResult:
    """The lowest-cost hypothesis as an ``MsacResult`` (``costs`` (K,) of ``hyp``'s poses; NaN counts as +inf)."""
    if hyp.failure_reason is not None:
        return MsacResult(None, np.inf, 0, hyp.n_samples, time.perf_counter() - t0, hyp.failure_reason)
    costs = np.nan_to_num(np.asarray(costs, dtype=float), nan=np.inf)
    best = int(np.argmin(costs))
    if not np.isfinite(costs[best]):
        return MsacResult(
            None, np.inf, len(hyp.R), hyp.n_samples, time.perf_counter() - t0, "every candidate pose has NaN cost"
        )
    return MsacResult(
        Pose(hyp.R[best], hyp.t[best]), float(costs[best]), len(hyp.R), hyp.n_samples, time.perf_counter() - t0,
        timings=dict(hyp.timings),
    )  # fmt: skip


def msac(
    points3d: np.ndarray,
    xy: np.ndarray,
    camera: Camera,
    scorer,
    weights: np.ndarray,
    rng: np.random.Generator,
    iterations: int = 5000,
    solver: str = "numpy",
) -> MsacResult:
    """P3P on ``iterations`` triplets drawn from ``weights`` among the observations ``xy`` (pixels), all candidate
    poses scored with ``scorer``; the lowest cost wins. Never raises: degenerate input gives a failure.

    ``solver``: "numpy" (p3p_batch, every sample at once) or "poselib" (poselib.p3p, one call per sample);
    they return the same solutions (tests/test_msac.py). Pixels become unit bearings through the camera, distortion
    included (Camera.undistort_points)."""
    t0 = time.perf_counter()
    hyp = draw_hypotheses(points3d, xy, camera, weights, rng, iterations, solver)
    if hyp.failure_reason is not None:
        return best_hypothesis(hyp, np.zeros(0), t0)
    t2 = time.perf_counter()
    res = best_hypothesis(hyp, scorer(hyp.R, hyp.t), t0)
    res.timings["scoring_s"] = time.perf_counter() - t2
    return res
