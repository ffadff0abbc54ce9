"""RE baselines on synthetic matches with known poses (issue 5 tolerances), the oracle and imported poses."""

import numpy as np
import pandas as pd
import pytest

from baselines.re_ransac import THRESHOLDS_PX
from nre.estimators import registry
from nre.estimators.problem import Matches
from nre.estimators.testing import matches_problem as synthetic_problem
from nre.geometry import R_to_quat_wxyz, pose_error

RE = ["lo_ransac_poselib", "lo_ransac_pycolmap", "lo_ransac_opencv", "gc_ransac", "magsac_pp"]


@pytest.fixture(scope="module")
def problems():
    return {o: synthetic_problem(1, n=500, outliers=o, noise=1.0) for o in (0.0, 0.5, 0.8)}


@pytest.mark.parametrize("outliers", [0.0, 0.5, 0.8])
@pytest.mark.parametrize("name", RE)
def test_accuracy_at_1px_noise(problems, name, outliers):
    prob, depth = problems[outliers]
    [[res]] = registry.get(name)().run(prob, [{"threshold": 4.0}])
    assert res.success, res.failure_reason
    err = pose_error(res.pose, prob.gt_pose)
    assert err.rotation_deg < 0.1 and err.translation < 0.005 * depth, (name, outliers, err)
    true_inliers = int((~prob.extras["outlier_mask"]).sum())
    assert 0.9 * true_inliers <= res.inliers <= true_inliers + 0.05 * prob.n, (res.inliers, true_inliers)
    assert not res.diagnostics["low_support"]


def test_distortion_is_handled_once_for_all():
    prob, depth = synthetic_problem(2, outliers=0.3, distortion=True)
    uv, X, idx = prob.observations()
    # the undistorted observations are pinhole projections with the original focal length: exact at zero noise
    clean, _ = synthetic_problem(2, outliers=0.0, noise=0.0, distortion=True)
    uvc, Xc, _ = clean.observations()
    Xcam = clean.gt_pose.transform(Xc)
    c = clean.camera
    pin = np.c_[c.fx * Xcam[:, 0] / Xcam[:, 2] + c.cx, c.fy * Xcam[:, 1] / Xcam[:, 2] + c.cy]
    np.testing.assert_allclose(uvc, pin, atol=1e-3)
    for name in RE:
        [[res]] = registry.get(name)().run(prob, [{"threshold": 4.0}])
        err = pose_error(res.pose, prob.gt_pose)
        assert err.rotation_deg < 0.1 and err.translation < 0.005 * depth, (name, err)


@pytest.mark.parametrize("name", RE)
def test_threshold_is_in_pixels(name):
    # exact matches plus 100 matches exactly 3 px off: inliers at a 4 px threshold, outliers at 2 px
    prob, _ = synthetic_problem(3, n=400, outliers=0.0, noise=0.0)
    xy = prob.matches.xy.copy()
    ang = np.random.default_rng(0).uniform(0, 2 * np.pi, 100)
    xy[:100] += 3.0 * np.c_[np.cos(ang), np.sin(ang)]
    prob.matches = Matches(xy, np.ones(400))
    [[r4], [r2]] = registry.get(name)().run(prob, [{"threshold": 4.0}, {"threshold": 2.0}])
    assert r4.inliers >= 396, (name, r4.inliers)
    assert 296 <= r2.inliers <= 304, (name, r2.inliers)


@pytest.mark.parametrize("name", RE)
def test_same_seed_same_result_whatever_ran_before(name):
    """Bit-identical results for one problem and seed, whatever ran before in the process: GC-RANSAC's local
    optimisation draws from OpenCV's global generator, whose state other calls advance (without the reset from the
    problem's seed the second call differs)."""
    prob, _ = synthetic_problem(6, n=500, outliers=0.5, noise=3.0)
    other, _ = synthetic_problem(7, n=300, outliers=0.5)
    est = registry.get(name)()
    runs = []
    for _ in range(5):
        runs.append(est.run(prob, [{"threshold": 12.0}])[0][0])
        est.run(other, [{"threshold": 4.0}])
    for r in runs[1:]:
        np.testing.assert_array_equal(r.pose.R, runs[0].pose.R)
        np.testing.assert_array_equal(r.pose.t, runs[0].pose.t)
        assert r.inliers == runs[0].inliers


def test_budget_is_pinned_and_recorded():
    prob, _ = synthetic_problem(5, n=200, outliers=0.5)
    for name in RE:
        est = registry.get(name)(max_iterations=500, confidence=0.99)
        [[r]] = est.run(prob, [{"threshold": 4.0}])
        d = r.diagnostics
        assert d["max_iterations"] == 500 and d["confidence"] == 0.99 and d["n_matches"] == 200, name
        if name in ("lo_ransac_poselib", "lo_ransac_pycolmap"):
            assert d["dyn_num_trials_mult"] == 3.0 and d["min_iterations"] == 100
        else:
            assert d["usac_flag"].startswith("USAC_")
    # poselib honours the pinned minimum (its own default would be 1000 iterations)
    [[r]] = registry.get("lo_ransac_poselib")(min_iterations=100).run(prob, [{"threshold": 4.0}])
    assert 100 <= r.diagnostics["iterations"] < 1000
    assert registry.get("lo_ransac_poselib").grid["threshold"] == THRESHOLDS_PX


def test_pure_outliers_flag_low_support():
    prob, _ = synthetic_problem(6, n=200, outliers=1.0)
    [[r]] = registry.get("lo_ransac_poselib")(min_inliers=30).run(prob, [{"threshold": 2.0}])
    assert r.success and r.diagnostics["low_support"] and r.inliers < 30  # scored by default
    est = registry.get("lo_ransac_opencv")(min_inliers=30, fail_on_low_support=True)
    [[r]] = est.run(prob, [{"threshold": 2.0}])
    assert not r.success and "low support" in r.failure_reason and r.diagnostics["low_support"]


def test_too_few_and_non_finite_matches_are_failures():
    prob, _ = synthetic_problem(7, n=50, outliers=0.0)
    xy = prob.matches.xy.copy()
    xy[3:] = np.nan
    prob.matches = Matches(xy, np.ones(50))
    for name in RE:
        [[r]] = registry.get(name)().run(prob, [{"threshold": 4.0}])
        assert not r.success and "only 3 matches" in r.failure_reason, name
    prob.matches = None
    assert registry.get("lo_ransac_poselib")().run(prob, [{"threshold": 4.0}])[0][0].failure_reason == "no matches"


def test_oracle_is_the_upper_bound():
    prob, _ = synthetic_problem(8, outliers=0.7)
    [[oracle]] = registry.get("oracle")().run(prob)
    [[lo]] = registry.get("lo_ransac_poselib")().run(prob, [{"threshold": 4.0}])
    e_o = pose_error(oracle.pose, prob.gt_pose).rotation_deg
    assert oracle.success and e_o < 0.05
    assert oracle.inliers == int((~prob.extras["outlier_mask"]).sum()) or abs(oracle.inliers - lo.inliers) < 10
    assert abs(oracle.diagnostics["inlier_ratio"] - 0.3) < 0.06
    prob.gt_pose = None
    assert not registry.get("oracle")().run(prob)[0][0].success


def test_imported_poses(tmp_path):
    prob, _ = synthetic_problem(9, n=50)
    q, t = R_to_quat_wxyz(prob.gt_pose.R), prob.gt_pose.t
    rows = [
        {"pair_id": prob.pair_id, "qw": q[0], "qx": q[1], "qy": q[2], "qz": q[3], "tx": t[0], "ty": t[1], "tz": t[2]},
        {"pair_id": "bad", "qw": np.nan, "qx": 0, "qy": 0, "qz": 0, "tx": 0, "ty": 0, "tz": 0},
    ]
    path = tmp_path / "poses.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    est = registry.get("imported")(csv=str(path))
    [[r]] = est.run(prob)
    assert r.success and pose_error(r.pose, prob.gt_pose).rotation_deg < 1e-4
    prob.pair_id = "bad"
    assert "NaN" in est.run(prob)[0][0].failure_reason
    prob.pair_id = "absent"
    assert "no imported pose" in est.run(prob)[0][0].failure_reason
    pd.DataFrame(rows).drop(columns="qw").to_csv(path, index=False)  # the file changed: re-read, checked
    r = est.run(prob)[0][0]
    assert not r.success and "missing columns" in r.failure_reason and str(path) in r.failure_reason


def test_prosac_samples_by_score():
    # synthetic scores favour inliers: with 10 iterations at 80% outliers, PROSAC finds the pose, uniform sampling not
    prob, _ = synthetic_problem(10, outliers=0.8)
    budget = {"min_iterations": 10, "max_iterations": 10}
    [[u]] = registry.get("lo_ransac_poselib")(**budget).run(prob, [{"threshold": 4.0}])
    [[p]] = registry.get("lo_ransac_poselib")(prosac=True, **budget).run(prob, [{"threshold": 4.0}])
    assert p.success and pose_error(p.pose, prob.gt_pose).rotation_deg < 0.1 and p.inliers > 90
    assert u.inliers < 10 and u.diagnostics["low_support"]


@pytest.mark.parametrize("name", ["lo_ransac_opencv", "magsac_pp"])
def test_opencv_usac_follows_the_problem_seed(name):
    """OpenCV's USAC ignores cv2.setRNGSeed; the seed reaches it through the order of the matches: the same seed
    gives the same pose, other seeds other samples (the spread over seeds is then measurable)."""
    poses = []
    for seed in (0, 1, 2, 3, 0):
        prob, _ = synthetic_problem(7, n=200, outliers=0.85, noise=2.0)
        prob.seed = seed
        [[r]] = registry.get(name)().run(prob, [{"threshold": 8}])
        assert r.success
        poses.append(np.r_[r.pose.R.ravel(), r.pose.t])
    assert np.array_equal(poses[0], poses[4])
    assert len({p.tobytes() for p in poses[:4]}) > 1
