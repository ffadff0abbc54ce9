"""Refinement (Sec. 5.2, Eq. 9): graduated non-convexity over a decreasing sigma, IRLS / damped Gauss-Newton.

For a fixed sigma the objective is
    Phi(R, t) = - sum_n sum_{q in Gamma_n} w_nq k_sigma(||q - w(u_n; R, t)||),   w_nq = ln|Omega-ring| - L_n(q) > 0,
with k_sigma(d) = exp(-d^2 / (2 sigma^2)) (the Gaussian's constant does not change the minimiser at fixed sigma) and
q, w in map cells. IRLS: with omega_nq = w_nq k_sigma(d_nq) / sigma^2 fixed, the Gauss-Newton step minimises
sum omega_nq ||q - w_n||^2 / 2; per point this only needs W_n = sum_q omega_nq and M_n = sum_q omega_nq q, so one
iteration costs one pass over the terms plus a 6x6 solve.

Step control (as in the reference implementation): a step is accepted when the total cost drops; then the modified
gain ratio rho = (Phi_old - Phi_new) / (sum of per-point decreases + sum of per-point increases) decides: rho <= 0.1
or a relative drop below ``min_drop`` moves to the next sigma, otherwise the damping is halved; a rejected step
doubles the damping. GNC stops when the damping reaches its upper bound, when the schedule ends, or at the
iteration cap. Only terms within ``radius_sigmas`` sigma of a point's reprojection at the start of a sigma level are
kept for that level (exp(-radius^2 / 2) = 3e-4 of a term's weight beyond 4 sigma).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nre.geometry import Camera, Pose

DEFAULT_SIGMAS = (2.0, 1.0, 0.9, 0.8, 0.7, 0.6)


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


def _per_point_cost(terms: Terms, pm: np.ndarray, sigma: float) -> np.ndarray:
    d = terms.q - pm[terms.point]
    k = np.exp(-(d[:, 0] ** 2 + d[:, 1] ** 2) / (2 * sigma * sigma))
    return -np.bincount(terms.point, weights=terms.w * k, minlength=terms.n_points)


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
) -> GncResult:
    """GNC refinement of ``pose`` on ``terms`` (see module docstring)."""
    t0 = time.perf_counter()
    scale = np.asarray(terms.scale, dtype=float)
    lam = damping_init
    it = acc = 0
    stop = "schedule end"
    costs = []

    def reproject(p: Pose):
        uv, valid, J = camera.project_with_jacobian(points3d, p)
        pm = (uv + 0.5) * scale - 0.5
        Jm = J * scale[None, :, None]
        pm[~valid] = 1e6  # behind the camera: far from every cell
        return pm, valid, Jm

    for sigma in sigmas:
        pm, valid, Jm = reproject(pose)
        d = terms.q - pm[terms.point]
        near = (d[:, 0] ** 2 + d[:, 1] ** 2) < (radius_sigmas * sigma + 2.0) ** 2
        T = terms.subset(near)
        phi_pts = _per_point_cost(T, pm, sigma)
        phi = phi_pts.sum()
        while it < max_iterations:
            it += 1
            d = T.q - pm[T.point]
            om = T.w * np.exp(-(d[:, 0] ** 2 + d[:, 1] ** 2) / (2 * sigma * sigma)) / (sigma * sigma)
            Wn = np.bincount(T.point, weights=om, minlength=T.n_points)
            Mn = np.stack([np.bincount(T.point, weights=om * T.q[:, k], minlength=T.n_points) for k in (0, 1)], 1)
            use = valid & (Wn > 0)
            if not use.any():
                stop = "no term near any reprojection"
                break
            J = Jm[use]
            r = Mn[use] - Wn[use, None] * pm[use]  # sum_q omega (q - p)
            Hm = np.einsum("n,nai,naj->ij", Wn[use], J, J)
            g = np.einsum("nai,na->i", J, r)
            A = Hm + lam * np.diag(np.maximum(np.diag(Hm), 1e-12))
            try:
                delta = np.linalg.solve(A, g)
            except np.linalg.LinAlgError:
                stop = "singular system"
                break
            cand = pose.perturb(delta)
            pm_c, valid_c, Jm_c = reproject(cand)
            phi_c_pts = _per_point_cost(T, pm_c, sigma)
            phi_c = phi_c_pts.sum()
            if phi_c < phi:
                acc += 1
                diff = phi_pts - phi_c_pts
                rho = (phi - phi_c) / max(np.abs(diff).sum(), 1e-300)
                drop = (phi - phi_c) / max(abs(phi), 1e-300)
                pose, pm, valid, Jm, phi, phi_pts = cand, pm_c, valid_c, Jm_c, phi_c, phi_c_pts
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
