"""The NRE pose estimators: coarse-to-fine (Sec. 5.3), single-level (Table 1), and RE as a special case (Eq. 11).

Coarse-to-fine: coarse maps -> MSAC + P3P -> coarse GNC -> local fine maps in a window around each point's
reprojection under the coarse pose -> fine GNC. No high-resolution dense map is ever built.

Local fine maps (windows, coarse-mass scaling, truncation, their default norm): see ``nre.maps.local``. Every
stage's result carries its run time, map memory and the Eq. 6 cost (coarse
maps) at the estimate and at the ground-truth pose when known, so an optimiser failure (truth cheaper than the
estimate) is told apart from an objective failure.

Eq. 11: one-hot maps at each argmax (``Problem.matches.xy``, image pixels) turn Eq. 9 into a sum of negative
Gaussians of the reprojection residual; sigma is in image pixels and so is everything ``re_gaussian`` does with it
(terms laid out in pixels; its MSAC ranks hypotheses with Eq. 11 at sigma, not with one cell of the dense grid):
a test checks that the result does not depend on the dense grid's stride.
"""

from __future__ import annotations

import time

import numpy as np

from nre.estimators.problem import Problem, Result
from nre.geometry import Pose, img_to_map, map_to_img
from nre.maps.dense import SparseLossMaps, dense_maps, log_omega, sparse_argmin, sparse_entropy, sparse_lookup
from nre.maps.local import DescriptorFineSource, build_local_maps
from nre.seeding import rng_for
from nre.solver.gnc import DEFAULT_SIGMAS, Terms, refine
from nre.solver.msac import (
    DenseTableScorer,
    GaussianScorer,
    OneHotScorer,
    best_hypothesis,
    draw_hypotheses,
    msac,
    sampling_weights,
)
from nre.solver.options import NreOptions


# ----------------------------------------------------------------------------------------------- helpers
def map_minima(maps: SparseLossMaps) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) image pixels of each map's argmin cell and (N,) its loss (NaN / trunc for empty maps)."""
    cells, mins = sparse_argmin(maps)
    return map_to_img(cells, maps.scale), mins


def map_entropy(maps: SparseLossMaps) -> np.ndarray:
    """Entropy of each map from its sparse form (see nre.maps.dense.sparse_entropy)."""
    return sparse_entropy(maps)


def eq6_cost(scorer, pose: Pose | None) -> float:
    if pose is None:
        return float("nan")
    return float(scorer(pose.R[None], pose.t[None])[0])


def _pose_diag(scorer, pose, gt):
    d = {"cost": eq6_cost(scorer, pose)}
    if gt is not None:
        d["cost_at_truth"] = eq6_cost(scorer, gt)
    return d


def _fine_diag(fine: SparseLossMaps, pose: Pose, problem: Problem) -> dict:
    """Eq. 6 on the local fine maps at the fine estimate and at the truth (when known)."""

    def cost(p):
        uv, valid = problem.camera.project(problem.points3d, p)
        return float(sparse_lookup(fine, img_to_map(uv, fine.scale), valid).sum())

    d = {"fine_cost": cost(pose)}
    if problem.gt_pose is not None:
        d["fine_cost_at_truth"] = cost(problem.gt_pose)
    return d


def _result(stage, pose, t0, diag, failure=None):
    if pose is None:
        return Result.failure(failure or "no pose", time.perf_counter() - t0, stage=stage, diagnostics=diag)
    return Result(pose, runtime_s=time.perf_counter() - t0, stage=stage, diagnostics=diag)


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
    return msac(problem.points3d, xy, problem.camera, scorer, w, rng, opts.msac_iterations, opts.p3p_solver), scorer


def nre_coarse_to_fine(problem: Problem, opts: NreOptions | None = None) -> list[Result]:
    """Three results: stages p3p (MSAC), coarse_gnc and fine_gnc; a failed stage fails the later ones."""
    opts = opts or NreOptions()
    t0 = time.perf_counter()
    stages = ("p3p", "coarse_gnc", "fine_gnc")
    if problem.coarse_maps is None:
        return [Result.failure("no coarse maps", stage=s) for s in stages]
    maps = problem.coarse_maps
    ent = problem.coarse_stats.entropy if problem.coarse_stats is not None else None
    m, scorer = run_msac_on_maps(problem, maps, ent, opts, "nre_c2f")
    base = {"map_bytes_coarse": int(maps.nbytes), "msac_hypotheses": m.n_hypotheses, **m.timings}
    out = [_result("p3p", m.pose, t0, {**base, **_pose_diag(scorer, m.pose, problem.gt_pose)}, m.failure_reason)]
    if m.pose is None:
        return out + [Result.failure(m.failure_reason, stage=s) for s in stages[1:]]
    t1 = time.perf_counter()
    g = refine(
        m.pose, problem.points3d, problem.camera, Terms.from_sparse(maps), opts.coarse_sigmas, opts.max_iterations
    )
    d1 = {
        "iterations": g.iterations,
        "accepted": g.accepted,
        "stop": g.stop_reason,
        "stage_s": time.perf_counter() - t1,
    }
    out.append(_result("coarse_gnc", g.pose, t0, {**base, **d1, **_pose_diag(scorer, g.pose, problem.gt_pose)}))
    out.append(fine_stage(problem, g.pose, maps, opts, t0, base, scorer))
    return out


def fine_stage(
    problem: Problem,
    coarse_pose: Pose,
    maps: SparseLossMaps,
    opts: NreOptions,
    t0: float | None = None,
    base: dict | None = None,
    scorer=None,
) -> Result:
    """The fine stage of coarse-to-fine NRE from a coarse pose: local fine maps in windows around each point's
    reprojection (scaled by the coarse ``maps``' mass, see ``nre.maps.local``), then fine GNC. ``t0``: the clock
    start of the estimator (its run time includes the coarse stages); ``scorer``: Eq. 6 on the coarse maps."""
    t0 = time.perf_counter() if t0 is None else t0
    source = problem.extras.get("fine_source")
    if source is None and problem.features is not None:
        source = DescriptorFineSource(problem.features, opts.fine_level)
    if source is None:
        return Result.failure("no fine descriptors (features access missing)", stage="fine_gnc")
    t2 = time.perf_counter()
    fine = build_local_maps(
        source,
        maps,
        coarse_pose,
        problem.points3d,
        problem.camera,
        opts.window,
        opts.margin_px,
        opts.local_norm,
        opts.mass_region,
    )
    t3 = time.perf_counter()
    f = refine(
        coarse_pose, problem.points3d, problem.camera, Terms.from_sparse(fine), opts.fine_sigmas, opts.max_iterations
    )
    d2 = {
        "iterations": f.iterations,
        "accepted": f.accepted,
        "stop": f.stop_reason,
        "local_maps_s": t3 - t2,
        "stage_s": time.perf_counter() - t2,
        "map_bytes_fine": int(fine.nbytes),
        **_fine_diag(fine, f.pose, problem),
        "fine_nnz": int(fine.nnz),
    }
    if scorer is not None:
        d2.update(_pose_diag(scorer, f.pose, problem.gt_pose))
    return _result("fine_gnc", f.pose, t0, {**(base or {}), **d2})


def nre_single_level(problem: Problem, opts: NreOptions | None = None, level: str | None = None) -> Result:
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
        return Result.failure("no dense maps and no features access")
    t1 = time.perf_counter()
    m, scorer = run_msac_on_maps(problem, maps, None, opts, "nre_single", table_dtype=np.float16)
    if m.pose is None:
        return Result.failure(m.failure_reason, time.perf_counter() - t0)
    t2 = time.perf_counter()
    g = refine(m.pose, problem.points3d, problem.camera, Terms.from_sparse(maps), opts.fine_sigmas, opts.max_iterations)
    diag = {
        "maps_s": t1 - t0,
        "msac_s": t2 - t1,
        "gnc_s": time.perf_counter() - t2,
        "iterations": g.iterations,
        "accepted": g.accepted,
        "stop": g.stop_reason,
        "map_bytes": int(maps.nbytes),
        "table_bytes": int(scorer.nbytes),
        **_pose_diag(scorer, g.pose, problem.gt_pose),
    }
    return Result(g.pose, runtime_s=time.perf_counter() - t0, diagnostics=diag)


RE_INITS = ("gaussian", "one_hot")


def _single(scorer):
    """A one-sigma GaussianScorer as a (K,) cost function (the diagnostics' cost at the estimate and the truth)."""
    return lambda R, t: scorer(R, t)[:, 0]


RE_SCHEDULES = ("single", "scaled")


def re_gaussian(
    problem: Problem,
    sigmas_px: list[float],
    opts: NreOptions | None = None,
    init: str = "gaussian",
    schedule: str = "single",
) -> list[Result]:
    """Eq. 11: NRE on one-hot maps at each argmax = RE with a Gaussian robust loss of width sigma (pixels).

    One set of MSAC hypotheses (P3P on triplets of matches) is shared by every sigma of the sweep. ``init``:
    - ``gaussian`` (default): each sigma ranks them by Eq. 11 itself at that sigma (``GaussianScorer``, pixels);
    - ``one_hot`` (the paper's pipeline): Eq. 6 on the one-hot maps, one shared winner. Its kernel is one cell of the
      dense grid whatever sigma, so on real-resolution images near-correct P3P hypotheses score like random ones.
    ``schedule``: ``single`` (default) minimises Eq. 11 at sigma (IRLS with GNC's step control); ``scaled`` (the
    paper's) runs GNC over NRE's schedule shape (2, 1, 0.9, ..., 0.6) scaled to end at sigma, i.e. from 3.3 sigma."""
    opts = opts or NreOptions()
    if init not in RE_INITS:
        raise ValueError(f"re_gauss: init must be one of {RE_INITS}, got {init!r}")
    if schedule not in RE_SCHEDULES:
        raise ValueError(f"re_gauss: schedule must be one of {RE_SCHEDULES}, got {schedule!r}")
    t0 = time.perf_counter()
    if problem.matches is None:
        return [Result.failure("no matches") for _ in sigmas_px]
    xy = problem.matches.xy
    dscale = np.asarray(problem.extras.get("dense_scale", (1.0, 1.0)), dtype=float)
    shape = problem.extras.get("dense_shape", (problem.camera.height, problem.camera.width))
    trunc = log_omega(*shape)
    score = problem.matches.score if problem.matches.score is not None else np.ones(len(xy))
    ent = problem.matches.entropy if problem.matches.entropy is not None else np.ones(len(xy))
    w = sampling_weights(-np.log(np.maximum(score, 1e-30)), ent, np.isfinite(xy).all(1), opts.best_fraction)
    rng = rng_for(problem.seed, "re_gauss", "msac")
    hyp = draw_hypotheses(problem.points3d, xy, problem.camera, w, rng, opts.msac_iterations, opts.p3p_solver)
    if init == "one_hot":
        one_hot = OneHotScorer(xy, problem.points3d, problem.camera, float(np.mean(1.0 / dscale)), trunc)
        start = best_hypothesis(hyp, None if hyp.failure_reason else one_hot(hyp.R, hyp.t), t0)
        starts, scorers = [start] * len(sigmas_px), [one_hot] * len(sigmas_px)
    else:
        costs = (
            None
            if hyp.failure_reason
            else GaussianScorer(xy, problem.points3d, problem.camera, sigmas_px, trunc)(hyp.R, hyp.t)
        )
        starts = [best_hypothesis(hyp, None if costs is None else costs[:, j], t0) for j in range(len(sigmas_px))]
        scorers = [_single(GaussianScorer(xy, problem.points3d, problem.camera, [s], trunc)) for s in sigmas_px]
    t_init = time.perf_counter() - t0
    terms = Terms(np.arange(len(xy)), xy.astype(np.float64), np.full(len(xy), trunc), len(xy), np.ones(2))
    out = []
    for s, m, scorer in zip(sigmas_px, starts, scorers):
        if m.pose is None:
            out.append(Result.failure(m.failure_reason, t_init))
            continue
        t1 = time.perf_counter()
        if schedule == "scaled":
            sched = tuple(float(s) * v / DEFAULT_SIGMAS[-1] for v in DEFAULT_SIGMAS)
        else:
            sched = (float(s),)
        g = refine(m.pose, problem.points3d, problem.camera, terms, sched, opts.max_iterations)
        diag = {
            "msac_s": t_init,
            "gnc_s": time.perf_counter() - t1,
            "iterations": g.iterations,
            "accepted": g.accepted,
            "stop": g.stop_reason,
            "init": init,
            "schedule": schedule,
            **_pose_diag(scorer, g.pose, problem.gt_pose),
        }
        out.append(Result(g.pose, runtime_s=t_init + time.perf_counter() - t1, diagnostics=diag))
    return out
