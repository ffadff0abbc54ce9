"""The Neural Reprojection Error in torch (Eq. 2-5), differentiable w.r.t. the pose and the descriptors.

NRE_n(R, t, s_n) = s_n * C~_n(w(u_n; R, t)) + (1 - s_n) ln|Omega-ring|, with C~_n = -ln C_n bilinearly interpolated
on the map cells. For s_n = 1 (and s_n = 0) it is exactly the cross-entropy -sum_q r(q) ln m(q) between the bilinear
reprojection pmf r (Eq. 3) and the matching pmf m = s C_n + (1 - s) / |Omega-ring| (Eq. 2). A reprojection corner
outside the map (or a point behind the camera) puts its mass on "out", where C_n(out) = 0: the plain NRE (s = 1) is
then +inf; the robust NRE (Eq. 5, min over s, applied per cell) gives min(ln|Omega-ring|, C~).

``nre_cross_entropy`` is Eq. 10's per-point loss for feature learning (s_n = 1, ground-truth reprojections).
"""

from __future__ import annotations

import torch


def so3_exp_torch(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues for a (3,) tensor, differentiable (also at 0 through the series)."""
    theta2 = (w * w).sum()
    K = torch.zeros(3, 3, dtype=w.dtype)
    K = K.index_put(
        (torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1, 2, 0, 2, 0, 1])),
        torch.stack([-w[2], w[1], w[2], -w[0], -w[1], w[0]]),
    )
    if theta2 < 1e-12:
        a = 1 - theta2 / 6
        b = 0.5 - theta2 / 24
    else:
        theta = torch.sqrt(theta2)
        a = torch.sin(theta) / theta
        b = (1 - torch.cos(theta)) / theta2
    return torch.eye(3, dtype=w.dtype) + a * K + b * (K @ K)


def project_torch(X: torch.Tensor, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor):
    """Pinhole projection of world points (N, 3): pixels (N, 2) and in-front mask."""
    Xc = X @ R.T + t
    z = Xc[:, 2]
    valid = z > 1e-6
    zs = torch.where(valid, z, torch.ones_like(z))
    u = K[0, 0] * Xc[:, 0] / zs + K[0, 2]
    v = K[1, 1] * Xc[:, 1] / zs + K[1, 2]
    return torch.stack([u, v], -1), valid


def bilinear_weights(xy: torch.Tensor, h: int, w: int):
    """Corner cells (N, 4) flat indices, weights (N, 4), inside mask (N, 4) of map positions (N, 2)."""
    x0 = torch.floor(xy[:, 0])
    y0 = torch.floor(xy[:, 1])
    a = xy[:, 0] - x0
    b = xy[:, 1] - y0
    x0 = x0.long()
    y0 = y0.long()
    cx = torch.stack([x0, x0 + 1, x0, x0 + 1], -1)
    cy = torch.stack([y0, y0, y0 + 1, y0 + 1], -1)
    wts = torch.stack([(1 - a) * (1 - b), a * (1 - b), (1 - a) * b, a * b], -1)
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    flat = torch.where(inside, cy * w + cx, torch.zeros_like(cx))
    return flat, wts, inside


def nre_cross_entropy(
    log_corr: torch.Tensor,
    target_xy_map: torch.Tensor,
    valid: torch.Tensor | None = None,
    shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Per-point NRE with s = 1: -sum_q r(q) ln C(q), r the bilinear pmf at ``target_xy_map`` (map cells).

    log_corr: (N, h*w) or (N, h, w) log correspondence maps. Mass outside the grid (or ``valid`` False) gives +inf."""
    if log_corr.dim() == 3:
        shape = tuple(log_corr.shape[1:])
        log_corr = log_corr.reshape(len(log_corr), -1)
    if shape is None:
        raise ValueError("pass shape=(h, w) with flat maps")
    h, w = shape
    flat, wts, inside = bilinear_weights(target_xy_map, h, w)
    vals = torch.gather(log_corr, 1, flat)
    nll = -(wts * torch.where(inside, vals, torch.zeros_like(vals))).sum(1)
    out_mass = (wts * (~inside)).sum(1)
    nll = torch.where(out_mass > 0, torch.full_like(nll, float("inf")), nll)
    if valid is not None:
        nll = torch.where(valid, nll, torch.full_like(nll, float("inf")))
    return nll


def nre_loss(log_corr: torch.Tensor, xy_map: torch.Tensor, valid: torch.Tensor, shape, s: float | None = 1.0):
    """NRE (Eq. 4) per point for a given s, or the robust NRE (Eq. 5: min over s) with ``s=None``.

    C~ is bilinearly interpolated; an out-of-map corner counts as "out" (C~ = +inf, robust: ln|Omega-ring|)."""
    h, w = shape
    lo = torch.log(torch.tensor(h * w + 1.0, dtype=log_corr.dtype))
    flat, wts, inside = bilinear_weights(xy_map, h, w)
    ct = -torch.gather(log_corr.reshape(len(log_corr), -1), 1, flat)
    if s is None:  # robust: each corner's loss truncated at ln|Omega-ring|, "out" = ln|Omega-ring|
        vals = torch.where(inside, torch.minimum(ct, lo), lo)
        out = (wts * vals).sum(1)
        return torch.where(valid, out, lo.expand_as(out))
    vals = torch.where(inside, ct, torch.full_like(ct, float("inf")))
    interp = (wts * torch.where(wts > 0, vals, torch.zeros_like(vals))).sum(1)
    interp = torch.where(((wts > 0) & ~inside).any(1) | ~valid, torch.full_like(interp, float("inf")), interp)
    return s * interp + (1 - s) * lo


def pose_nre(
    X: torch.Tensor,
    omega: torch.Tensor,
    t: torch.Tensor,
    R0: torch.Tensor,
    K: torch.Tensor,
    log_corr: torch.Tensor,
    shape,
    scale,
    s: float | None = None,
) -> torch.Tensor:
    """Sum of NRE over points as a function of a pose perturbation (omega, t): R = Exp(omega) R0."""
    R = so3_exp_torch(omega) @ R0
    uv, valid = project_torch(X, R, t, K)
    sc = torch.as_tensor(scale, dtype=uv.dtype)
    xy = (uv + 0.5) * sc - 0.5
    return nre_loss(log_corr, xy, valid, shape, s).sum()
