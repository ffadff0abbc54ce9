"""Dense SIFT backend and image handling: against OpenCV's SIFT, grid placement, resizing with the camera."""

import numpy as np
import pytest
import torch
from helpers import SAMPLE

from nre.data.pairdata import PairData
from nre.features import get_backend
from nre.features.dsift import _CV_ORI, N_ORI, dense_sift, dense_sift_opencv, grid_centers
from nre.features.images import (
    imagenet_normalize,
    load_image,
    resize_image,
    resize_with_camera,
    scale_camera,
    to_tensor,
)
from nre.geometry import Camera, Pose, img_to_map, map_to_img


@pytest.fixture(scope="module")
def photo():
    import cv2
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (192, 144), interpolation=cv2.INTER_AREA)


def _gray(img):
    return img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def test_dsift_equals_opencv_sift_at_the_cell_centres(photo):
    """Stride 3 on 192 x 144 puts cell centres on whole pixels (OpenCV rounds keypoints): our torch descriptor of
    every cell matches OpenCV's SIFT computed at map_to_img(cell), and shifting OpenCV's keypoints by 1-2 px in x
    or y matches worse. Bin 9.6 px gives both the same pre-smoothing (OpenCV's sigma 1.6)."""
    gray = _gray(photo)
    scale, cx, cy = grid_centers((192, 144), 3)
    np.testing.assert_allclose(scale, [1 / 3, 1 / 3])
    np.testing.assert_allclose(cx, map_to_img(np.arange(64), 1 / 3))
    assert np.all(cx == np.round(cx))
    ours = dense_sift(torch.from_numpy(gray) / 255, cx, cy, 9.6)
    inner = (slice(None), slice(6, -6), slice(6, -6))  # away from the image border (padding differs)
    sims = {}
    for dx, dy in [(0, 0), (1, 0), (-1, 0), (2, 0), (-2, 0), (0, 1), (0, -1), (0, 2), (0, -2)]:
        cv = dense_sift_opencv(gray, cx + dx, cy + dy, 9.6)
        sims[(dx, dy)] = float((ours[inner] * cv[inner]).sum(0).mean())
    assert sims[(0, 0)] > 0.98, sims
    assert max(sims, key=sims.get) == (0, 0), sims
    assert all(sims[(0, 0)] - v > 0.001 for k, v in sims.items() if k != (0, 0)), sims


def test_dsift_grid_is_mirror_symmetric(photo):
    """Mirroring the image mirrors the descriptor grid exactly (columns reversed, x bins reversed, orientations
    reflected) only if each cell is centred where map_to_img says, for sizes that are not multiples of the stride.
    The coarse level (bin 16) runs on the image area-reduced by 2, exact under mirroring for even widths only; an odd
    width shifts the reduced pixel grid by one original pixel (interior cells then differ by ~0.02)."""
    for lv, W in (("coarse", 182), ("fine", 183)):  # 182 / 16 -> 11 columns, 183 / 4 -> 46: not multiples
        img = photo[:, :W]
        be = get_backend("dsift", fine_stride=4)
        f = be.extract(img, (lv,))[lv]
        g = be.extract(np.ascontiguousarray(img[:, ::-1]), (lv,))[lv]
        D, h, w = f.desc.shape
        assert (w, h) == (round(W / be.strides[lv]), round(144 / be.strides[lv]))
        assert W % be.strides[lv] != 0
        np.testing.assert_allclose(f.scale, [w / W, h / 144])
        flip_ori = [(4 - o) % N_ORI for o in range(N_ORI)]  # angle a -> 180 deg - a
        perm = np.array(
            [(by * 4 + (3 - bx)) * N_ORI + flip_ori[o] for by in range(4) for bx in range(4) for o in range(8)]
        )
        mirrored = f.desc[perm].flip(-1)
        np.testing.assert_allclose(g.desc.numpy(), mirrored.numpy(), atol=2e-4)


def test_opencv_impl_same_layout_and_sample_at_centres(photo):
    be_t = get_backend("dsift", coarse_stride=12, coarse_bin=9.6)
    be_c = get_backend("dsift", coarse_stride=12, coarse_bin=9.6, impl="opencv")
    ft = be_t.extract(photo, ("coarse",))["coarse"]
    fc = be_c.extract(photo, ("coarse",))["coarse"]
    assert ft.desc.shape == fc.desc.shape == (128, 12, 16)
    sim = (ft.desc * fc.desc).sum(0)[1:-1, 1:-1]
    assert float(sim.median()) > 0.95  # half-pixel centres: OpenCV rounds them
    assert len(_CV_ORI) == N_ORI
    # DenseFeatures.sample at a cell centre returns that cell's descriptor
    ij = np.array([[3, 2], [10, 7], [0, 0], [15, 11]])
    d = ft.sample(map_to_img(ij, ft.scale))
    np.testing.assert_allclose(d.numpy(), ft.desc[:, ij[:, 1], ij[:, 0]].T.numpy(), atol=1e-6)


def test_dsift_options_are_validated():
    for bad in ({"coarse_stride": 0}, {"temperature": -1}, {"impl": "cuda"}, {"fine_bin": float("nan")}):
        with pytest.raises(ValueError, match="dsift"):
            get_backend("dsift", **bad)
    with pytest.raises(TypeError):
        get_backend("dsift", bogus=1)
    with pytest.raises(ValueError, match="at least 8 px"):
        get_backend("dsift").extract(np.zeros((4, 4, 3), np.uint8))


def test_resize_moves_projections_with_the_content():
    """A horizontal / vertical ramp image is its own pixel coordinate: after resize_with_camera (area downscaling
    by 0.5 and an anisotropic resize), the image value at a 3D point's projection with the rescaled camera equals
    the value at its projection in the original (the ramp's value). Scaling without the half-pixel shift is
    0.5 px off."""
    W, H = 160, 120
    ramp = np.zeros((H, W, 3), np.float32)
    ramp[..., 0] = np.arange(W)[None, :]
    ramp[..., 1] = np.arange(H)[:, None]
    cam = Camera("SIMPLE_RADIAL", W, H, [150.0, 79.5, 59.5, -0.02])
    rng = np.random.default_rng(0)
    X = np.c_[rng.uniform(-0.4, 0.4, (200, 2)), np.full(200, 1.0)]
    uv, ok = cam.project(X, Pose.identity())
    uv = uv[ok & cam.in_image(uv, margin=3)]

    def at(img, p):  # exact bilinear interpolation (cv2.remap quantises coordinates to 1/32 px)
        x0, y0 = np.floor(p[:, 0]).astype(int), np.floor(p[:, 1]).astype(int)
        a, b = (p[:, 0] - x0)[:, None], (p[:, 1] - y0)[:, None]
        return (
            img[y0, x0] * (1 - a) * (1 - b)
            + img[y0, x0 + 1] * a * (1 - b)
            + img[y0 + 1, x0] * (1 - a) * b
            + img[y0 + 1, x0 + 1] * a * b
        )

    for size in ((80, 60), (100, 70)):  # isotropic, then anisotropic (SIMPLE_RADIAL -> OPENCV)
        small, cam2, scale = resize_with_camera(ramp, cam, size=size)
        assert cam2.size == size and small.shape[:2] == size[::-1]
        uv2, _ = cam2.project(X[ok][cam.in_image(cam.project(X[ok], Pose.identity())[0], margin=3)], Pose.identity())
        np.testing.assert_allclose(uv2, img_to_map(uv, scale), atol=1e-9)
        vals = at(small, uv2)[:, :2]
        # exact for an integer factor; a fractional area resize averages the ramp's pixel steps unevenly (< 0.1)
        np.testing.assert_allclose(vals, uv, atol=1e-3 if size == (80, 60) else 0.1)
        if size == (80, 60):
            naive = uv * scale  # the wrong convention
            assert np.abs(at(small, naive)[:, :2] - uv).mean() > 0.4
    assert scale_camera(cam, (100 / 160, 70 / 120)).model == "OPENCV"


def test_a_projection_lands_on_the_same_descriptor_after_resize():
    """The sample pair's target (a rendered photo, distorted camera): resize it by 0.5 with its camera; dense SIFT
    with half the stride and bin on the small image sees the same patches, so the descriptor sampled at a 3D point's
    projection (rescaled camera) matches the full-resolution one, and the backend's own ``max_size`` resize gives
    maps in the caller's pixel frame that sample to the same descriptors as the externally resized image."""
    pair = PairData.load_npz(SAMPLE)
    img = load_image(pair.target_image)
    cam = pair.target_camera
    uv, ok = cam.project(pair.points3d, pair.target_pose)
    ok &= cam.in_image(uv, margin=20)
    small, cam2, scale = resize_with_camera(img, cam, max_size=160)
    assert small.shape[:2] == (120, 160) and cam2.model == cam.model
    uv2, ok2 = cam2.project(pair.points3d, pair.target_pose)
    np.testing.assert_allclose(uv2[ok], img_to_map(uv[ok], scale), atol=1e-9)
    full = get_backend("dsift", coarse_stride=8, coarse_bin=8).extract(img, ("coarse",))["coarse"]
    half = get_backend("dsift", coarse_stride=4, coarse_bin=4).extract(small, ("coarse",))["coarse"]
    assert half.desc.shape == full.desc.shape
    a, b = full.sample(uv[ok]), half.sample(uv2[ok])
    sim = (a * b).sum(1)
    assert float(sim.median()) > 0.85, float(sim.median())  # measured 0.91
    # the nearest cell of the small image's map to the full-resolution descriptor is the projection's cell
    D, h, w = half.desc.shape
    nn = (a @ half.desc.reshape(D, -1)).argmax(1).numpy()
    cell = np.round(img_to_map(uv2[ok], half.scale)).astype(int)
    hit = (np.abs(np.c_[nn % w, nn // w] - cell) <= 1).all(1)
    assert hit.mean() > 0.85, hit.mean()  # measured 0.96
    # max_size inside the backend: maps scaled to the caller's image, same descriptors as the external resize
    inner = get_backend("dsift", coarse_stride=4, coarse_bin=4, max_size=160).extract(img, ("coarse",))["coarse"]
    assert inner.image_size == (320, 240)
    np.testing.assert_allclose(inner.scale, half.scale * scale)
    np.testing.assert_allclose(inner.sample(uv[ok]).numpy(), b.numpy(), atol=1e-5)


def test_tensor_helpers(photo):
    x = to_tensor(photo)
    assert x.shape == (3, 144, 192) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    n = imagenet_normalize(x[None])[0]
    np.testing.assert_allclose(float(n[0].mean()), (float(x[0].mean()) - 0.485) / 0.229, rtol=1e-5)
    same, s = resize_image(photo, max_size=500)
    assert same is photo and np.all(s == 1)
    with pytest.raises(ValueError, match="cannot read"):
        load_image("/nonexistent/x.jpg")


def test_triangle_pool_running_sums_equal_the_convolution():
    from nre.features.dsift import _separable, triangle_pool

    x = torch.rand(3, 37, 53)
    for b in (12.0, 16.0, 20.0):
        t = torch.arange(-int(b), int(b) + 1, dtype=torch.float32)
        ref = _separable(x[None], torch.clamp(1 - t.abs() / b, min=0), "zeros")[0]
        np.testing.assert_allclose(triangle_pool(x, b).numpy(), ref.numpy(), rtol=1e-5, atol=1e-4)
