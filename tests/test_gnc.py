"""GNC / IRLS refinement (Sec. 5.2, Eq. 9): gradient, convergence, step control and stopping."""

import numpy as np
import pytest

from nre.estimators.testing import make_problem
from nre.geometry import Camera, Pose, pose_error, so3_exp
from nre.solver.gnc import Terms, normal_equations, refine, reproject, term_costs


def _phi(pose, P, terms, sigma):
    pm, _, _ = reproject(pose, P.points3d, P.camera, np.asarray(terms.scale, float))
    return term_costs(terms, pm, sigma).sum()


def test_irls_gradient_is_minus_the_finite_difference_gradient():
    """g of the normal equations = -dPhi/d delta (Pose.perturb), checked by central differences."""
    P = make_problem(20, n=200, outlier_ratio=0.3)
    terms = Terms.from_sparse(P.coarse)
    pose = P.pose.perturb(np.r_[np.radians([0.5, -0.3, 0.2]), 0.05, 0.02, -0.05])
    sigma = 1.5
    pm, valid, Jm = reproject(pose, P.points3d, P.camera, P.coarse.scale)
    H, g, use = normal_equations(terms, pm, valid, Jm, sigma)
    eps = 1e-6
    fd = np.array(
        [
            (_phi(pose.perturb(eps * e), P, terms, sigma) - _phi(pose.perturb(-eps * e), P, terms, sigma)) / (2 * eps)
            for e in np.eye(6)
        ]
    )
    np.testing.assert_allclose(g, -fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())
    assert np.all(np.linalg.eigvalsh(H) > 0) and use.sum() > 50


def test_gnc_recovers_the_pose_from_noise_free_one_hot_terms_with_distortion():
    """One-hot terms at the exact reprojections through an OPENCV camera: GNC lands on the truth."""
    rng = np.random.default_rng(0)
    cam = Camera("OPENCV", 640, 480, [500, 500, 319.5, 239.5, -0.1, 0.02, 0.001, 0.0])
    pose = Pose(so3_exp([0.2, 0.1, -0.1]), np.array([0.1, 0.2, 0.5]))
    X = pose.inverse().transform(np.c_[rng.uniform(-3, 3, (300, 2)), rng.uniform(5, 10, 300)])
    uv, valid = cam.project(X, pose)
    keep = valid & cam.in_image(uv)
    X, uv = X[keep], uv[keep]
    n = len(X)
    terms = Terms(np.arange(n), uv, np.full(n, 10.0), n, np.ones(2))  # cells = pixels
    start = pose.perturb(np.r_[np.radians([0.5, -0.5, 0.3]), 0.05, -0.05, 0.1])
    g = refine(start, X, cam, terms, sigmas=(8.0, 4.0, 2.0, 1.0))
    e = pose_error(g.pose, pose)
    assert e.rotation_deg < 1e-4 and e.translation < 1e-5, e
    assert 1 <= g.accepted <= g.iterations <= 100 and len(g.costs) == 4


def test_each_level_only_lowers_the_cost():
    P = make_problem(21, n=500, outlier_ratio=0.5)
    terms = Terms.from_sparse(P.coarse)
    start = P.pose.perturb(np.r_[np.radians([1.0, 1.0, -0.5]), 0.2, -0.1, 0.1])
    for sigma in (2.0, 0.8):
        g = refine(start, P.points3d, P.camera, terms, sigmas=(sigma,), radius_sigmas=50)
        assert _phi(g.pose, P, terms, sigma) <= _phi(start, P, terms, sigma)
        assert g.costs[0] == pytest.approx(_phi(g.pose, P, terms, sigma), rel=1e-9)


def test_iteration_cap_and_stop_reasons():
    P = make_problem(22, n=300, outlier_ratio=0.5)
    terms = Terms.from_sparse(P.coarse)
    start = P.pose.perturb(np.r_[np.radians([2.0, -1.0, 1.0]), 0.3, 0.2, -0.2])
    g = refine(start, P.points3d, P.camera, terms, max_iterations=2)
    assert g.iterations == 2 and g.stop_reason == "iteration cap"
    full = refine(start, P.points3d, P.camera, terms)
    assert full.stop_reason in ("schedule end", "damping upper bound") and full.iterations <= 100
    # every point behind the camera: no term near any reprojection, the pose is returned unchanged
    behind = Pose(np.diag([1.0, -1.0, -1.0]) @ P.pose.R, P.pose.t * np.array([1, -1, -1]))
    b = refine(behind, P.points3d, P.camera, terms)
    assert b.stop_reason == "no term near any reprojection" and np.array_equal(b.pose.R, behind.R)
    # a damping bound reached at once stops the run
    d = refine(start, P.points3d, P.camera, terms, damping_init=1e7, damping_bounds=(1e7, 1e7))
    assert d.stop_reason in ("damping upper bound", "schedule end")


def test_gnc_is_deterministic():
    P = make_problem(23, n=300, outlier_ratio=0.5)
    terms = Terms.from_sparse(P.coarse)
    start = P.pose.perturb(np.r_[np.radians([1.0, 0.0, 0.0]), 0.1, 0.0, 0.0])
    a = refine(start, P.points3d, P.camera, terms)
    b = refine(start, P.points3d, P.camera, terms)
    assert np.array_equal(a.pose.R, b.pose.R) and np.array_equal(a.pose.t, b.pose.t) and a.iterations == b.iterations


def test_level_filter_reuse_equals_a_full_pass():
    """Each sigma level keeps the terms near the reprojections; with point-sorted terms the candidates come from the
    previous level (points that moved little) or from all of a point's terms (points that moved more). Shuffled
    terms take a full pass at every level: the estimates agree (to summation order). Broad maps (31 x 31 cells of
    Gaussian-shaped weights around noisy truth) and a start ~6 px off make the points move past the reuse bound
    (r_prev - r = 2 px with sigmas 3, 2.5), so a reuse without the fallback would miss terms and land elsewhere."""
    rng = np.random.default_rng(2)
    cam = Camera("PINHOLE", 640, 480, [500, 500, 319.5, 239.5])
    pose = Pose(so3_exp([0.1, -0.2, 0.05]), np.array([0.2, -0.1, 0.3]))
    X = pose.inverse().transform(np.c_[rng.uniform(-2.5, 2.5, (150, 2)), rng.uniform(6, 10, 150)])
    uv, _ = cam.project(X, pose)
    uv += rng.normal(0, 1.0, uv.shape)
    off = np.stack(np.meshgrid(np.arange(-15, 16), np.arange(-15, 16)), -1).reshape(-1, 2)
    point = np.repeat(np.arange(150), len(off))
    q = np.round(uv)[point] + np.tile(off, (150, 1))
    w = 3.0 * np.exp(-((q - uv[point]) ** 2).sum(1) / (2 * 5.0**2)) + rng.uniform(0, 0.3, len(point))
    terms = Terms(point, q.astype(float), w, 150, np.ones(2))  # cells = pixels
    perm = rng.permutation(len(point))
    shuffled = Terms(point[perm], q[perm].astype(float), w[perm], 150, np.ones(2))
    start = pose.perturb(np.r_[np.radians([0.4, -0.3, 0.2]), 0.03, -0.02, 0.0])
    before = np.abs(cam.project(X, start)[0] - cam.project(X, pose)[0]).max()
    a = refine(start, X, cam, terms, sigmas=(3.0, 2.5))
    b = refine(start, X, cam, shuffled, sigmas=(3.0, 2.5))
    assert before > 4 and a.accepted >= 2
    assert a.iterations == b.iterations
    np.testing.assert_allclose(a.pose.R, b.pose.R, atol=1e-9)
    np.testing.assert_allclose(a.pose.t, b.pose.t, atol=1e-9)
    np.testing.assert_allclose(a.costs, b.costs, rtol=1e-9)
