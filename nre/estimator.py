"""The NRE pose estimators: coarse-to-fine (Sec. 5.3), single-level (Table 1), and RE as a special case (Eq. 11).

Coarse-to-fine: coarse maps -> MSAC + P3P -> coarse GNC -> local fine maps in a window around each point's
reprojection under the coarse pose -> fine GNC. No high-resolution dense map is ever built.

Local fine maps. A local softmax over a window always sums to 1, so an outlier would get a full-strength peak.
Each local map is therefore scaled by the coarse probability mass of its point in the 2 x 2 coarse cells around the
point's coarse reprojection, and truncated at ln of the full fine grid's |Omega-ring|, so outliers stay weak.
``local_norm="mass"`` (default) gives C_f(q) = m_n * softmax_window(q): with a 16-cell window at stride 2 and coarse
cells of 16 px, the window covers those 2 x 2 coarse cells, so the coarse mass is redistributed over the fine cells
that share it. ``local_norm="reference"`` further divides by the number of window cells, as the reference code does.
The window defaults to 16 fine cells (the reference; the paper says 64x64) and is kept ``margin_px`` (8) pixels
inside the image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from nre.geometry import Camera, Pose, img_to_map, map_to_img
from nre.gnc import DEFAULT_SIGMAS, Terms, refine
from nre.maps import SparseLossMaps, dense_maps, log_omega
from nre.msac import DenseTableScorer, OneHotScorer, msac, sampling_weights
from nre.problem import EstimateResult, Problem
from nre.seeding import rng_for


@dataclass
class NreOptions:
    msac_iterations: int = 5000
    best_fraction: float = 0.25
    coarse_sigmas: tuple = DEFAULT_SIGMAS
    fine_sigmas: tuple = DEFAULT_SIGMAS
    max_iterations: int = 100
    window: int = 16
    margin_px: float = 8.0
    local_norm: str = "mass"
    coarse_level: str = "coarse"
    fine_level: str = "fine"


# ----------------------------------------------------------------------------------------------- helpers
def map_minima(maps: SparseLossMaps) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) image pixels of each map's argmin cell and (N,) its loss (NaN / trunc for empty maps)."""
    xy = np.full((maps.n, 2), np.nan)
    mins = np.full(maps.n, maps.trunc)
    if maps.nnz:
        pid = maps.point_index()
        order = np.lexsort((maps.values, pid))
        has = maps.counts > 0
        first = order[maps.offsets[:-1][has]]
        c = maps.cells[first].astype(np.int64)
        w = maps.shape[1]
        xy[has] = map_to_img(np.c_[c % w, c // w], maps.scale)
        mins[has] = maps.values[first]
    return xy, mins


def map_entropy(maps: SparseLossMaps) -> np.ndarray:
    """Entropy of each map from its sparse form (truncated cells contribute ~0 mass)."""
    p = np.exp(-maps.values.astype(np.float64))
    return np.bincount(maps.point_index(), weights=p * maps.values, minlength=maps.n)


def eq6_cost(scorer, pose: Pose | None) -> float:
    if pose is None:
        return float("nan")
    return float(scorer(pose.R[None], pose.t[None])[0])


def _pose_diag(scorer, pose, gt):
    d = {"cost": eq6_cost(scorer, pose)}
    if gt is not None:
        d["cost_at_truth"] = eq6_cost(scorer, gt)
    return d


def local_windows(
    pose: Pose, points3d: np.ndarray, camera: Camera, fine_scale, fine_shape, window: int, margin_px: float
):
    """Window origins (x0, y0) in fine cells centred on each point's reprojection, and the in-front mask."""
    h, w = fine_shape
    uv, valid = camera.project(points3d, pose)
    pf = img_to_map(uv, fine_scale)
    lo = np.ceil(img_to_map(np.array([margin_px, margin_px]), fine_scale)).astype(int)
    hi = np.floor(
        img_to_map(np.array([camera.width - 1 - margin_px, camera.height - 1 - margin_px]), fine_scale)
    ).astype(int) - (window - 1)
    lo = np.minimum(lo, [max(w - window, 0), max(h - window, 0)])
    hi = np.maximum(hi, lo)
    origin = np.round(pf - (window - 1) / 2.0)
    origin = np.where(np.isfinite(origin), origin, 0)
    x0 = np.clip(origin[:, 0], lo[0], hi[0]).astype(np.int64)
    y0 = np.clip(origin[:, 1], lo[1], hi[1]).astype(np.int64)
    return x0, y0, valid & np.isfinite(uv).all(1)


def descriptor_window_logprob(src: torch.Tensor, tgt: torch.Tensor, x0, y0, size: int, chunk: int = 256):
    """Local log-softmax maps (M, size, size) of source descriptors on windows of the target map."""
    D, h, w = tgt.shape
    out = np.empty((len(src), size, size), np.float32)
    ar = torch.arange(size)
    with torch.no_grad():
        for s in range(0, len(src), chunk):
            ys = (torch.as_tensor(y0[s : s + chunk])[:, None] + ar).clamp(0, h - 1)  # (m, S)
            xs = (torch.as_tensor(x0[s : s + chunk])[:, None] + ar).clamp(0, w - 1)
            win = tgt[:, ys[:, :, None], xs[:, None, :]]  # (D, m, S, S)
            logits = torch.einsum("md,dmij->mij", src[s : s + chunk], win)
            out[s : s + chunk] = torch.log_softmax(logits.reshape(len(logits), -1), -1).reshape(-1, size, size).numpy()
    return out


class DescriptorFineSource:
    """Local fine correspondence maps from descriptors: source point descriptors on windows of the target map."""

    def __init__(self, features, level: str = "fine"):
        self.src = features.source_descriptors(level)
        self.tgt = features.target_map(level)
        self.scale = np.asarray(features.target_scale(level), dtype=float)
        self.shape = tuple(int(v) for v in self.tgt.shape[1:])

    def window_logprob(self, idx, x0, y0, size):
        return descriptor_window_logprob(self.src[idx], self.tgt, x0, y0, size)


def local_fine_maps(
    logp_local: np.ndarray, x0, y0, valid, coarse_mass: np.ndarray, fine_shape, fine_scale, norm: str = "mass"
) -> SparseLossMaps:
    """Sparse loss maps over the full fine grid from local windows, scaled by the coarse mass."""
    N, S, _ = logp_local.shape
    h, w = fine_shape
    trunc = log_omega(h, w)
    logm = np.log(np.maximum(np.asarray(coarse_mass, dtype=np.float64), 1e-300))
    if norm == "reference":
        logm = logm - np.log(S * S)
    elif norm != "mass":
        raise ValueError(f"local_norm must be 'mass' or 'reference', got {norm!r}")
    loss = -(logp_local + logm[:, None, None])
    ys, xs = np.mgrid[0:S, 0:S]
    X = x0[:, None, None] + xs
    Y = y0[:, None, None] + ys
    keep = (loss < trunc) & valid[:, None, None] & (X >= 0) & (X < w) & (Y >= 0) & (Y < h)
    n_idx, yy, xx = np.nonzero(keep)
    cells = (Y[n_idx, yy, xx] * w + X[n_idx, yy, xx]).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(n_idx, minlength=N))])
    return SparseLossMaps((h, w), offsets, cells, loss[n_idx, yy, xx], trunc, fine_scale)


def coarse_mass(maps: SparseLossMaps, pose: Pose, points3d: np.ndarray, camera: Camera) -> np.ndarray:
    """Probability mass of each coarse map in the 2 x 2 cells around the point's reprojection."""
    from nre.maps import bilinear_corners

    uv, valid = camera.project(points3d, pose)
    xy = img_to_map(uv, maps.scale)
    xy = np.where(valid[:, None] & np.isfinite(xy), xy, -10.0)
    flat, _, inside = bilinear_corners(xy, maps.shape)
    dense = maps.to_dense(dtype=np.float32).reshape(maps.n, -1)
    prob = np.where(inside, np.exp(-dense[np.arange(maps.n)[:, None], flat]), 0.0)
    # cells at the truncation level hold (at most) 1/|Omega-ring|: count them as 0
    prob = np.where(dense[np.arange(maps.n)[:, None], flat] >= maps.trunc, 0.0, prob)
    return prob.sum(1)


def _result(stage, pose, t0, diag, failure=None):
    if pose is None:
        return EstimateResult.failure(failure or "no pose", time.perf_counter() - t0, stage=stage, diagnostics=diag)
    return EstimateResult(True, pose, time.perf_counter() - t0, stage=stage, diagnostics=diag)


# ----------------------------------------------------------------------------------------------- estimators
def run_msac_on_maps(
    problem: Problem,
    maps: SparseLossMaps,
    entropy: np.ndarray | None,
    opts: NreOptions,
    key: str,
    table_dtype=np.float32,
):
    scorer = DenseTableScorer(maps, problem.points3d, problem.camera, dtype=table_dtype)
    xy, mins = map_minima(maps)
    ent = map_entropy(maps) if entropy is None else entropy
    usable = np.isfinite(xy).all(1) & (mins < maps.trunc)
    w = sampling_weights(mins, ent, usable, opts.best_fraction)
    rng = rng_for(problem.seed, key, "msac")
    return msac(problem.points3d, xy, problem.camera, scorer, w, rng, opts.msac_iterations), scorer


def nre_coarse_to_fine(problem: Problem, opts: NreOptions | None = None) -> list[EstimateResult]:
    """Three results: stages p3p (MSAC), coarse_gnc and fine_gnc; a failed stage fails the later ones."""
    opts = opts or NreOptions()
    t0 = time.perf_counter()
    stages = ("p3p", "coarse_gnc", "fine_gnc")
    if problem.coarse_maps is None:
        return [EstimateResult.failure("no coarse maps", stage=s) for s in stages]
    maps = problem.coarse_maps
    ent = problem.coarse_stats.entropy if problem.coarse_stats is not None else None
    m, scorer = run_msac_on_maps(problem, maps, ent, opts, "nre_c2f")
    base = {"map_bytes_coarse": int(maps.nbytes), "msac_hypotheses": m.n_hypotheses, **m.timings}
    out = [_result("p3p", m.pose, t0, {**base, **_pose_diag(scorer, m.pose, problem.gt_pose)}, m.failure_reason)]
    if m.pose is None:
        return out + [EstimateResult.failure(m.failure_reason, stage=s) for s in stages[1:]]
    t1 = time.perf_counter()
    g = refine(
        m.pose, problem.points3d, problem.camera, Terms.from_sparse(maps), opts.coarse_sigmas, opts.max_iterations
    )
    d1 = {"iterations": g.iterations, "stop": g.stop_reason, "stage_s": time.perf_counter() - t1}
    out.append(_result("coarse_gnc", g.pose, t0, {**base, **d1, **_pose_diag(scorer, g.pose, problem.gt_pose)}))
    source = problem.extras.get("fine_source")
    if source is None and problem.features is not None:
        source = DescriptorFineSource(problem.features, opts.fine_level)
    if source is None:
        out.append(EstimateResult.failure("no fine descriptors (features access missing)", stage="fine_gnc"))
        return out
    t2 = time.perf_counter()
    fscale, fshape = source.scale, source.shape
    x0, y0, valid = local_windows(g.pose, problem.points3d, problem.camera, fscale, fshape, opts.window, opts.margin_px)
    logp = source.window_logprob(np.arange(problem.n), x0, y0, opts.window)
    mass = coarse_mass(maps, g.pose, problem.points3d, problem.camera)
    fine = local_fine_maps(logp, x0, y0, valid, mass, fshape, fscale, opts.local_norm)
    t3 = time.perf_counter()
    f = refine(g.pose, problem.points3d, problem.camera, Terms.from_sparse(fine), opts.fine_sigmas, opts.max_iterations)
    d2 = {
        "iterations": f.iterations,
        "stop": f.stop_reason,
        "local_maps_s": t3 - t2,
        "stage_s": time.perf_counter() - t2,
        "map_bytes_fine": int(fine.nbytes),
        "fine_nnz": int(fine.nnz),
    }
    out.append(_result("fine_gnc", f.pose, t0, {**base, **d2, **_pose_diag(scorer, f.pose, problem.gt_pose)}))
    return out


def nre_single_level(problem: Problem, opts: NreOptions | None = None, level: str | None = None) -> EstimateResult:
    """MSAC + GNC on dense maps at one resolution (the features' finest level: the Table 1 setting)."""
    opts = opts or NreOptions()
    level = level or opts.fine_level
    t0 = time.perf_counter()
    if problem.dense_maps is not None:
        maps = problem.dense_maps
    elif problem.features is not None:
        f = problem.features
        maps, _ = dense_maps(f.source_descriptors(level), f.target_map(level), 1.0, f.target_scale(level))
    else:
        return EstimateResult.failure("no dense maps and no features access")
    t1 = time.perf_counter()
    m, scorer = run_msac_on_maps(problem, maps, None, opts, "nre_single", table_dtype=np.float16)
    if m.pose is None:
        return EstimateResult.failure(m.failure_reason, time.perf_counter() - t0)
    t2 = time.perf_counter()
    g = refine(m.pose, problem.points3d, problem.camera, Terms.from_sparse(maps), opts.fine_sigmas, opts.max_iterations)
    diag = {
        "maps_s": t1 - t0,
        "msac_s": t2 - t1,
        "gnc_s": time.perf_counter() - t2,
        "iterations": g.iterations,
        "stop": g.stop_reason,
        "map_bytes": int(maps.nbytes),
        "table_bytes": int(scorer.nbytes),
        **_pose_diag(scorer, g.pose, problem.gt_pose),
    }
    return EstimateResult(True, g.pose, time.perf_counter() - t0, diagnostics=diag)


def re_gaussian(problem: Problem, sigmas_px: list[float], opts: NreOptions | None = None) -> list[EstimateResult]:
    """Eq. 11: NRE on one-hot maps at each argmax = RE with a Gaussian robust loss of width sigma (pixels).

    One MSAC on the one-hot maps (cells of the dense level) is shared by every sigma; GNC then runs with the
    schedule scaled so that its last value is sigma (the schedule's shape is NRE's: 2, 1, 0.9, ..., 0.6)."""
    opts = opts or NreOptions()
    t0 = time.perf_counter()
    if problem.matches is None:
        return [EstimateResult.failure("no matches") for _ in sigmas_px]
    xy = problem.matches.xy
    dscale = np.asarray(problem.extras.get("dense_scale", (1.0, 1.0)), dtype=float)
    shape = problem.extras.get("dense_shape", (problem.camera.height, problem.camera.width))
    trunc = log_omega(*shape)
    cell = float(np.mean(1.0 / dscale))
    scorer = OneHotScorer(xy, problem.points3d, problem.camera, cell, trunc)
    score = problem.matches.score if problem.matches.score is not None else np.ones(len(xy))
    ent = problem.matches.entropy if problem.matches.entropy is not None else np.ones(len(xy))
    w = sampling_weights(-np.log(np.maximum(score, 1e-30)), ent, np.isfinite(xy).all(1), opts.best_fraction)
    m = msac(
        problem.points3d, xy, problem.camera, scorer, w, rng_for(problem.seed, "re_gauss", "msac"), opts.msac_iterations
    )
    t_init = time.perf_counter() - t0
    if m.pose is None:
        return [EstimateResult.failure(m.failure_reason, t_init) for _ in sigmas_px]
    terms = Terms(np.arange(len(xy)), xy.astype(np.float64), np.full(len(xy), trunc), len(xy), np.ones(2))
    out = []
    for s in sigmas_px:
        t1 = time.perf_counter()
        sched = tuple(float(s) * v / DEFAULT_SIGMAS[-1] for v in DEFAULT_SIGMAS)
        g = refine(m.pose, problem.points3d, problem.camera, terms, sched, opts.max_iterations)
        diag = {
            "msac_s": t_init,
            "gnc_s": time.perf_counter() - t1,
            "iterations": g.iterations,
            "stop": g.stop_reason,
            **_pose_diag(scorer, g.pose, problem.gt_pose),
        }
        out.append(EstimateResult(True, g.pose, t_init + time.perf_counter() - t1, diagnostics=diag))
    return out
