"""Featuremetric pose refinement (FPR, Eq. 12 of the paper): minimise sum_n psi(||H_Q(w(u_n; R, t)) - h_n||^2) over
the pose, H_Q bilinearly interpolated, by damped Gauss-Newton (IRLS) on the coarse level and then the fine level,
like PixLoc, from an RE initial pose: poselib LO-RANSAC on the argmax matches (threshold ``init_threshold`` px),
shared by every setting of the sweep. The start pose is reported in the diagnostics.

Robust losses on the squared residual norm s, with scale c: ``cauchy`` c^2 ln(1 + s / c^2), ``geman_mcclure``
s c^2 / (s + c^2), ``huber`` s if s <= c^2 else 2 c sqrt(s) - c^2. Descriptors are the backend's raw (unit)
descriptors, before the softmax temperature.

Tested (tests/test_fpr.py): FPR reaches the true pose when the source descriptors are the target's own at the true
reprojections (the minimum of Eq. 12 is then the truth); with dense SIFT of another view it stops where Eq. 12 itself
is minimal, near but not at the truth (dense SIFT is not viewpoint invariant; docs/results-log.md).
"""

from __future__ import annotations

import time

import numpy as np

from nre.estimators.base import Estimator
from nre.estimators.problem import Result
from nre.geometry import Camera, Pose, R_to_quat_wxyz, img_to_map

LOSSES = ("cauchy", "geman_mcclure", "huber")


def robust(loss: str, s: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """(rho(s), rho'(s)) for squared residual norms s."""
    c2 = c * c
    if loss == "cauchy":
        return c2 * np.log1p(s / c2), 1.0 / (1.0 + s / c2)
    if loss == "geman_mcclure":
        return s * c2 / (s + c2), c2 * c2 / (s + c2) ** 2
    if loss == "huber":
        r = np.sqrt(np.maximum(s, 1e-300))
        inl = s <= c2
        return np.where(inl, s, 2 * c * r - c2), np.where(inl, 1.0, c / r)
    raise ValueError(f"unknown robust loss {loss!r}; choose from {LOSSES}")


def bilinear_with_gradient(fmap: np.ndarray, xy: np.ndarray, channels_last: bool = False):
    """Bilinear samples (N, D) of a (D, h, w) map (``(h, w, D)`` with ``channels_last``, no conversion) at map
    positions xy (N, 2), their x/y gradients (N, D, 2), and a mask of positions inside [0, w-1] x [0, h-1]."""
    val, gx, gy, inside = _bilinear_hwd(fmap if channels_last else to_hwd(fmap), xy)
    return val, np.stack([gx, gy], -1), inside


def _bilinear_hwd(fmap: np.ndarray, xy: np.ndarray):
    """``bilinear_with_gradient`` on an (h, w, D) map, gradients as two (N, D) arrays (gx, gy): the hot path of
    FPR. The corners are gathered by flat row index from the (h w, D) view (one ``take`` per corner): the same bits
    as 2-D fancy indexing, faster (scripts/bench_fpr.py, docs/results-log.md)."""
    h, w, D = fmap.shape
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1) & np.isfinite(xy).all(1)
    x = np.clip(np.nan_to_num(xy[:, 0]), 0, w - 1 - 1e-6)
    y = np.clip(np.nan_to_num(xy[:, 1]), 0, h - 1 - 1e-6)
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    dx = (x0 < w - 1).astype(int)  # x1 = min(x0 + 1, w - 1)
    dy = (y0 < h - 1).astype(int) * w
    a = (x - x0)[:, None].astype(fmap.dtype)  # the map's precision throughout (float32: half the memory traffic)
    b = (y - y0)[:, None].astype(fmap.dtype)
    flat = fmap.reshape(h * w, D)
    i00 = y0 * w + x0
    f00, f01 = flat.take(i00, axis=0), flat.take(i00 + dx, axis=0)
    f10, f11 = flat.take(i00 + dy, axis=0), flat.take(i00 + dy + dx, axis=0)
    dx0, d10 = f01 - f00, f10 - f00
    ddx = f11 - f10 - dx0
    gx = dx0 + b * ddx
    gy = d10 + a * ddx
    val = f00 + b * d10 + a * gx  # = f00 + a dx0 + b d10 + a b ddx
    return val, gx, gy, inside


def to_hwd(fmap: np.ndarray) -> np.ndarray:
    """A (D, h, w) map as a contiguous (h, w, D) array, same dtype: the layout the bilinear gathers read."""
    return np.ascontiguousarray(np.moveaxis(fmap, 0, -1))


def refine_featuremetric(
    pose: Pose,
    X: np.ndarray,
    camera: Camera,
    src: np.ndarray,
    fmap: np.ndarray,
    scale,
    loss: str,
    c: float,
    iterations: int = 50,
    lam: float = 1e-3,
    ftol: float = 1e-6,
    hwd: bool = False,
):
    """Levenberg-Marquardt / IRLS on one level. Returns (pose, iterations, final cost). Stops at ``iterations``, when
    an accepted step lowers the cost by less than ``ftol`` of it (Ceres' function tolerance), when the step is below
    1e-7, or when the damping exceeds 1e6. ``fmap`` is (D, h, w), or already (h, w, D) from
    ``to_hwd`` with ``hwd`` (a sweep converts it once instead of once per setting)."""
    scale = np.asarray(scale, dtype=float)
    fmap_hwd = fmap if hwd else to_hwd(fmap)

    def evaluate(p):
        uv, valid, J = camera.project_with_jacobian(X, p)
        xy = img_to_map(uv, scale)  # the one image <-> map transform
        val, gx, gy, inside = _bilinear_hwd(fmap_hwd, xy)
        ok = valid & inside
        r = val - src
        s = np.einsum("nd,nd->n", r, r).astype(np.float64)
        rho, w = robust(loss, s, c)
        cost = float(np.where(ok, rho, rho_out).sum())
        return cost, r, w, (gx, gy), J * scale[None, :, None], ok

    # a point leaving the map costs as much as the loss at a large residual (keeps costs comparable)
    rho_out = robust(loss, np.array([4.0]), c)[0][0]

    cost, r, w, grad, Jm, ok = evaluate(pose)
    it = 0
    for it in range(1, iterations + 1):  # noqa: B007
        if ok.sum() < 6:
            break
        # Gauss-Newton with IRLS weights through the 2D map gradients (gx, gy) of each point, never forming the
        # (M, D, 6) residual Jacobian: H = sum w J^T (G^T G) J, g = sum w J^T (G^T r), G^T G and G^T r by
        # element-wise products over D, then (M, 6) BLAS products
        gx, gy, ro, wo = grad[0][ok], grad[1][ok], r[ok], w[ok]
        J0, J1 = Jm[ok, 0, :], Jm[ok, 1, :]  # (M, 6): d map x / d delta, d map y / d delta
        sxx = np.einsum("nd,nd->n", gx, gx).astype(np.float64) * wo
        sxy = np.einsum("nd,nd->n", gx, gy).astype(np.float64) * wo
        syy = np.einsum("nd,nd->n", gy, gy).astype(np.float64) * wo
        H = J0.T @ (J0 * sxx[:, None]) + J1.T @ (J1 * syy[:, None])
        Hxy = J0.T @ (J1 * sxy[:, None])
        H = H + Hxy + Hxy.T
        gxr = np.einsum("nd,nd->n", gx, ro).astype(np.float64)
        gyr = np.einsum("nd,nd->n", gy, ro).astype(np.float64)
        g = J0.T @ (gxr * wo) + J1.T @ (gyr * wo)
        try:
            delta = -np.linalg.solve(H + lam * np.diag(np.maximum(np.diag(H), 1e-12)), g)
        except np.linalg.LinAlgError:
            break
        cand = pose.perturb(delta)
        c_cost, c_r, c_w, c_grad, c_Jm, c_ok = evaluate(cand)
        if c_cost < cost:
            step_small = np.linalg.norm(delta) < 1e-7 or cost - c_cost <= ftol * abs(cost)
            pose, cost, r, w, grad, Jm, ok = cand, c_cost, c_r, c_w, c_grad, c_Jm, c_ok
            lam = max(lam / 10, 1e-9)
            if step_small:
                break
        else:
            lam *= 10
            if lam > 1e6:
                break
    return pose, it, cost


class FeaturemetricRefinement(Estimator):
    """FPR (Eq. 12): featuremetric refinement, coarse then fine, from an LO-RANSAC start."""

    name = "fpr"
    label = "FPR (Eq. 12)"
    grid = {"loss": list(LOSSES), "scale": [0.1, 0.2, 0.4, 0.8]}
    default_params = {"loss": "cauchy", "scale": 0.2}
    units = {"scale": "descriptor distance"}
    defaults = {"levels": ["coarse", "fine"], "iterations": 50, "ftol": 1e-6, "init_threshold": 8.0}
    needs = frozenset({"matches", "features"})

    def estimate_many(self, problem, settings):
        from nre.estimators.registry import get

        if problem.features is None:
            return [[Result.failure("FPR needs descriptors (features access)")] for _ in settings]
        t0 = time.perf_counter()
        [[start]] = get("lo_ransac_poselib")().run(problem, [{"threshold": self.options["init_threshold"]}])
        if not start.success:
            return [[Result.failure(f"initialisation failed: {start.failure_reason}")] for _ in settings]
        feats = problem.features
        levels = []
        for lv in self.options["levels"]:
            raw = getattr(feats, "raw_source_descriptors", None)
            src = raw(lv) if raw is not None else feats.source_descriptors(lv)
            levels.append(
                (
                    lv,
                    np.asarray(src, dtype=np.float32),  # torch tensors (CPU) or arrays alike
                    to_hwd(np.asarray(feats.target_map(lv), dtype=np.float32)),  # once for every setting of the sweep
                    feats.target_scale(lv),
                )
            )
        t_setup = time.perf_counter() - t0
        out = []
        for s in settings:
            t1 = time.perf_counter()
            pose, iters, costs = start.pose, {}, {}
            for lv, src, fmap, scale in levels:
                pose, iters[lv], costs[lv] = refine_featuremetric(
                    pose,
                    problem.points3d,
                    problem.camera,
                    src,
                    fmap,
                    scale,
                    s["loss"],
                    float(s["scale"]),
                    self.options["iterations"],
                    ftol=float(self.options["ftol"]),
                    hwd=True,
                )
            diag = {
                "start_R": start.pose.R.tolist(),
                "start_t": start.pose.t.tolist(),
                "start_qvec": R_to_quat_wxyz(start.pose.R).tolist(),
                "start_inliers": start.inliers,
                "iterations": iters,
                "final_cost": costs,
                "setup_s": t_setup,
            }
            out.append(
                [Result(pose, runtime_s=t_setup + time.perf_counter() - t1, inliers=start.inliers, diagnostics=diag)]
            )
        return out
