"""Vectorised P3P: all minimal samples of an MSAC run solved at once in numpy (no per-sample Python loop).

Grunert's formulation (as reviewed by Haralick et al., IJCV 1994). For a sample of three world points X_1..3 seen
along unit bearings f_1..3, the camera-frame points are s_i f_i with unknown depths s_i > 0, and the triangle's side
lengths are preserved:

    s_2^2 + s_3^2 - 2 s_2 s_3 cos(alpha) = a^2,   a = |X_2 - X_3|,  cos(alpha) = f_2 . f_3
    s_1^2 + s_3^2 - 2 s_1 s_3 cos(beta)  = b^2,   b = |X_1 - X_3|,  cos(beta)  = f_1 . f_3
    s_1^2 + s_2^2 - 2 s_1 s_2 cos(gamma) = c^2,   c = |X_1 - X_2|,  cos(gamma) = f_1 . f_2

With s_2 = u s_1 and s_3 = v s_1 this reduces to a quartic in v. Its real roots (companion-matrix eigenvalues,
batched) give u, then s_1; each depth triple is polished by two batched Newton steps on the three equations above,
and the pose is the rigid motion between the world triangle and the camera-frame triangle (orthonormal frames
built on both). Solutions with a non-positive depth, a non-finite value or a poor residual are dropped, so
degenerate samples (collinear points, repeated points, NaN) simply give no solution.

Checked against ``poselib.p3p`` on the same inputs (tests/test_msac.py).
"""

from __future__ import annotations

import numpy as np


def _solve3(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched 3x3 solves A x = b by Cramer's rule (M, 3, 3), (M, 3) -> (M, 3); singular systems give 0."""
    c0 = np.cross(A[:, 1], A[:, 2])
    det = np.sum(A[:, 0] * c0, -1)
    ok = np.isfinite(det) & (np.abs(det) > 1e-300)
    inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    adj = np.stack([c0, np.cross(A[:, 2], A[:, 0]), np.cross(A[:, 0], A[:, 1])], -1)  # columns of the inverse * det
    return np.einsum("mij,mj->mi", adj, b) * inv_det[:, None]


def _frames(P: np.ndarray) -> np.ndarray:
    """Orthonormal frames (K, 3, 3) (columns e1, e2, e3) of triangles P (K, 3, 3) (rows = vertices)."""
    e1 = P[:, 1] - P[:, 0]
    e1 = e1 / np.linalg.norm(e1, axis=-1, keepdims=True)
    e3 = np.cross(P[:, 1] - P[:, 0], P[:, 2] - P[:, 0])
    e3 = e3 / np.linalg.norm(e3, axis=-1, keepdims=True)
    e2 = np.cross(e3, e1)
    return np.stack([e1, e2, e3], -1)


def _quartic_real_roots(coef: np.ndarray, imag_tol: float = 1e-5, polish: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Real roots of quartics with coefficients (K, 5) (highest degree first), in closed form (Ferrari, complex
    arithmetic, vectorised), polished by Newton steps: roots (K, 4) and real mask (K, 4)."""
    lead = coef[:, 0]
    ok = np.isfinite(coef).all(1) & (np.abs(lead) > 1e-12 * np.abs(coef).max(1, initial=0))
    c = np.where(ok[:, None], coef / np.where(ok, lead, 1.0)[:, None], 0.0)
    B, C, D, E = c[:, 1], c[:, 2], c[:, 3], c[:, 4]
    # depressed quartic y^4 + p y^2 + q y + r, x = y - B / 4
    p = C - 3 * B**2 / 8
    q = D - B * C / 2 + B**3 / 8
    r = E - B * D / 4 + B**2 * C / 16 - 3 * B**4 / 256
    # resolvent cubic m^3 + p m^2 + (p^2 / 4 - r) m - q^2 / 8 = 0 (Cardano, complex), the root of largest modulus
    a2, a1, a0 = p, p**2 / 4 - r, -(q**2) / 8
    P = (a1 - a2**2 / 3).astype(complex)
    Q = (2 * a2**3 / 27 - a2 * a1 / 3 + a0).astype(complex)
    sq = np.sqrt(Q**2 / 4 + P**3 / 27)
    w1, w2 = -Q / 2 + sq, -Q / 2 - sq
    W = np.where(np.abs(w1) >= np.abs(w2), w1, w2)
    Cc = W ** (1.0 / 3.0)
    omega = np.exp(2j * np.pi / 3 * np.arange(3))
    Ck = Cc[:, None] * omega  # (K, 3)
    safe = np.abs(Ck) > 0
    z = np.where(safe, Ck - P[:, None] / (3 * np.where(safe, Ck, 1.0)), 0.0)
    m = z - a2[:, None] / 3
    m = m[np.arange(len(m)), np.argmax(np.abs(m), 1)]
    m = np.where(np.abs(m) > 0, m, 1e-300)
    s2m = np.sqrt(2 * m)
    roots = []
    for s1 in (1.0, -1.0):
        inner = np.sqrt(-(2 * p + 2 * m + s1 * np.sqrt(2.0) * q / np.sqrt(m)))
        for s2 in (1.0, -1.0):
            roots.append((s1 * s2m + s2 * inner) / 2 - B / 4)
    roots = np.stack(roots, 1)  # (K, 4) complex
    real = ok[:, None] & (np.abs(roots.imag) <= imag_tol * np.maximum(np.abs(roots), 1.0))
    x = roots.real
    for _ in range(polish):
        f = (((x + B[:, None]) * x + C[:, None]) * x + D[:, None]) * x + E[:, None]
        df = ((4 * x + 3 * B[:, None]) * x + 2 * C[:, None]) * x + D[:, None]
        step = np.where(np.abs(df) > 0, f / np.where(np.abs(df) > 0, df, 1.0), 0.0)
        x = x - step
    return x, real & np.isfinite(x)


def _cosine_law_residual(s: np.ndarray, ca, cb, cg, tgt: np.ndarray) -> np.ndarray:
    """(M, 3) residuals of the three law-of-cosines equations for depths s (M, 3) against squared sides tgt."""
    s1, s2, s3 = s[:, 0], s[:, 1], s[:, 2]
    lhs = np.stack(
        [
            s2**2 + s3**2 - 2 * s2 * s3 * ca,
            s1**2 + s3**2 - 2 * s1 * s3 * cb,
            s1**2 + s2**2 - 2 * s1 * s2 * cg,
        ],
        -1,
    )
    return lhs - tgt


def p3p_batch(
    bearings: np.ndarray, points: np.ndarray, newton_steps: int = 2, max_residual: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve K P3P problems at once.

    bearings: (K, 3, 3) unit bearing vectors (rows, camera frame); points: (K, 3, 3) world points (rows).
    Returns R (M, 3, 3), t (M, 3) world-to-camera poses (x_cam = R x_world + t) and sample (M,) the index of the
    sample each solution comes from (0 to 4 solutions per sample, in increasing order of sample)."""
    f = np.asarray(bearings, dtype=np.float64)
    X = np.asarray(points, dtype=np.float64)
    if f.ndim != 3 or f.shape[1:] != (3, 3) or X.shape != f.shape:
        raise ValueError(f"p3p_batch: bearings and points must both be (K, 3, 3), got {f.shape} and {X.shape}")
    f = f / np.linalg.norm(f, axis=-1, keepdims=True)
    K = len(f)
    with np.errstate(all="ignore"):
        a2 = np.sum((X[:, 1] - X[:, 2]) ** 2, -1)
        b2 = np.sum((X[:, 0] - X[:, 2]) ** 2, -1)
        c2 = np.sum((X[:, 0] - X[:, 1]) ** 2, -1)
        ca = np.sum(f[:, 1] * f[:, 2], -1)
        cb = np.sum(f[:, 0] * f[:, 2], -1)
        cg = np.sum(f[:, 0] * f[:, 1], -1)
        good = np.isfinite(a2 + b2 + c2 + ca + cb + cg) & (b2 > 0)
        b2s = np.where(good, b2, 1.0)
        amc = (a2 - c2) / b2s  # (a^2 - c^2) / b^2
        apc = (a2 + c2) / b2s
        A4 = (amc - 1) ** 2 - 4 * c2 / b2s * ca**2
        A3 = 4 * (amc * (1 - amc) * cb - (1 - apc) * ca * cg + 2 * c2 / b2s * ca**2 * cb)
        A2 = 2 * (
            amc**2
            - 1
            + 2 * amc**2 * cb**2
            + 2 * (b2s - c2) / b2s * ca**2
            - 4 * apc * ca * cb * cg
            + 2 * (b2s - a2) / b2s * cg**2
        )
        A1 = 4 * (-amc * (1 + amc) * cb + 2 * a2 / b2s * cg**2 * cb - (1 - apc) * ca * cg)
        A0 = (1 + amc) ** 2 - 4 * a2 / b2s * cg**2
        coef = np.stack([A4, A3, A2, A1, A0], 1)
        coef[~good] = np.nan
        v, real = _quartic_real_roots(coef)  # (K, 4)
        sample = np.broadcast_to(np.arange(K)[:, None], (K, 4))[real]
        v = v[real]
        amc_s, ca_s, cb_s, cg_s = amc[sample], ca[sample], cb[sample], cg[sample]
        u = ((amc_s - 1) * v**2 - 2 * amc_s * cb_s * v + 1 + amc_s) / (2 * (cg_s - v * ca_s))
        s1 = np.sqrt(b2[sample] / (1 + v**2 - 2 * v * cb_s))
        s = np.stack([s1, u * s1, v * s1], -1)  # (M, 3) depths
        keep = np.isfinite(s).all(1) & (s > 0).all(1)
        s, sample = s[keep], sample[keep]
        ca_s, cb_s, cg_s = ca[sample], cb[sample], cg[sample]
        tgt = np.stack([a2[sample], b2[sample], c2[sample]], -1)
        for _ in range(newton_steps):
            s1, s2, s3 = s[:, 0], s[:, 1], s[:, 2]
            F = _cosine_law_residual(s, ca_s, cb_s, cg_s, tgt)
            z = np.zeros_like(s1)
            J = np.stack(
                [
                    np.stack([z, 2 * (s2 - s3 * ca_s), 2 * (s3 - s2 * ca_s)], -1),
                    np.stack([2 * (s1 - s3 * cb_s), z, 2 * (s3 - s1 * cb_s)], -1),
                    np.stack([2 * (s1 - s2 * cg_s), 2 * (s2 - s1 * cg_s), z], -1),
                ],
                -2,
            )
            step = _solve3(J, F)
            s = s - step
        res = _cosine_law_residual(s, ca_s, cb_s, cg_s, tgt)
        rel = np.abs(res).max(1) / np.maximum(tgt.max(1), 1e-300)
        keep = np.isfinite(s).all(1) & (s > 0).all(1) & (rel < max_residual)
        s, sample = s[keep], sample[keep]
        Y = s[..., None] * f[sample]  # (M, 3, 3) camera-frame points
        Fx = _frames(X[sample])
        Fy = _frames(Y)
        R = Fy @ np.swapaxes(Fx, -1, -2)
        t = Y[:, 0] - np.einsum("mij,mj->mi", R, X[sample, 0])
        ok = np.isfinite(R).all((1, 2)) & np.isfinite(t).all(1)
    return R[ok], t[ok], sample[ok]


def bearings_from_pixels(camera, xy: np.ndarray) -> np.ndarray:
    """Unit bearing vectors (N, 3) of image pixels (N, 2) through ``camera`` (distortion removed)."""
    nrm = camera.undistort_points(np.asarray(xy, dtype=np.float64))
    bear = np.c_[nrm, np.ones(len(nrm))]
    return bear / np.linalg.norm(bear, axis=1, keepdims=True)


def p3p_poselib(bearings: np.ndarray, points: np.ndarray):
    """The same interface as ``p3p_batch`` through poselib.p3p, one call per sample (the reference for tests and
    the benchmark)."""
    import poselib

    Rs, ts, idx = [], [], []
    for k in range(len(bearings)):
        for sol in poselib.p3p(bearings[k], points[k]):
            Rs.append(sol.R)
            ts.append(sol.t)
            idx.append(k)
    if not Rs:
        return np.zeros((0, 3, 3)), np.zeros((0, 3)), np.zeros(0, np.int64)
    return np.asarray(Rs), np.asarray(ts), np.asarray(idx)
