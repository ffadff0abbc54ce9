"""Featuremetric pose refinement (Eq. 12) on dense SIFT descriptors of a rendered photograph with a known pose."""

import numpy as np
import pytest

from baselines.fpr import refine_featuremetric, robust
from nre.data.synth import Face, _photo, look_at, render
from nre.features import get_backend
from nre.features.access import PairFeatures
from nre.geometry import Camera, Pose, pose_error, so3_exp
from nre.pair import PairData


@pytest.fixture(scope="module")
def plane_pair(tmp_path_factory):
    import cv2

    d = tmp_path_factory.mktemp("plane")
    tex = _photo("astronaut")
    wall = Face(np.array([-6.0, 0.0, 8.0]), np.array([12.0, 0, 0]), np.array([0, 0, -8.0]), tex)
    ground = Face(np.array([-10.0, 10.0, 0.0]), np.array([20.0, 0, 0]), np.array([0, -10.0, 0]), _photo("brick"))
    cam = Camera("PINHOLE", 320, 240, [260, 260, 159.5, 119.5])
    src_pose = look_at(np.array([1.0, -14.0, 4.0]), np.array([0.0, 0.0, 4.0]))
    tgt_pose = look_at(np.array([-3.0, -13.0, 3.5]), np.array([0.5, 0.0, 4.2]))
    for name, pose in (("src.png", src_pose), ("tgt.png", tgt_pose)):
        img, _ = render([wall, ground], cam, pose)
        cv2.imwrite(str(d / name), cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR))
    rng = np.random.default_rng(0)
    pts = wall.origin + rng.uniform(0.05, 0.95, (400, 1)) * wall.u + rng.uniform(0.05, 0.95, (400, 1)) * wall.v
    return PairData("plane", d / "src.png", d / "tgt.png", pts, cam, cam, src_pose, tgt_pose)


@pytest.mark.parametrize("loss", ["cauchy", "geman_mcclure", "huber"])
def test_fpr_converges_from_5deg(plane_pair, loss):
    feats = PairFeatures(get_backend("dsift"), plane_pair)
    gt = plane_pair.target_pose
    ax = np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2])
    dR = so3_exp(ax * np.radians(5.5))
    start = Pose(dR @ gt.R, dR @ gt.t)  # rotated about the camera centre: 5.5 deg off
    assert pose_error(start, gt).rotation_deg >= 5.0
    pose = start
    for lv in ("coarse", "fine"):
        src = feats.raw_source_descriptors(lv).numpy().astype(float)
        fmap = feats.target_map(lv).numpy().astype(float)
        pose, it, _ = refine_featuremetric(
            pose, plane_pair.points3d, plane_pair.target_camera, src, fmap, feats.target_scale(lv), loss, 0.4
        )
    assert pose_error(pose, gt).rotation_deg < 0.5


def test_robust_losses_and_weights_match_finite_differences():
    s = np.linspace(0.01, 3, 50)
    for loss in ("cauchy", "geman_mcclure", "huber"):
        rho, w = robust(loss, s, 0.5)
        num = (robust(loss, s + 1e-6, 0.5)[0] - robust(loss, s - 1e-6, 0.5)[0]) / 2e-6
        np.testing.assert_allclose(w, num, rtol=1e-4, atol=1e-6)
        assert np.all(np.diff(rho) > 0)
    with pytest.raises(ValueError, match="unknown robust loss"):
        robust("l7", s, 1.0)


def test_fpr_estimator_sweep_shares_initialisation(plane_pair):
    from baselines import registry
    from nre.cache import build_problem

    prob = build_problem(plane_pair.capped(300, 0), get_backend("dsift"), 0)
    est = registry.get("fpr")()
    settings = [{"loss": "cauchy", "scale": 0.4}, {"loss": "huber", "scale": 0.4}]
    out = est.run(prob, settings)
    assert len(out) == 2 and all(r[0].success for r in out)
    assert out[0][0].diagnostics["start_R"] == out[1][0].diagnostics["start_R"]
    assert pose_error(out[0][0].pose, plane_pair.target_pose).rotation_deg < 1.0
