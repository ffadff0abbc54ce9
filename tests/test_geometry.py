import numpy as np
import pycolmap
import pytest

from nre.geometry import Camera, Pose, img_to_map, map_scale, map_to_img, pose_error, so3_exp

MODELS = {
    "SIMPLE_PINHOLE": [500.0, 320.5, 240.5],
    "PINHOLE": [510.0, 490.0, 300.0, 250.0],
    "SIMPLE_RADIAL": [500.0, 320.0, 240.0, -0.08],
    "RADIAL": [500.0, 320.0, 240.0, -0.05, 0.01],
    "OPENCV": [520.0, 515.0, 330.0, 235.0, -0.1, 0.02, 0.001, -0.002],
}


def random_pose(rng):
    return Pose(so3_exp(rng.normal(size=3)), rng.normal(size=3))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_projection_matches_pycolmap(model):
    rng = np.random.default_rng(0)
    pc = pycolmap.Camera(model=model, width=640, height=480, params=MODELS[model])
    cam = Camera.from_pycolmap(pc)
    pose = random_pose(rng)
    Xc = rng.uniform([-2, -2, 2], [2, 2, 8], size=(500, 3))
    X = pose.inverse().transform(Xc)
    uv, valid = cam.project(X, pose)
    assert valid.all()
    ref = np.asarray(pc.img_from_cam(Xc)) - 0.5  # COLMAP's pixel centres are at +0.5
    np.testing.assert_allclose(uv, ref, atol=1e-8)
    # round trip through pycolmap
    np.testing.assert_allclose(cam.to_pycolmap().params, pc.params)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_projection_jacobian_finite_differences(model):
    rng = np.random.default_rng(1)
    cam = Camera(model, 640, 480, MODELS[model])
    pose = random_pose(rng)
    X = pose.inverse().transform(rng.uniform([-2, -2, 2], [2, 2, 8], size=(50, 3)))
    uv, valid, J = cam.project_with_jacobian(X, pose)
    eps = 1e-6
    for k in range(6):
        d = np.zeros(6)
        d[k] = eps
        up, _ = cam.project(X, pose.perturb(d))
        um, _ = cam.project(X, pose.perturb(-d))
        np.testing.assert_allclose(J[:, :, k], (up - um) / (2 * eps), rtol=1e-5, atol=1e-4)


def test_undistort_inverts_projection():
    rng = np.random.default_rng(2)
    cam = Camera("OPENCV", 640, 480, MODELS["OPENCV"])
    Xc = rng.uniform([-1, -1, 3], [1, 1, 6], size=(100, 3))
    uv, _ = cam.project_cam(Xc)
    np.testing.assert_allclose(cam.undistort_points(uv), Xc[:, :2] / Xc[:, 2:], atol=1e-7)


def test_behind_camera_is_invalid():
    cam = Camera("PINHOLE", 640, 480, [500, 500, 320, 240])
    _, valid = cam.project_cam(np.array([[0, 0, -1.0], [0, 0, 1.0]]))
    assert valid.tolist() == [False, True]


def test_image_map_round_trip_and_resize_consistency():
    rng = np.random.default_rng(3)
    xy = rng.uniform(-0.5, 639.5, size=(100, 2))
    s = map_scale((640, 480), (40, 30))
    np.testing.assert_allclose(s, [1 / 16, 1 / 16])
    np.testing.assert_allclose(map_to_img(img_to_map(xy, s), s), xy)
    # cell centres: map cell 0 covers image pixels -0.5..15.5, its centre is pixel 7.5
    np.testing.assert_allclose(map_to_img(np.zeros(2), s), [7.5, 7.5])
    # projecting with the scaled camera equals mapping the projection
    cam = Camera("SIMPLE_RADIAL", 640, 480, MODELS["SIMPLE_RADIAL"])
    pose = random_pose(rng)
    X = pose.inverse().transform(rng.uniform([-1, -1, 3], [1, 1, 6], size=(20, 3)))
    small = cam.scaled(0.5)
    np.testing.assert_allclose(small.project(X, pose)[0], img_to_map(cam.project(X, pose)[0], 0.5), atol=1e-9)


def test_pose_error():
    rng = np.random.default_rng(4)
    gt = random_pose(rng)
    R_off = so3_exp(np.array([0, 0, np.radians(3.0)]))
    est = Pose(R_off @ gt.R, gt.t + [0.3, 0.4, 0.0])
    e = pose_error(est, gt)
    assert e.rotation_deg == pytest.approx(3.0, abs=1e-9)
    assert e.translation == pytest.approx(0.5)
    assert np.isinf(pose_error(None, gt).rotation_deg)


def test_R_to_quat_matches_scipy_and_inverts_quat_to_R():
    from scipy.spatial.transform import Rotation

    from nre.geometry import R_to_quat_wxyz, quat_wxyz_to_R

    rng = np.random.default_rng(0)
    Rs = list(Rotation.random(200, random_state=1).as_matrix())
    Rs += [np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])]  # 0 and 180 deg
    Rs += [Rotation.from_rotvec(np.pi * a / np.linalg.norm(a)).as_matrix() for a in rng.normal(size=(20, 3))]
    for R in Rs:
        q = R_to_quat_wxyz(R)
        x, y, z, w = Rotation.from_matrix(R).as_quat()
        want = np.array([w, x, y, z]) * (1 if w >= 0 else -1)
        assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        # at w = 0 (180 deg) q and -q are the same rotation: compare up to sign there
        assert min(np.abs(q - want).max(), np.abs(q + want).max() if abs(w) < 1e-9 else 1) < 1e-10, (R, q, want)
        np.testing.assert_allclose(quat_wxyz_to_R(q), R, atol=1e-10)
    # a slightly non-orthonormal estimate (float32 round trip) still gives scipy's nearest rotation to rounding
    R = (Rs[0] + 1e-7 * rng.normal(size=(3, 3))).astype(np.float32).astype(float)
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    np.testing.assert_allclose(np.abs(R_to_quat_wxyz(R)), np.abs([w, x, y, z]), atol=1e-6)
