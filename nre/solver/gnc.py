"""Refinement (Sec. 5.2, Eq. 9): graduated non-convexity over a decreasing sigma, IRLS / damped Gauss-Newton.

For a fixed sigma the objective is
    Phi(R, t) = - sum_n sum_{q in Gamma_n} w_nq k_sigma(||q - w(u_n; R, t)||),   w_nq = ln|Omega-ring| - L_n(q) > 0,
with k_sigma(d) = exp(-d^2 / (2 sigma^2)) (the Gaussian's constant does not change the minimiser at fixed sigma) and
q, w in map cells. IRLS: with omega_nq = w_nq k_sigma(d_nq) / sigma^2 fixed, the Gauss-Newton step minimises
sum omega_nq ||q - w_n||^2 / 2; per point this only needs W_n = sum_q omega_nq and M_n = sum_q omega_nq q, so one
iteration costs one pass over the terms plus a 6x6 solve.

Step control (as in the reference implementation): a step is accepted when the total cost drops; then the modified
gain ratio rho = (Phi_old - Phi_new) / (sum of per-term decreases + sum of per-term increases) decides (a term is one
(point, cell) pair of Eq. 9): rho <= 0.1 or a relative drop (Phi_old - Phi_new) / |Phi_old| below ``min_drop`` moves
to the next sigma, otherwise the damping is halved; a rejected step doubles the damping. GNC stops when the damping
reaches its upper bound, when the schedule ends, or at the iteration cap. One addition: a step below ``min_step``
(1e-10 in every coordinate) means the level has converged (the cost cannot drop any more, in floating point) and
moves to the next sigma, instead of ~50 rejected steps doubling the damping up to its bound. Only terms within
``radius_sigmas`` sigma of a point's reprojection at the start of a sigma level are kept for that level
(exp(-radius^2 / 2) = 3e-4 of a term's weight beyond 4 sigma).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nre.geometry import Camera, Pose
from nre.solver.msac import _ragged
from nre.solver.options import DEFAULT_SIGMAS


@dataclass
class Terms:
    """The non-truncated cells of N maps: point index, cell position (map cells) and weight trunc - L."""

    point: np.ndarray  # (T,) int
    q: np.ndarray  # (T, 2) float
    w: np.ndarray  # (T,) float
    n_points: int
    scale: np.ndarray  # (sx, sy): image -> map

    @classmethod
    def from_sparse(cls, maps) -> Terms:
        return cls(
            maps.point_index(),
            maps.cell_xy().astype(np.float64),
            (maps.trunc - maps.values).astype(np.float64),
            maps.n,
            maps.scale,
        )

    def subset(self, mask: np.ndarray) -> Terms:
        return Terms(self.point[mask], self.q[mask], self.w[mask], self.n_points, self.scale)


@dataclass
class GncResult:
    pose: Pose
    iterations: int
    accepted: int
    runtime_s: float
    stop_reason: str
    costs: list = field(default_factory=list)  # final cost per sigma level


def term_costs(terms: Terms, pm: np.ndarray, sigma: float) -> np.ndarray:
    """Per-term costs -w_nq k_sigma(||q - p_n||) (T,) at map positions pm (N, 2) of the points."""
    d = terms.q - pm[terms.point]
    return -terms.w * np.exp(-(d[:, 0] ** 2 + d[:, 1] ** 2) / (2 * sigma * sigma))


def normal_equations(terms: Terms, pm: np.ndarray, valid: np.ndarray, Jm: np.ndarray, sigma: float):
    """IRLS normal equations of Eq. 9 at map positions pm (N, 2) with Jacobians Jm (N, 2, 6) (map cells per
    Pose.perturb delta): H = sum_n W_n J_n^T J_n and g = sum_n J_n^T sum_q omega_nq (q - p_n) = -grad Phi, with
    omega_nq = w_nq k_sigma(d_nq) / sigma^2. Returns H (6, 6), g (6,) and the mask of points with terms."""
    d = terms.q - pm[terms.point]
    om = terms.w * np.exp(-(d[:, 0] ** 2 + d[:, 1] ** 2) / (2 * sigma * sigma)) / (sigma * sigma)
    Wn = np.bincount(terms.point, weights=om, minlength=terms.n_points)
    Mn = np.stack([np.bincount(terms.point, weights=om * terms.q[:, k], minlength=terms.n_points) for k in (0, 1)], 1)
    use = valid & (Wn > 0)
    J = Jm[use]
    r = Mn[use] - Wn[use, None] * pm[use]  # sum_q omega (q - p)
    Jf = J.reshape(-1, 6)  # rows (n, a)
    H = Jf.T @ (Jf * np.repeat(Wn[use], 2)[:, None])
    g = Jf.T @ r.reshape(-1)
    return H, g, use


def _sorted(a: np.ndarray) -> bool:
    return bool(len(a) < 2 or np.all(a[1:] >= a[:-1]))


def reproject(pose: Pose, points3d: np.ndarray, camera: Camera, scale: np.ndarray):
    """Map positions (N, 2), in-front mask and Jacobians (N, 2, 6) in map cells; behind the camera -> far away."""
    uv, valid, J = camera.project_with_jacobian(points3d, pose)
    pm = (uv + 0.5) * scale - 0.5
    Jm = J * scale[None, :, None]
    pm[~valid] = 1e6  # behind the camera: far from every cell
    return pm, valid, Jm


def refine(
    pose: Pose,
    points3d: np.ndarray,
    camera: Camera,
    terms: Terms,
    sigmas=DEFAULT_SIGMAS,
    max_iterations: int = 100,
    damping_init: float = 1e-8,
    damping_bounds: tuple[float, float] = (1e-8, 1e7),
    rho_min: float = 0.1,
    min_drop: float = 1e-5,
    radius_sigmas: float = 4.0,
    min_step: float = 1e-10,
) -> GncResult:
    """GNC refinement of ``pose`` on ``terms`` (see module docstring)."""
    t0 = time.perf_counter()
    scale = np.asarray(terms.scale, dtype=float)
    lam = damping_init
    it = acc = 0
    stop = "schedule end"
    costs = []

    # Terms kept at a level: those within r = radius_sigmas * sigma + 2 cells of their point's reprojection. Each
    # level's candidates come from the previous level's kept terms for the points that moved by at most
    # r_prev - r since that filter (by the triangle inequality none of their terms within r can be missing), and
    # from all their terms for the others: the same kept set, in the same order, as a pass over every term.
    offsets = np.searchsorted(terms.point, np.arange(terms.n_points + 1)) if _sorted(terms.point) else None
    kept = kept_pm = None
    r_prev = np.inf
    for sigma in sigmas:
        pm, valid, Jm = reproject(pose, points3d, camera, scale)
        r = radius_sigmas * sigma + 2.0
        if kept is None or offsets is None:
            d = terms.q - pm[terms.point]
            kept = np.flatnonzero((d[:, 0] ** 2 + d[:, 1] ** 2) < r**2)
        else:
            moved = np.hypot(*(pm - kept_pm).T)
            redo = ~(moved <= r_prev - r)
            cand = kept
            if redo.any():
                pts = np.flatnonzero(redo)
                full = _ragged(offsets[pts], offsets[pts + 1] - offsets[pts])
                cand = np.sort(np.concatenate([kept[~redo[terms.point[kept]]], full]))
            d = terms.q[cand] - pm[terms.point[cand]]
            kept = cand[(d[:, 0] ** 2 + d[:, 1] ** 2) < r**2]
        kept_pm, r_prev = pm, r
        T = terms.subset(kept)
        phi_terms = term_costs(T, pm, sigma)
        phi = phi_terms.sum()
        while it < max_iterations:
            it += 1
            Hm, g, use = normal_equations(T, pm, valid, Jm, sigma)
            if not use.any():
                stop = "no term near any reprojection"
                break
            A = Hm + lam * np.diag(np.maximum(np.diag(Hm), 1e-12))
            try:
                delta = np.linalg.solve(A, g)
            except np.linalg.LinAlgError:
                stop = "singular system"
                break
            if not np.all(np.abs(delta) < np.inf):
                stop = "non-finite step"
                break
            if np.abs(delta).max() < min_step:  # converged at this sigma: its optimum cannot move any more
                break
            cand = pose.perturb(delta)
            pm_c, valid_c, Jm_c = reproject(cand, points3d, camera, scale)
            phi_c_terms = term_costs(T, pm_c, sigma)
            phi_c = phi_c_terms.sum()
            if phi_c < phi:
                acc += 1
                # modified gain ratio: the drop over the sum of per-term decreases and increases
                rho = (phi - phi_c) / max(np.abs(phi_terms - phi_c_terms).sum(), 1e-300)
                drop = (phi - phi_c) / max(abs(phi), 1e-300)
                pose, pm, valid, Jm, phi, phi_terms = cand, pm_c, valid_c, Jm_c, phi_c, phi_c_terms
                if rho <= rho_min or drop < min_drop:
                    break
                lam = max(lam / 2, damping_bounds[0])
            else:
                lam *= 2
                if lam >= damping_bounds[1]:
                    stop = "damping upper bound"
                    break
        costs.append(float(phi))
        if stop != "schedule end" or it >= max_iterations:
            if it >= max_iterations and stop == "schedule end":
                stop = "iteration cap"
            break
    return GncResult(pose, it, acc, time.perf_counter() - t0, stop, costs)
