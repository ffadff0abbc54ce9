"""MSAC initialisation (Sec. 5.1): the vectorised P3P against poselib, the Eq. 6 scorer, degenerate input."""

import warnings

import numpy as np
import pytest

from nre.estimators.testing import gaussian_logprob, make_problem, sparse_from_logprob
from nre.geometry import Camera, Pose, img_to_map, pose_error, so3_exp
from nre.geometry.p3p import bearings_from_pixels, p3p_batch, p3p_poselib
from nre.maps.dense import lookup_dense
from nre.solver.msac import DenseTableScorer, msac, sampling_weights


def _p3p_samples(rng, K):
    R = so3_exp(rng.normal(0, 1, (K, 3)))
    t = rng.normal(0, 1, (K, 3))
    Xc = np.c_[rng.uniform(-1, 1, (3 * K, 2)), rng.uniform(2, 10, 3 * K)].reshape(K, 3, 3)
    X = np.einsum("kji,kpj->kpi", R, Xc - t[:, None])  # R^T (Xc - t)
    return Xc / np.linalg.norm(Xc, axis=-1, keepdims=True), X, R, t


def test_p3p_batch_equals_poselib_on_the_same_inputs():
    rng = np.random.default_rng(0)
    f, X, R, t = _p3p_samples(rng, 400)
    Ra, ta, sa = p3p_batch(f, X)
    Rb, tb, sb = p3p_poselib(f, X)
    # the same number of solutions per sample, and each poselib solution found by ours
    np.testing.assert_array_equal(np.bincount(sa, minlength=400), np.bincount(sb, minlength=400))
    for k in range(400):
        A = np.c_[Ra[sa == k].reshape(-1, 9), ta[sa == k]]
        B = np.c_[Rb[sb == k].reshape(-1, 9), tb[sb == k]]
        assert np.abs(A[:, None] - B[None]).max(-1).min(0).max() < 1e-6
    # the true pose is among the solutions of every sample
    err = np.linalg.norm(Ra - R[sa], axis=(1, 2)) + np.linalg.norm(ta - t[sa], axis=1)
    found = np.zeros(400, bool)
    np.maximum.at(found, sa, err < 1e-8)
    assert found.all()
    # rotations are rotations
    np.testing.assert_allclose(Ra @ np.swapaxes(Ra, 1, 2), np.broadcast_to(np.eye(3), Ra.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(Ra), 1.0, atol=1e-9)


def test_p3p_batch_degenerate_samples_give_no_solution_and_no_warning():
    rng = np.random.default_rng(1)
    f, X, _, _ = _p3p_samples(rng, 6)
    X[0] = [[0, 0, 5], [1, 0, 5], [2, 0, 5]]  # collinear world points
    X[1, 2] = X[1, 1]  # a repeated point
    X[2, 0] = np.nan
    f[3, 1] = np.nan
    f[4] = f[4, 0]  # the same bearing three times
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        R, t, s = p3p_batch(f, X)
    assert set(s.tolist()) <= {5} and len(s) >= 1
    assert np.isfinite(R).all() and np.isfinite(t).all()
    with pytest.raises(ValueError, match="p3p_batch"):
        p3p_batch(f[:, :2], X[:, :2])
    assert len(p3p_batch(np.zeros((0, 3, 3)), np.zeros((0, 3, 3)))[0]) == 0


def test_msac_numpy_and_poselib_solvers_agree():
    P = make_problem(11, n=300, outlier_ratio=0.5)
    sc = DenseTableScorer(P.coarse, P.points3d, P.camera, dtype=np.float32)
    w = np.ones(300) / 300
    a = msac(P.points3d, P.peak_xy, P.camera, sc, w, np.random.default_rng(0), 300, solver="numpy")
    b = msac(P.points3d, P.peak_xy, P.camera, sc, w, np.random.default_rng(0), 300, solver="poselib")
    assert a.n_hypotheses == b.n_hypotheses
    assert a.cost == pytest.approx(b.cost, rel=1e-6)
    assert pose_error(a.pose, b.pose).rotation_deg < 1e-5


def test_msac_through_a_distorted_camera():
    """Argmin pixels of an OPENCV camera go to bearings through undistort_points: the pose comes out."""
    rng = np.random.default_rng(2)
    W, H = 640, 480
    cam = Camera("OPENCV", W, H, [500, 510, 319.5, 239.5, -0.2, 0.05, 0.001, -0.002])
    pose = Pose(so3_exp([0.1, -0.2, 0.05]), np.array([0.3, -0.1, 1.0]))
    n = 200
    xy = np.c_[rng.uniform(10, W - 10, n), rng.uniform(10, H - 10, n)]
    depth = rng.uniform(4, 12, n)
    bear = bearings_from_pixels(cam, xy)
    X = pose.inverse().transform(bear / bear[:, 2:] * depth[:, None])
    uv, _ = cam.project(X, pose)
    np.testing.assert_allclose(uv, xy, atol=1e-6)  # bearings_from_pixels inverts the projection
    shape = (30, 40)
    scale = np.array([40 / W, 30 / H])
    maps = sparse_from_logprob(gaussian_logprob(img_to_map(xy, scale), shape, 1.0), scale)
    sc = DenseTableScorer(maps, X, cam, dtype=np.float32)
    m = msac(X, xy, cam, sc, np.ones(n) / n, np.random.default_rng(0), 200)
    assert pose_error(m.pose, pose).rotation_deg < 1e-4
    # the scorer follows the same bilinear rule as nre.maps.dense.lookup_dense, distortion included
    Rs = so3_exp(rng.normal(0, 0.05, (20, 3))) @ pose.R
    ts = pose.t + rng.normal(0, 0.2, (20, 3))
    got = sc(Rs, ts)
    dense = maps.to_dense()
    for k in range(20):
        u, valid = cam.project(X, Pose(Rs[k], ts[k]))
        ref = lookup_dense(dense, np.arange(n), img_to_map(u, scale), valid, maps.trunc).sum()
        assert got[k] == pytest.approx(ref, rel=1e-5)


def test_msac_cost_is_eq6_over_all_maps_and_seeded():
    P = make_problem(12, n=400, outlier_ratio=0.8)
    sc = DenseTableScorer(P.coarse, P.points3d, P.camera, dtype=np.float32)
    w = np.ones(400) / 400
    a = msac(P.points3d, P.peak_xy, P.camera, sc, w, np.random.default_rng(5), 500)
    b = msac(P.points3d, P.peak_xy, P.camera, sc, w, np.random.default_rng(5), 500)
    assert np.array_equal(a.pose.R, b.pose.R) and np.array_equal(a.pose.t, b.pose.t)
    uv, valid = P.camera.project(P.points3d, a.pose)
    ref = lookup_dense(P.coarse.to_dense(), np.arange(400), img_to_map(uv, P.coarse.scale), valid, P.coarse.trunc)
    assert a.cost == pytest.approx(ref.sum(), rel=1e-5)
    assert a.n_samples == 500 and a.n_hypotheses >= 500
    assert set(a.timings) == {"p3p_s", "scoring_s"}


def test_msac_degenerate_inputs_fail_with_reason():
    P = make_problem(13, n=50, outlier_ratio=0.0)
    sc = DenseTableScorer(P.coarse, P.points3d, P.camera)
    rng = np.random.default_rng(0)
    w = np.ones(50) / 50
    xy = P.peak_xy.copy()
    xy[3:] = np.nan  # only 3 usable maps left: still a valid sample space
    r = msac(P.points3d, xy, P.camera, sc, w, rng, 20)
    assert r.pose is not None or r.failure_reason
    xy[2:] = np.nan
    r = msac(P.points3d, xy, P.camera, sc, w, rng, 20)
    assert r.pose is None and "fewer than 3 usable maps (2)" in r.failure_reason
    X = np.c_[np.linspace(-1, 1, 50), np.zeros(50), np.full(50, 5.0)]  # all collinear: no P3P solution at all
    r = msac(X, P.peak_xy, P.camera, DenseTableScorer(P.coarse, X, P.camera), w, rng, 50)
    assert r.pose is None and "P3P" in r.failure_reason
    assert msac(P.points3d, P.peak_xy, P.camera, sc, np.zeros(50), rng).failure_reason.startswith("fewer than 3")


def test_sampling_weights_degenerate():
    assert not sampling_weights(np.array([0.1, 0.2]), np.ones(2), np.ones(2, bool)).any()
    w = sampling_weights(np.arange(12.0), np.ones(12), np.ones(12, bool), best_fraction=0.1)
    assert np.count_nonzero(w) == 3  # at least 3 maps are kept
    assert w.sum() == pytest.approx(1.0)
