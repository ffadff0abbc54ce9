"""The NRE estimator on synthetic maps from known poses (issue: 'Tests that could fail')."""

import numpy as np
import pytest

from nre.estimators.problem import Matches, Problem
from nre.estimators.testing import make_problem
from nre.geometry import Camera, Pose, pose_error
from nre.solver.gnc import Terms, refine
from nre.solver.msac import DenseTableScorer, msac, sampling_weights
from nre.solver.nre import map_minima, nre_coarse_to_fine, re_gaussian
from nre.solver.options import NreOptions


def _problem(P, seed):
    return Problem(
        "syn", P.points3d, P.camera, seed, gt_pose=P.pose, coarse_maps=P.coarse, extras={"fine_source": P.fine_source()}
    )


@pytest.fixture(scope="module")
def runs():
    """20 seeds, 1000 maps, 80% outliers whose decoy peaks are as high as the inliers' peaks."""
    out = []
    for seed in range(20):
        P = make_problem(seed, n=1000, outlier_ratio=0.8)
        res = nre_coarse_to_fine(_problem(P, seed), NreOptions(msac_iterations=2000))
        out.append((P, res))
    return out


def test_msac_within_2deg_in_95_percent(runs):
    errs = np.array([pose_error(r[0].pose, P.pose).rotation_deg for P, r in runs])
    assert np.mean(errs < 2.0) >= 0.95, errs


def test_median_error_falls_after_each_stage(runs):
    med = [np.median([pose_error(r[k].pose, P.pose).rotation_deg for P, r in runs]) for k in range(3)]
    assert med[0] > med[1] > med[2], med
    trans = [np.median([pose_error(r[k].pose, P.pose).translation for P, r in runs]) for k in range(3)]
    assert trans[0] > trans[1] > trans[2], trans


def test_fine_inlier_rms_under_half_a_fine_cell(runs):
    for P, r in runs:
        uv, _ = P.camera.project(P.points3d[P.inlier], r[2].pose)
        rms = np.sqrt(np.mean(np.sum((uv - P.true_xy[P.inlier]) ** 2, 1)))
        assert rms < 0.5 / P.fine_scale[0], rms  # half a fine cell, in pixels


def test_stage_results_and_diagnostics(runs):
    P, r = runs[0]
    assert [x.stage for x in r] == ["p3p", "coarse_gnc", "fine_gnc"]
    for x in r:
        assert x.success and x.runtime_s > 0
        assert np.isfinite(x.diagnostics["cost"]) and np.isfinite(x.diagnostics["cost_at_truth"])
    assert r[1].diagnostics["iterations"] >= 1
    assert r[0].diagnostics["map_bytes_coarse"] < 5e6


def test_same_seed_same_pose_bit_for_bit():
    P = make_problem(3, n=500, outlier_ratio=0.5)
    a = nre_coarse_to_fine(_problem(P, 7), NreOptions(msac_iterations=500))
    b = nre_coarse_to_fine(_problem(P, 7), NreOptions(msac_iterations=500))
    for x, y in zip(a, b):
        assert np.array_equal(x.pose.R, y.pose.R) and np.array_equal(x.pose.t, y.pose.t)
    c = nre_coarse_to_fine(_problem(P, 8), NreOptions(msac_iterations=500))
    assert not np.array_equal(a[0].pose.R, c[0].pose.R)


def test_degenerate_inputs_fail_with_reason():
    P = make_problem(0, n=50, outlier_ratio=0.0)
    sub = P.coarse.subset(np.arange(2))
    prob = Problem("few", P.points3d[:2], P.camera, 0, coarse_maps=sub)
    res = nre_coarse_to_fine(prob)
    assert not res[0].success and "fewer than 3" in res[0].failure_reason
    assert all(not r.success for r in res)
    # NaN points
    X = P.points3d.copy()
    X[:] = np.nan
    res = nre_coarse_to_fine(Problem("nan", X, P.camera, 0, coarse_maps=P.coarse))
    assert not res[0].success
    # collinear 3D points: P3P degenerate, never an exception
    X = np.c_[np.linspace(-1, 1, 50), np.zeros(50), np.full(50, 5.0)]
    xy, _ = map_minima(P.coarse)
    r = msac(X, xy, P.camera, DenseTableScorer(P.coarse, X, P.camera), np.ones(50) / 50, np.random.default_rng(0), 50)
    assert r.pose is None or np.isfinite(r.cost)


def test_points_behind_camera_and_outside_cost_trunc():
    P = make_problem(1, n=100, outlier_ratio=0.0)
    sc = DenseTableScorer(P.coarse, P.points3d, P.camera)
    behind = Pose(np.diag([1.0, -1.0, -1.0]) @ P.pose.R, P.pose.t * np.array([1, -1, -1]))
    assert sc(behind.R[None], behind.t[None])[0] == pytest.approx(100 * P.coarse.trunc, rel=1e-6)
    far = Pose(P.pose.R, P.pose.t + [1e4, 0, 0])
    assert sc(far.R[None], far.t[None])[0] == pytest.approx(100 * P.coarse.trunc, rel=1e-6)
    assert sc(P.pose.R[None], P.pose.t[None])[0] < 0.5 * 100 * P.coarse.trunc


def test_gnc_converges_from_perturbed_pose():
    P = make_problem(2, n=1000, outlier_ratio=0.5)
    start = P.pose.perturb(np.r_[np.radians([1.0, -1.0, 0.5]), 0.1, -0.1, 0.2])
    g = refine(start, P.points3d, P.camera, Terms.from_sparse(P.coarse))
    assert pose_error(g.pose, P.pose).rotation_deg < 0.3 < pose_error(start, P.pose).rotation_deg
    assert g.iterations <= 100 and g.stop_reason


def test_re_gauss_eq11_on_matches():
    P = make_problem(4, n=500, outlier_ratio=0.5)
    prob = Problem(
        "m",
        P.points3d,
        P.camera,
        0,
        gt_pose=P.pose,
        matches=Matches(P.peak_xy, np.ones(500), np.ones(500)),
        extras={"dense_scale": np.array([0.5, 0.5]), "dense_shape": (240, 320)},
    )
    res = re_gaussian(prob, [2.0, 8.0], NreOptions(msac_iterations=1000))
    assert all(r.success for r in res)
    assert pose_error(res[0].pose, P.pose).rotation_deg < 0.2


def test_msac_sampling_weights_prefer_low_entropy_best_maps():
    mins = np.array([0.1, 0.2, 5.0, 6.0, 0.3, 7.0, 8.0, 9.0])
    ent = np.array([1.0, 2.0, 1.0, 1.0, 4.0, 1, 1, 1])
    w = sampling_weights(mins, ent, np.ones(8, bool), best_fraction=0.25)
    assert set(np.flatnonzero(w)) == {0, 1, 4}
    assert w[0] > w[1] > w[4]
    cam = Camera("PINHOLE", 10, 10, [10, 10, 4.5, 4.5])
    assert msac(np.zeros((2, 3)), np.zeros((2, 2)), cam, None, np.ones(2), np.random.default_rng(0)).pose is None


def test_local_windows_are_centred_on_the_reprojection():
    """The reference's local maps came back shifted by half a window: ours must be centred where they should."""
    from nre.geometry import img_to_map
    from nre.maps.local import descriptor_window_logprob, local_fine_maps, local_windows

    P = make_problem(5, n=200, outlier_ratio=0.0)
    x0, y0, valid = local_windows(P.pose, P.points3d, P.camera, P.fine_scale, P.fine_shape, 16, 8.0)
    uv, _ = P.camera.project(P.points3d, P.pose)
    pf = img_to_map(uv, P.fine_scale)
    centre = np.c_[x0, y0] + 7.5
    inner = P.camera.in_image(uv, 8 + 16 / P.fine_scale[0])  # far from the border: no clamping
    assert np.abs(centre[inner] - pf[inner]).max() <= 0.5 + 1e-9
    # windows stay at least 8 px inside the image
    lo = img_to_map(np.array([8.0, 8.0]), P.fine_scale)
    assert (x0 >= np.floor(lo[0])).all() and (y0 >= np.floor(lo[1])).all()
    assert (x0 + 15 <= P.fine_shape[1] - 1).all() and (y0 + 15 <= P.fine_shape[0] - 1).all()
    # the local map's argmin lands on the cell of the fine peak (descriptor windows of one-hot descriptors)
    import torch

    h, w = P.fine_shape
    cells = np.clip(np.round(img_to_map(P.fine_peak_xy, P.fine_scale)).astype(int), 0, [w - 1, h - 1])
    n = len(cells)
    tgt = torch.zeros(n, h, w)
    tgt[torch.arange(n), torch.as_tensor(cells[:, 1]), torch.as_tensor(cells[:, 0])] = 20.0
    logp = descriptor_window_logprob(torch.eye(n), tgt, x0, y0, 16)
    maps = local_fine_maps(logp, x0, y0, valid, np.ones(n), P.fine_shape, P.fine_scale)
    xy, _ = map_minima(maps)
    got = np.round(img_to_map(xy, P.fine_scale)).astype(int)
    ok = inner & (np.abs(cells - pf).max(1) < 7)
    assert ok.sum() > 100 and (got[ok] == cells[ok]).all()


def test_msac_scorer_equals_reference_bilinear_lookup():
    """The packed-table torch scorer against the plain numpy look-up of nre.maps.dense on random poses."""
    from nre.geometry import img_to_map, so3_exp
    from nre.maps.dense import lookup_dense

    P = make_problem(6, n=300, outlier_ratio=0.5)
    rng = np.random.default_rng(0)
    R = so3_exp(rng.normal(0, 0.2, (40, 3))) @ P.pose.R
    t = P.pose.t + rng.normal(0, 2.0, (40, 3))
    got = DenseTableScorer(P.coarse, P.points3d, P.camera, dtype=np.float32)(R, t)
    half = DenseTableScorer(P.coarse, P.points3d, P.camera)(R, t)  # the float16 default
    np.testing.assert_allclose(half, got, rtol=2e-3)
    dense = P.coarse.to_dense()
    for k in range(40):
        uv, valid = P.camera.project(P.points3d, Pose(R[k], t[k]))
        ref = lookup_dense(dense, np.arange(300), img_to_map(uv, P.coarse.scale), valid, P.coarse.trunc).sum()
        assert got[k] == pytest.approx(ref, rel=1e-5)


def test_descriptor_window_logprob_matches_a_per_point_loop():
    """Local windows (clamped at the map border) against a direct per-point computation."""
    import torch

    from nre.maps.local import descriptor_window_logprob

    g = torch.Generator().manual_seed(0)
    tgt = torch.randn(8, 20, 30, generator=g)
    src = torch.randn(50, 8, generator=g)
    x0 = np.random.default_rng(0).integers(-3, 28, 50)
    y0 = np.random.default_rng(1).integers(-3, 18, 50)
    got = descriptor_window_logprob(src, tgt, x0, y0, 6, chunk_elems=1200)  # 2 points per chunk
    for m in range(50):
        ys = np.clip(y0[m] + np.arange(6), 0, 19)
        xs = np.clip(x0[m] + np.arange(6), 0, 29)
        logits = torch.einsum("d,dij->ij", src[m], tgt[:, ys][:, :, xs])
        ref = torch.log_softmax(logits.reshape(-1), 0).reshape(6, 6).numpy()
        np.testing.assert_allclose(got[m], ref, atol=1e-5)
