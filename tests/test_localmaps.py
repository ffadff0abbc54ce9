"""Local fine maps of coarse-to-fine NRE against a dense fine map whose descriptors are known: scaled by the coarse
mass of the window's footprint, a local window's probabilities are the dense fine map's (``mass``), or that divided
by S (``side``, the reference's formula) or S^2 (``cells``, the default); the window mass against a brute-force
pixel sum."""

import numpy as np
import pytest
import torch

from nre.estimators.testing import sparse_from_logprob
from nre.geometry import Camera, Pose, img_to_map
from nre.maps.dense import SparseLossMaps, dense_maps, log_omega
from nre.maps.local import DescriptorFineSource, build_local_maps, local_fine_maps, window_mass
from nre.solver.options import NreOptions

W, H, CS, FS = 256, 192, 16, 4  # image, coarse and fine strides: a coarse cell is exactly 4 x 4 fine cells


class _Features:
    """Known fine descriptors: random unit target descriptors, each source descriptor a sharpened copy of the
    target descriptor at its point's true cell plus noise, so every map has a peak and a spread-out tail."""

    def __init__(self, cells, seed=0, dim=32, beta=8.0):
        rng = np.random.default_rng(seed)
        self.h, self.w = H // FS, W // FS
        t = rng.normal(size=(dim, self.h, self.w))
        self.tgt = torch.as_tensor(t / np.linalg.norm(t, axis=0), dtype=torch.float32)
        s = self.tgt[:, cells[:, 1], cells[:, 0]].T.numpy() * beta + rng.normal(0, 1.0, (len(cells), dim))
        self.src = torch.as_tensor(s, dtype=torch.float32)

    def source_descriptors(self, level):
        return self.src

    def target_map(self, level):
        return self.tgt

    def target_scale(self, level):
        return np.array([self.w / W, self.h / H])


def _setting(S=16, n=12, seed=0):
    """Points whose reprojections are at the centre of (S / 4) x (S / 4) coarse-cell blocks (so the S-cell fine
    windows align with coarse cells), their dense fine maps, and the coarse maps that are exactly those maps pooled
    per coarse cell (no coarse truncation: every coarse cell's mass counts)."""
    rng = np.random.default_rng(seed)
    cam = Camera("PINHOLE", W, H, [200.0, 200.0, (W - 1) / 2, (H - 1) / 2])
    k = S * FS // CS  # coarse cells per window side
    a = rng.integers(1, W // CS - k, n)  # windows 8 px inside the image: not moved by the margin
    b = rng.integers(1, H // CS - k, n)
    uv = np.c_[CS * a, CS * b] + (S * FS / 2 - 0.5)  # block of pixels 16 a .. 16 a + S * FS - 1
    depth = rng.uniform(4, 10, n)
    X = np.c_[(uv - [cam.cx, cam.cy]) / 200.0 * depth[:, None], depth]
    pose = Pose(np.eye(3), np.zeros(3))
    fs = np.array([(W // FS) / W, (H // FS) / H])
    cells = np.round(img_to_map(uv + rng.uniform(-20, 20, (n, 2)), fs)).astype(int)
    F = _Features(cells, seed)
    fine, _ = dense_maps(F.src, F.tgt, 1.0, fs)
    full = torch.log_softmax((F.src @ F.tgt.reshape(F.tgt.shape[0], -1)).double(), -1).numpy()
    p = np.exp(full).reshape(n, H // CS, CS // FS, W // CS, CS // FS).sum((2, 4))  # pooled per coarse cell
    cscale = np.array([(W // CS) / W, (H // CS) / H])
    coarse = sparse_from_logprob(np.log(p), cscale, trunc=1e9)
    return cam, pose, X, DescriptorFineSource(F, "fine"), fine, full.reshape(n, H // FS, W // FS), coarse


def _check_window_cells(local, fine, full, shift, cam, pose, X, S):
    """Every stored local cell holds the dense fine map's loss -ln C_f(q) plus ``shift``; the cells stored are
    those of the dense map truncated ``shift`` lower, up to float rounding at the truncation level."""
    assert local.trunc == pytest.approx(fine.trunc)  # truncation at the full fine grid's ln|Omega-ring|
    d = local.to_dense(dtype=np.float64)
    stored = d < local.trunc
    np.testing.assert_allclose(d[stored], -full[stored] + shift, atol=2e-4)
    uv, _ = cam.project(X, pose)
    pf = img_to_map(uv, local.scale)
    for n in range(len(X)):
        x0, y0 = np.round(pf[n] - (S - 1) / 2).astype(int)
        win = -full[n, y0 : y0 + S, x0 : x0 + S] + shift
        differ = (win < fine.trunc) != stored[n, y0 : y0 + S, x0 : x0 + S]
        assert (np.abs(win[differ] - fine.trunc) < 1e-3).all()
    return stored.sum()


def test_local_maps_against_the_dense_fine_maps():
    """``mass`` over the window's footprint reproduces the dense fine map; ``side`` / ``cells`` are it divided by S
    / S^2 (a stricter truncation); ``corners`` takes less than the footprint's mass when the window covers more
    than 2 x 2 coarse cells (here 4 x 4: fine stride 4, S = 16)."""
    cam, pose, X, src, fine, full, coarse = _setting(S=16)
    counts = [
        _check_window_cells(
            build_local_maps(src, coarse, pose, X, cam, 16, 8.0, norm, "window"),
            fine,
            full,
            k * np.log(16),
            cam,
            pose,
            X,
            16,
        )
        for norm, k in (("mass", 0), ("side", 1), ("cells", 2))
    ]
    assert counts[0] > counts[1] > counts[2] > 0
    corners = build_local_maps(src, coarse, pose, X, cam, 16, 8.0, "mass", "corners").to_dense()
    ok = corners < fine.trunc
    assert (corners[ok] > -full[ok] + 0.05).all()  # the 2 x 2 corner mass is smaller than the 4 x 4 footprint's


def test_default_and_reference_local_maps_in_the_references_geometry():
    """In the reference's geometry the window's footprint is the 2 x 2 coarse cells around the reprojection (here
    S = 8 fine cells at stride 4 = 2 coarse cells at stride 16), so ``corners`` is the footprint's mass: the default
    (``cells``) is the dense fine map divided by S^2, the reference's formula (``side``) divided by S."""
    o = NreOptions()
    assert (o.local_norm, o.mass_region, o.window) == ("cells", "corners", 16)
    cam, pose, X, src, fine, full, coarse = _setting(S=8)
    for norm, k in ((o.local_norm, 2), ("side", 1)):
        local = build_local_maps(src, coarse, pose, X, cam, 8, o.margin_px, norm, o.mass_region)
        assert _check_window_cells(local, fine, full, k * np.log(8), cam, pose, X, 8) > 0


def test_window_mass_is_the_coarse_mass_under_the_window_footprint():
    """Unaligned windows, coarse stride 16 and 8, against the coarse pmf spread uniformly over its pixels and
    summed over the window's pixels (pixel p of cell i: map_to_img edges)."""
    rng = np.random.default_rng(3)
    for cs in (16, 8):
        h, w = H // cs, W // cs
        logits = rng.normal(0, 2.0, (6, h, w))
        logp = logits - np.log(np.exp(logits).sum((1, 2), keepdims=True))
        maps = sparse_from_logprob(logp, np.array([w / W, h / H]), trunc=1e9)
        fscale = np.array([(W // FS) / W, (H // FS) / H])
        x0 = rng.integers(-3, W // FS - 10, 6)
        y0 = rng.integers(-3, H // FS - 10, 6)
        got = window_mass(maps, x0, y0, 16, fscale)
        px = np.exp(logp).repeat(cs, 1).repeat(cs, 2) / cs**2  # per pixel
        want = []
        for n in range(6):
            lo = FS * np.array([x0[n], y0[n]])  # first pixel of the window (fine cell i: pixels 4 i .. 4 i + 3)
            hi = lo + 16 * FS
            want.append(px[n, max(lo[1], 0) : hi[1], max(lo[0], 0) : hi[0]].sum())
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_truncated_coarse_cells_carry_no_mass_and_bad_options_are_named():
    maps = SparseLossMaps((2, 2), [0, 1], [0], [0.1], log_omega(2, 2), np.array([1 / 16, 1 / 16]))
    got = window_mass(maps, np.array([0]), np.array([0]), 8, np.array([0.25, 0.25]))
    assert got[0] == pytest.approx(np.exp(-0.1), rel=1e-6)  # cells (1, 0), (0, 1), (1, 1) are truncated: 0
    logp = np.full((1, 4, 4), -np.log(16.0))
    with pytest.raises(ValueError, match="renamed"):
        local_fine_maps(
            logp, np.zeros(1, int), np.zeros(1, int), np.ones(1, bool), np.ones(1), (8, 8), 1.0, "reference"
        )
    with pytest.raises(ValueError, match="mass_region"):
        build_local_maps(None, maps, None, np.zeros((1, 3)), None, 4, 0.0, "mass", "box")


def test_coarse_mass_reads_the_sparse_maps_as_the_dense_ones():
    """coarse_mass reads the 2 x 2 cells around each reprojection from the sparse maps; a dense copy of the maps
    holds the same values: same masses, bit for bit, points outside the map and behind the camera included."""
    from nre.estimators.testing import dense_coarse_mass, make_problem
    from nre.geometry import Pose
    from nre.maps.local import coarse_mass

    P = make_problem(11, n=300, outlier_ratio=0.5)
    maps, cam, X = P.coarse, P.camera, P.points3d
    pose = Pose(P.pose.R, P.pose.t + np.array([0.3, -0.2, 0.0]))

    got = coarse_mass(maps, pose, X, cam)
    ref = dense_coarse_mass(maps, pose, X, cam)
    assert np.array_equal(got, ref) and got.dtype == ref.dtype
    assert (got > 0).sum() > 50 and (got == 0).sum() > 0
