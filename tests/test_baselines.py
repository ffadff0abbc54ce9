"""RE baselines on synthetic matches with known poses; the registry; the never-raise contract."""

import sys
import textwrap

import numpy as np
import pytest

from baselines import registry
from baselines.base import Estimator
from nre.geometry import Camera, Pose, pose_error, so3_exp
from nre.problem import EstimateResult, Matches, Problem

RE = ["lo_ransac_poselib", "lo_ransac_pycolmap", "lo_ransac_opencv", "gc_ransac", "magsac_pp"]


def synthetic_matches(seed, n=500, outliers=0.5, noise=1.0, distortion=False):
    rng = np.random.default_rng(seed)
    W, H = 640, 480
    if distortion:
        cam = Camera("OPENCV", W, H, [500, 500, 319.5, 239.5, -0.1, 0.02, 0.001, -0.001])
    else:
        cam = Camera("PINHOLE", W, H, [500, 500, 319.5, 239.5])
    pose = Pose(so3_exp(rng.normal(0, 0.3, 3)), rng.normal(0, 1, 3))
    xy = np.c_[rng.uniform(0, W - 1, n), rng.uniform(0, H - 1, n)]
    depth = rng.uniform(5, 15, n)
    nrm = cam.undistort_points(xy)
    X = pose.inverse().transform(np.c_[nrm * depth[:, None], depth])
    obs = xy + rng.normal(0, noise, (n, 2))
    out = rng.random(n) < outliers
    obs[out] = np.c_[rng.uniform(0, W, out.sum()), rng.uniform(0, H, out.sum())]
    prob = Problem("syn", X, cam, seed, gt_pose=pose, matches=Matches(obs, np.ones(n), np.ones(n)))
    return prob, float(np.median(depth))


@pytest.mark.parametrize("name", RE)
@pytest.mark.parametrize("outliers", [0.0, 0.5, 0.8])
def test_re_estimators_accurate(name, outliers):
    prob, depth = synthetic_matches(1, outliers=outliers)
    est = registry.get(name)()
    [[res]] = est.run(prob, [{"threshold": 4.0}])
    assert res.success, res.failure_reason
    err = pose_error(res.pose, prob.gt_pose)
    assert err.rotation_deg < 0.1 and err.translation < 0.005 * depth, (name, err)
    assert res.inliers > 0.5 * (1 - outliers) * 500


def test_distortion_is_handled_once_for_all():
    prob, depth = synthetic_matches(2, outliers=0.3, distortion=True)
    for name in RE:
        [[res]] = registry.get(name)().run(prob, [{"threshold": 4.0}])
        assert pose_error(res.pose, prob.gt_pose).rotation_deg < 0.1, name


@pytest.mark.parametrize("name", ["lo_ransac_poselib", "lo_ransac_pycolmap", "lo_ransac_opencv"])
def test_threshold_semantics_in_pixels(name):
    # exact matches plus 100 matches 3 px off: inliers at a 4 px threshold, outliers at 2 px
    prob, _ = synthetic_matches(3, n=400, outliers=0.0, noise=0.0)
    xy = prob.matches.xy.copy()
    ang = np.random.default_rng(0).uniform(0, 2 * np.pi, 100)
    xy[:100] += 3.0 * np.c_[np.cos(ang), np.sin(ang)]
    prob.matches = Matches(xy, np.ones(400))
    est = registry.get(name)()
    [[r4], [r2]] = est.run(prob, [{"threshold": 4.0}, {"threshold": 2.0}])
    assert r4.inliers >= 395, r4.inliers
    assert 295 <= r2.inliers <= 305, r2.inliers


@pytest.mark.parametrize("name", ["lo_ransac_poselib", "lo_ransac_pycolmap", "lo_ransac_opencv", "magsac_pp"])
def test_same_seed_same_result(name):
    prob, _ = synthetic_matches(4, outliers=0.6)
    a = registry.get(name)().run(prob, [{"threshold": 6.0}])[0][0]
    b = registry.get(name)().run(prob, [{"threshold": 6.0}])[0][0]
    np.testing.assert_allclose(a.pose.R, b.pose.R, atol=1e-12)


def test_pure_outliers_flag_low_support():
    prob, _ = synthetic_matches(5, n=200, outliers=1.0)
    est = registry.get("lo_ransac_poselib")(min_inliers=30)
    [[r]] = est.run(prob, [{"threshold": 2.0}])
    assert r.diagnostics["low_support"] and r.success
    [[r]] = registry.get("lo_ransac_poselib")(min_inliers=30, fail_on_low_support=True).run(prob, [{"threshold": 2.0}])
    assert not r.success and "low support" in r.failure_reason


def test_oracle_upper_bound():
    prob, _ = synthetic_matches(6, outliers=0.7)
    [[r]] = registry.get("oracle")().run(prob)
    assert r.success and pose_error(r.pose, prob.gt_pose).rotation_deg < 0.1


def test_registry_lists_paper_estimators():
    names = set(registry.available())
    assert {"nre_c2f", "nre_single", "re_gauss", "oracle", *RE} <= names
    with pytest.raises(KeyError, match="available"):
        registry.get("no_such_estimator")


def test_toy_estimator_module_is_discovered_and_failures_are_recorded(tmp_path, monkeypatch):
    pkg = tmp_path / "toypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "toy.py").write_text(
        textwrap.dedent("""
        from baselines.base import Estimator
        from nre.problem import EstimateResult

        class Toy(Estimator):
            name = "toy"
            grid = {"k": [1, 2]}

            def estimate_many(self, problem, settings):
                if problem.pair_id == "boom":
                    raise RuntimeError("exploded")
                return [[EstimateResult(True, problem.gt_pose, 0.0)] for _ in settings]
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = registry.get("toypkg.toy:Toy")
    prob, _ = synthetic_matches(0, n=10)
    out = cls().run(prob)
    assert len(out) == 2 and out[0][0].success
    prob.pair_id = "boom"
    out = cls().run(prob)
    assert not out[0][0].success and "exploded" in out[0][0].failure_reason
    sys.modules.pop("toypkg.toy", None)


def test_unknown_option_rejected():
    class E(Estimator):
        name = "e"
        defaults = {"a": 1}

        def estimate_many(self, problem, settings):
            return [[EstimateResult(False)] for _ in settings]

    with pytest.raises(ValueError, match="unknown options"):
        E(b=2)
    assert E().settings() == [{}]


def test_imported_poses_and_nan_and_timeout(tmp_path):
    import pandas as pd

    from nre.geometry import R_to_quat_wxyz

    prob, _ = synthetic_matches(7, n=50)
    q = R_to_quat_wxyz(prob.gt_pose.R)
    t = prob.gt_pose.t
    pd.DataFrame(
        [
            {"pair_id": "syn", "qw": q[0], "qx": q[1], "qy": q[2], "qz": q[3], "tx": t[0], "ty": t[1], "tz": t[2]},
            {"pair_id": "nan", "qw": np.nan, "qx": 0, "qy": 0, "qz": 0, "tx": 0, "ty": 0, "tz": 0},
        ]
    ).to_csv(tmp_path / "poses.csv", index=False)
    est = registry.get("imported")(csv=str(tmp_path / "poses.csv"))
    [[r]] = est.run(prob)
    assert r.success and pose_error(r.pose, prob.gt_pose).rotation_deg < 1e-4
    prob.pair_id = "nan"
    assert not est.run(prob)[0][0].success
    prob.pair_id = "absent"
    assert "no imported pose" in est.run(prob)[0][0].failure_reason
    # a soft time-out voids the results
    prob.pair_id = "syn"
    [[r]] = registry.get("lo_ransac_poselib")(timeout_s=0.0).run(prob, [{"threshold": 4.0}])
    assert not r.success and "time-out" in r.failure_reason
