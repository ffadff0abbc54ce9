"""The embedded default: MegaDepth in a box.

``generate(out, preset, seed)`` writes scenes in the undistorted MegaDepth layout::

    OUT/<scene>/images/*.jpg        rendered photographs
    OUT/<scene>/sparse/             COLMAP model (PINHOLE): SIFT tracks triangulated and bundle-adjusted
    OUT/<scene>/truth/              COLMAP model with the renderer's true poses (and the tracks triangulated with them)
    OUT/<scene>/noise.json          how far the SfM model is from the truth (the benchmark's noise floor)
    OUT/<scene>/scene.json          completion manifest: generator version, preset parameters, seed, file sizes
    OUT/scenes.yaml                 the scenes of each split (train / tuning / test)

Resumable: each scene is generated in a staging folder ``OUT/.partial/<pid>/<scene>`` and renamed into place once
complete, its ``scene.json`` written last inside it, so a folder ``OUT/<scene>`` with a matching manifest is a
finished scene. A rerun after a kill keeps every such scene (same generator version, seed, image count, feature
budget, files of the recorded sizes) and generates only the others; a scene folder without a matching manifest
(killed before this existed, another seed or generator version) is regenerated.

Each scene is a landmark of textured planes and boxes (facades, ground, occluding panels) seen by cameras at varied
distances, heights, headings and focal lengths, with photometric changes. Textures are photographs bundled with
scikit-image (no download) plus procedural ones; photo sources are split by scene split so that no texture of a test
or tuning scene appears in a training scene. The SfM model is made as MegaDepth's was: SIFT features, matching of
the image pairs that overlap, triangulation, bundle adjustment (pycolmap).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from nre.errors import OptionError, UnknownNameError
from nre.geometry import Camera, Pose
from nre.progress import duration
from nre.seeding import rng_for

log = logging.getLogger("nre.synth")

# photo textures bundled in the scikit-image wheel, split by scene split (disjoint)
PHOTOS = {
    "train": ["astronaut", "coffee", "chelsea", "hubble_deep_field", "immunohistochemistry", "coins", "page", "moon"],
    "tuning": ["cat", "clock", "text"],
    "test": ["rocket", "camera", "horse", "retina", "cell", "colorwheel"],
}
GROUND = {"train": ["grass"], "tuning": ["gravel"], "test": ["gravel", "brick"]}


@dataclass(frozen=True)
class Preset:
    n_scenes: dict  # split -> number of scenes
    n_images: dict  # split -> images per scene
    max_features: int = 2000
    match_neighbours: int = 10  # each image is matched with its most overlapping images (see build_sfm)


PRESETS = {
    "tiny": Preset({"train": 1, "tuning": 1, "test": 1}, {"train": 8, "tuning": 8, "test": 10}, 1500),
    "quick": Preset({"train": 1, "tuning": 1, "test": 2}, {"train": 14, "tuning": 14, "test": 20}, 2000),
    "default": Preset({"train": 12, "tuning": 2, "test": 10}, {"train": 30, "tuning": 40, "test": 60}, 4000),
}

# Version of what this module generates. Bump it with any change that alters generated scenes (images, SfM models,
# truth): committed references made on generated scenes record it (results/*/provenance.json, "synth_generator"),
# and tests/test_regress.py then fails until each of them is rerun and updated, so no reference silently keeps
# numbers from scenes the code no longer makes.
GENERATOR_VERSION = 1


# ----------------------------------------------------------------------------------------------- textures
def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = img.astype(np.float64)
        img = (255 * (img - img.min()) / max(np.ptp(img), 1e-9)).astype(np.uint8)
    return np.ascontiguousarray(img)


def _procedural(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """A facade-like texture: window grid with colour noise and multi-scale blobs."""
    base = rng.uniform(60, 200, size=3)
    noise = sum(
        cv2.resize(rng.normal(0, 1, (s, s, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC) * a
        for s, a in ((4, 30), (16, 20), (64, 12), (256, 8))
    )
    img = base + noise
    nx, ny = rng.integers(3, 8), rng.integers(3, 8)
    cx, cy = size / nx, size / ny
    win = rng.uniform(0, 80, size=3)
    for i in range(nx):
        for j in range(ny):
            if rng.random() < 0.85:
                x0, y0 = int(i * cx + 0.2 * cx), int(j * cy + 0.25 * cy)
                x1, y1 = int((i + 0.8) * cx), int((j + 0.8) * cy)
                img[y0:y1, x0:x1] = win + rng.normal(0, 15, 3) + noise[y0:y1, x0:x1] * 0.5
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- geometry
@dataclass
class Face:
    origin: np.ndarray  # (3,) corner of texture pixel (0, 0)
    u: np.ndarray  # (3,) world vector along texture x (whole width)
    v: np.ndarray  # (3,) world vector along texture y (whole height)
    texture: np.ndarray  # (th, tw, 3) uint8

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.u, self.v)
        return n / np.linalg.norm(n)

    def samples(self, k: int = 12) -> np.ndarray:
        a, b = np.meshgrid((np.arange(k) + 0.5) / k, (np.arange(k) + 0.5) / k)
        return self.origin + a.reshape(-1, 1) * self.u + b.reshape(-1, 1) * self.v


def _tile(tex: np.ndarray, reps_x: int, reps_y: int, max_px: int = 2048) -> np.ndarray:
    t = np.tile(tex, (max(1, reps_y), max(1, reps_x), 1))
    s = min(1.0, max_px / max(t.shape[:2]))
    if s < 1:
        t = cv2.resize(t, (int(t.shape[1] * s), int(t.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return t


def _box(center, size, yaw, textures) -> list[Face]:
    """Four vertical facades and a roof of a box standing on the ground (z up)."""
    sx, sy, sz = size
    c, s = np.cos(yaw), np.sin(yaw)
    ex, ey, ez = np.array([c, s, 0.0]) * sx, np.array([-s, c, 0.0]) * sy, np.array([0, 0, sz])
    p = np.array([center[0], center[1], 0.0]) - ex / 2 - ey / 2
    corners = [p, p + ex, p + ex + ey, p + ey]
    faces = []
    for i in range(4):
        a, b = corners[i], corners[(i + 1) % 4]
        tex = textures[i % len(textures)]
        # texture x along the wall, y downwards from the top edge; outward normal
        faces.append(Face(a + ez, b - a, -ez, tex))
    faces.append(Face(p + ez, ex, ey, textures[-1]))
    return faces


def make_scene(rng: np.random.Generator, split: str, photos: dict) -> list[Face]:
    ground_tex = photos[GROUND[split][rng.integers(len(GROUND[split]))]]
    ground = Face(np.array([-30.0, 30, 0]), np.array([60.0, 0, 0]), np.array([0, -60.0, 0]), _tile(ground_tex, 6, 6))
    faces = [ground]
    pool = [photos[n] for n in PHOTOS[split]]
    n_boxes = rng.integers(3, 6)
    placed = []
    for _ in range(n_boxes * 4):
        if len(placed) == n_boxes:
            break
        size = rng.uniform([3, 3, 3], [9, 9, 10])
        ctr = rng.uniform(-8, 8, size=2)
        if any(np.linalg.norm(ctr - q) < (max(size[:2]) + m) / 1.6 for q, m in placed):
            continue
        placed.append((ctr, max(size[:2])))
        texs = []
        for _ in range(2):
            if rng.random() < 0.55:
                t = pool[rng.integers(len(pool))]
                texs.append(_tile(t, int(rng.integers(1, 3)), int(rng.integers(1, 3))))
            else:
                texs.append(_procedural(rng))
        faces += _box(ctr, size, rng.uniform(0, np.pi), texs)
    # occluding panels: thin vertical boards between the landmark and the cameras
    for _ in range(rng.integers(2, 5)):
        ang = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(9, 14)
        base = np.array([np.cos(ang) * r, np.sin(ang) * r, 0.0])
        w, h = rng.uniform(1.0, 2.5), rng.uniform(2.0, 4.0)
        d = np.array([-np.sin(ang), np.cos(ang), 0.0]) * w
        faces.append(Face(base - d / 2 + [0, 0, h], d, np.array([0, 0, -h]), _procedural(rng, 256)))
    return faces


def look_at(center: np.ndarray, target: np.ndarray, roll: float = 0.0) -> Pose:
    f = target - center
    f /= np.linalg.norm(f)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)  # image y points down
    R = np.stack([r, d, f])
    cr, sr = np.cos(roll), np.sin(roll)
    R = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]) @ R
    return Pose(R, -R @ center)


SIZES = [(640, 480), (640, 427), (576, 432), (480, 640), (512, 384)]


# Camera placement around a landmark: views spread over an arc of SPAN (fraction of pi, uniform in the range) at
# DISTANCE and HEIGHT (units), looking at a point near the landmark's centre, with a small roll (ROLL_SIGMA, rad).
# The arc and roll are set so that the hard category is hard for RE estimators and the easy one easy
# (scripts/check_difficulty.py; measurements in docs/results-log.md, "How hard the embedded default is").
CAMERA_LAYOUT = {"span": (0.8, 1.3), "distance": (12.0, 26.0), "height": (1.5, 8.0), "roll_sigma": 0.12}


def make_cameras(rng: np.random.Generator, n: int) -> list[tuple[Camera, Pose]]:
    lay = CAMERA_LAYOUT
    out = []
    arc0 = rng.uniform(0, 2 * np.pi)
    span = rng.uniform(np.pi * lay["span"][0], np.pi * lay["span"][1])  # pairs from easy to hard
    for _ in range(n):
        az = arc0 + rng.uniform(0, span)
        dist = rng.uniform(*lay["distance"])
        height = rng.uniform(*lay["height"])
        c = np.array([np.cos(az) * dist, np.sin(az) * dist, height])
        target = np.array([*rng.uniform(-2.5, 2.5, 2), rng.uniform(1, 4)])
        pose = look_at(c, target, roll=rng.normal(0, lay["roll_sigma"]))
        W, H = SIZES[rng.integers(len(SIZES))]
        fov = np.radians(rng.uniform(45, 70))
        f = 0.5 * max(W, H) / np.tan(fov / 2)
        cam = Camera("PINHOLE", W, H, [f, f, (W - 1) / 2, (H - 1) / 2])
        out.append((cam, pose))
    return out


# ----------------------------------------------------------------------------------------------- rendering
def render(faces: list[Face], cam: Camera, pose: Pose, supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """RGB float image (H, W, 3) and depth (H, W) (inf where empty), z-buffered over planar faces."""
    s = supersample
    cs = cam.scaled(s)
    W, H = cs.width, cs.height
    K = cs.K
    Kinv = np.linalg.inv(K)
    img = np.full((H, W, 3), 0.0, np.float32)
    sky = np.array([200, 215, 235], np.float32)
    img[:] = sky
    depth = np.full((H, W), np.inf, np.float32)
    xs_all = np.arange(W, dtype=np.float32)[None, :]
    ys_all = np.arange(H, dtype=np.float32)[:, None]
    for f in faces:
        th, tw = f.texture.shape[:2]
        corners = np.stack([f.origin, f.origin + f.u, f.origin + f.u + f.v, f.origin + f.v]) @ pose.R.T + pose.t
        if np.all(corners[:, 2] <= 0.1):
            continue
        if np.all(corners[:, 2] > 0.1):  # fully in front: only the face's bounding box needs rays
            pc = corners @ K.T
            uv = pc[:, :2] / pc[:, 2:]
            x0, y0 = np.clip(np.floor(uv.min(0)).astype(int) - 1, 0, [W, H])
            x1, y1 = np.clip(np.ceil(uv.max(0)).astype(int) + 2, 0, [W, H])
            if x1 <= x0 or y1 <= y0:
                continue
        else:
            x0, y0, x1, y1 = 0, 0, W, H
        xs, ys = xs_all[:, x0:x1], ys_all[y0:y1]
        # ray r(x, y) = Kinv (x, y, 1) is linear in the pixel, so are r.n (plane depth denominator) and r.U, r.V
        # (texture axes): each per-pixel quantity is one broadcast of a row and a column. The texel of each pixel's
        # ray/plane intersection is sampled directly (robust when the plane crosses behind the camera, where a
        # homography warp would fold).
        n_c = pose.R @ f.normal
        p_c = pose.R @ f.origin + pose.t
        U = pose.R @ f.u / np.dot(f.u, f.u)
        V = pose.R @ f.v / np.dot(f.v, f.v)
        lin = Kinv.T @ np.stack([n_c, U, V], 1)  # rows: coefficients of x, y, 1 for (r.n, r.U, r.V)
        lin = lin.astype(np.float32)
        den = ys * lin[1, 0] + (xs * lin[0, 0] + lin[2, 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.float32(n_c @ p_c) / den
        z[~np.isfinite(z)] = -1.0
        front = z > 0.1
        if not front.any():
            continue
        a = (z * (ys * lin[1, 1] + (xs * lin[0, 1] + lin[2, 1])) - np.float32(p_c @ U)) * tw - 0.5
        b = (z * (ys * lin[1, 2] + (xs * lin[0, 2] + lin[2, 2])) - np.float32(p_c @ V)) * th - 0.5
        win = (slice(y0, y1), slice(x0, x1))
        inside = front & (a >= -0.5) & (a <= tw - 0.5) & (b >= -0.5) & (b <= th - 0.5) & (z < depth[win])
        if not inside.any():
            continue
        a[~inside] = -1.0  # never sampled: keeps remap's coordinates small
        b[~inside] = -1.0
        tex = cv2.remap(f.texture, a, b, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        np.copyto(img[win], tex, where=inside[..., None])
        np.copyto(depth[win], z, where=inside)
    img = cv2.resize(img, (cam.width, cam.height), interpolation=cv2.INTER_AREA)
    depth = depth.reshape(cam.height, s, cam.width, s).min(axis=(1, 3))
    return img, depth


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gain = rng.uniform(0.6, 1.4)
    gamma = rng.uniform(0.7, 1.4)
    out = np.clip(img * gain / 255.0, 0, 1) ** gamma * 255.0
    tint = rng.uniform(0.9, 1.1, size=3)
    out = out * tint
    sigma = rng.uniform(0, 1.2)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out = out + rng.normal(0, rng.uniform(1, 4), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- SfM
def _sift(images: list[np.ndarray], max_features: int):
    sift = cv2.SIFT_create(nfeatures=max_features, contrastThreshold=0.02)
    kps, descs = [], []
    for im in images:
        k, d = sift.detectAndCompute(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), None)
        xy = np.array([p.pt for p in k], dtype=np.float64).reshape(-1, 2)
        d = np.zeros((0, 128), np.float32) if d is None else d
        # RootSIFT for matching
        d = np.sqrt(d / np.maximum(d.sum(1, keepdims=True), 1e-9)).astype(np.float32)
        kps.append(xy)
        descs.append(d)
    return kps, descs


def _fundamental(c1: Camera, p1: Pose, c2: Camera, p2: Pose) -> np.ndarray:
    rel = p2 @ p1.inverse()
    from nre.geometry import skew

    E = skew(rel.t) @ rel.R
    return np.linalg.inv(c2.K).T @ E @ np.linalg.inv(c1.K)


def _match(d1, d2, x1, x2, F, ratio=0.8, max_sampson=4.0) -> np.ndarray:
    """Exact nearest-neighbour matches (brute force, one BLAS product) passing the ratio test, one per target
    keypoint (the closest), verified against the epipolar geometry of the rendered poses (Sampson distance, px)."""
    if len(d1) < 2 or len(d2) < 2:
        return np.zeros((0, 2), int)
    # ||a - b||^2 = ||a||^2 - 2 (a.b - ||b||^2 / 2): the two nearest b of each a are the two largest a.b - ||b||^2 / 2
    n1 = np.einsum("ij,ij->i", d1, d1)
    score = d1 @ d2.T
    score -= 0.5 * np.einsum("ij,ij->i", d2, d2)[None, :]
    rows = np.arange(len(d1))
    j1 = np.argmax(score, 1)
    s1 = score[rows, j1].copy()
    score[rows, j1] = -np.inf
    s2 = score.max(1)
    dist1 = np.sqrt(np.maximum(n1 - 2 * s1, 0))
    dist2 = np.sqrt(np.maximum(n1 - 2 * s2, 0))
    good = dist1 < ratio * dist2
    m = np.c_[rows[good], j1[good]]
    if len(m) == 0:
        return m
    # one match per target keypoint: keep the closest
    order = np.lexsort((dist1[good], m[:, 1]))
    m = m[order][np.r_[True, m[order][1:, 1] != m[order][:-1, 1]]]
    a = np.c_[x1[m[:, 0]], np.ones(len(m))]
    b = np.c_[x2[m[:, 1]], np.ones(len(m))]
    Fa = a @ F.T
    Ftb = b @ F
    num = np.sum(b * Fa, 1) ** 2
    den = Fa[:, 0] ** 2 + Fa[:, 1] ** 2 + Ftb[:, 0] ** 2 + Ftb[:, 1] ** 2
    return m[num / np.maximum(den, 1e-12) < max_sampson**2]


def _triangulate(tracks_obs, cams, poses):
    """Vectorised multi-view DLT: tracks_obs list of (img idx array, xy array). Returns X (T, 3)."""
    T = len(tracks_obs)
    L = max(len(o[0]) for o in tracks_obs)
    A = np.zeros((T, 2 * L, 4))
    Ps = np.stack([c.K @ np.c_[p.R, p.t] for c, p in zip(cams, poses)])
    ti = np.concatenate([np.full(len(o[0]), i) for i, o in enumerate(tracks_obs)])
    ki = np.concatenate([np.arange(len(o[0])) for o in tracks_obs])
    im = np.concatenate([o[0] for o in tracks_obs])
    xy = np.concatenate([o[1] for o in tracks_obs])
    P = Ps[im]
    A[ti, 2 * ki] = xy[:, :1] * P[:, 2] - P[:, 0]
    A[ti, 2 * ki + 1] = xy[:, 1:] * P[:, 2] - P[:, 1]
    A /= np.maximum(np.linalg.norm(A, axis=2, keepdims=True), 1e-12)
    _, _, Vt = np.linalg.svd(A)
    Xh = Vt[:, -1]
    return Xh[:, :3] / Xh[:, 3:4]


def _track_filter(X, tracks_obs, cams, poses, max_error: float = 4.0, min_angle_deg: float = 1.5) -> np.ndarray:
    """(T,) mask of the tracks in front of and reprojecting within ``max_error`` px in every view, whose largest
    triangulation angle (between any two viewing rays) is at least ``min_angle_deg``."""
    counts = np.array([len(o[0]) for o in tracks_obs])
    t_of = np.repeat(np.arange(len(tracks_obs)), counts)
    pos = np.arange(len(t_of)) - np.repeat(np.cumsum(counts) - counts, counts)  # index within the track
    im = np.concatenate([o[0] for o in tracks_obs])
    xy = np.concatenate([o[1] for o in tracks_obs])
    ok = np.zeros(len(t_of), bool)
    rays = np.zeros((len(t_of), 3))
    for i in np.unique(im):
        m = im == i
        uv, front = cams[i].project(X[t_of[m]], poses[i])
        ok[m] = front & (np.linalg.norm(uv - xy[m], axis=1) <= max_error)
        rays[m] = poses[i].center - X[t_of[m]]
    keep = np.ones(len(tracks_obs), bool)
    np.logical_and.at(keep, t_of, ok)
    rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-300)
    min_cos = np.ones(len(tracks_obs))
    for d in range(1, counts.max()):  # every pair of views of a track: observation p with p + d
        p = np.flatnonzero(pos + d < counts[t_of])
        np.minimum.at(min_cos, t_of[p], np.einsum("ij,ij->i", rays[p], rays[p + d]))
    return keep & (np.degrees(np.arccos(np.clip(min_cos, -1, 1))) >= min_angle_deg)


def match_pairs(visible_samples, min_overlap: int = 30, neighbours: int | None = 10) -> list[tuple[int, int]]:
    """Image pairs to match (i < j): each image with its ``neighbours`` most overlapping images (shared visible
    landmark samples, at least ``min_overlap``; ties by image index), as COLMAP's spatial matching does with pose
    priors; ``None`` or 0: every overlapping pair. Tracks still span distant views through their neighbours."""
    n = len(visible_samples)
    ov = np.zeros((n, n), int)
    for i in range(n):
        for j in range(i + 1, n):
            ov[i, j] = ov[j, i] = len(visible_samples[i] & visible_samples[j])
    keep = ov >= min_overlap
    np.fill_diagonal(keep, False)
    if neighbours:
        near = np.zeros_like(keep)
        for i in range(n):
            order = np.argsort(-ov[i], kind="stable")
            top = [j for j in order if keep[i, j]][:neighbours]
            near[i, top] = True
        keep = near | near.T
    return [(i, j) for i in range(n) for j in range(i + 1, n) if keep[i, j]]


def build_sfm(images, cams, poses, visible_samples, max_features, min_overlap=30, bundle=True, neighbours=10):
    """SIFT -> matching of neighbouring overlapping pairs (``match_pairs``) -> tracks -> triangulation -> bundle
    adjustment.

    Returns (sfm reconstruction, truth reconstruction, keypoints)."""
    import pycolmap
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(images)
    kps, descs = _sift(images, max_features)
    offs = np.concatenate([[0], np.cumsum([len(k) for k in kps])])
    rows, cols = [], []
    for i, j in match_pairs(visible_samples, min_overlap, neighbours):
        F = _fundamental(cams[i], poses[i], cams[j], poses[j])
        m = _match(descs[i], descs[j], kps[i], kps[j], F)
        rows.append(offs[i] + m[:, 0])
        cols.append(offs[j] + m[:, 1])
    N = offs[-1]
    r = np.concatenate(rows) if rows else np.zeros(0, int)
    c = np.concatenate(cols) if cols else np.zeros(0, int)
    g = coo_matrix((np.ones(len(r)), (r, c)), shape=(N, N))
    _, label = connected_components(g, directed=False)
    img_of = np.repeat(np.arange(n), np.diff(offs))
    kp_of = np.arange(N) - offs[img_of]
    order = np.argsort(label, kind="stable")
    lab_sorted = label[order]
    starts = np.flatnonzero(np.r_[True, lab_sorted[1:] != lab_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]
    tracks = []
    for s, e in zip(starts, ends):
        if e - s < 2:
            continue
        idx = order[s:e]
        ims = img_of[idx]
        if len(np.unique(ims)) != len(ims):  # inconsistent track: two keypoints of one image
            continue
        tracks.append((ims, kp_of[idx]))
    if not tracks:
        raise RuntimeError("no tracks: the images do not overlap")
    obs = [(t[0], np.stack([kps[i][k] for i, k in zip(*t)])) for t in tracks]
    X = _triangulate(obs, cams, poses)
    # filter: positive depth, reprojection < 4 px everywhere, triangulation angle > 1.5 deg
    keep = _track_filter(X, obs, cams, poses)

    def make_rec(with_poses):
        rec = pycolmap.Reconstruction()
        for i, (cam, pose) in enumerate(zip(cams, with_poses)):
            pc = cam.to_pycolmap()
            pc.camera_id = i + 1
            rec.add_camera_with_trivial_rig(pc)
            im = pycolmap.Image(name=f"{i:04d}.jpg", keypoints=kps[i] + 0.5, camera_id=i + 1, image_id=i + 1)
            rec.add_image_with_trivial_frame(im, pose.to_pycolmap())
        for ti in np.flatnonzero(keep):
            tr = pycolmap.Track()
            for im_i, k in zip(*tracks[ti]):
                tr.add_element(int(im_i) + 1, int(k))
            rec.add_point3D(X[ti], tr)
        return rec

    truth = make_rec(poses)
    sfm = make_rec(poses)
    if bundle:
        opts = pycolmap.BundleAdjustmentOptions()
        opts.refine_focal_length = False
        opts.refine_extra_params = False
        opts.print_summary = False
        opts.ceres.solver_options.num_threads = 1  # deterministic: same seed, same model
        pycolmap.bundle_adjustment(sfm, opts)
    return sfm, truth


def noise_floor(sfm, truth) -> dict:
    """Pose and point differences between the SfM model and the truth, after a similarity alignment."""
    import pycolmap

    ids = sorted(sfm.images)
    c_s = np.stack([sfm.images[i].projection_center() for i in ids])
    c_t = np.stack([truth.images[i].projection_center() for i in ids])
    sim = pycolmap.estimate_sim3d(c_s, c_t)
    M = np.asarray(sim.matrix())
    rot, ctr = [], []
    for i in ids:
        Ps = Pose.from_pycolmap(sfm.images[i].cam_from_world())
        Pt = Pose.from_pycolmap(truth.images[i].cam_from_world())
        Rw = M[:3, :3] / sim.scale
        R_al = Ps.R @ Rw.T
        from nre.geometry import rotation_angle_deg

        rot.append(float(rotation_angle_deg(R_al.T @ Pt.R)))
        ctr.append(float(np.linalg.norm(M[:3, :3] @ Ps.center + M[:3, 3] - Pt.center)))
    pid = sorted(truth.points3D)
    Xs = np.stack([sfm.points3D[p].xyz for p in pid])
    Xt = np.stack([truth.points3D[p].xyz for p in pid])
    perr = np.linalg.norm(Xs @ M[:3, :3].T + M[:3, 3] - Xt, axis=1)
    return {
        "rotation_deg_median": float(np.median(rot)),
        "rotation_deg_max": float(np.max(rot)),
        "center_median": float(np.median(ctr)),
        "center_max": float(np.max(ctr)),
        "point_median": float(np.median(perr)),
        "sim3_scale": float(sim.scale),
    }


# ----------------------------------------------------------------------------------------------- driver
def generate_scene(
    out: Path, name: str, split: str, n_images: int, seed: int, photos: dict, max_features: int, neighbours: int = 10
):
    rng = rng_for(seed, "scene", name)
    faces = make_scene(rng, split, photos)
    rigs = make_cameras(rng, n_images)
    (out / name / "images").mkdir(parents=True, exist_ok=True)
    images, visible = [], []
    samples = np.concatenate([f.samples() for f in faces])
    for k, (cam, pose) in enumerate(rigs):
        img, depth = render(faces, cam, pose)
        img = photometric(img, rng)
        images.append(img)
        cv2.imwrite(
            str(out / name / "images" / f"{k:04d}.jpg"),
            cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 92],
        )
        uv, ok = cam.project(samples, pose)
        ok &= cam.in_image(uv, 1.0)
        zc = pose.transform(samples)[:, 2]
        ui = np.clip(np.round(uv).astype(int), 0, [cam.width - 1, cam.height - 1])
        ok &= zc <= depth[ui[:, 1], ui[:, 0]] * 1.02 + 0.05
        visible.append(set(np.flatnonzero(ok).tolist()))
    cams = [c for c, _ in rigs]
    poses = [p for _, p in rigs]
    sfm, truth = build_sfm(images, cams, poses, visible, max_features, neighbours=neighbours)
    for sub, rec in (("sparse", sfm), ("truth", truth)):
        (out / name / sub).mkdir(parents=True, exist_ok=True)
        rec.write_binary(str(out / name / sub))
    noise = noise_floor(sfm, truth)
    noise.update(num_images=len(images), num_points3D=sfm.num_points3D())
    (out / name / "noise.json").write_text(json.dumps(noise, indent=2))
    return noise


MANIFEST = "scene.json"
STAGING = ".partial"  # OUT/.partial/<pid>/<scene>: scenes being generated (list_scenes finds no model there)


def _scene_spec(name, split, n_images, seed, max_features, neighbours) -> dict:
    """What a finished scene must have been generated with to be kept by a rerun."""
    return {
        "generator": GENERATOR_VERSION,
        "name": name,
        "split": split,
        "n_images": int(n_images),
        "seed": int(seed),
        "max_features": int(max_features),
        "match_neighbours": int(neighbours),
    }


def finished_scene(out: str | Path, spec: dict) -> dict | None:
    """The noise report of a finished scene ``OUT/<name>`` generated with ``spec`` (``_scene_spec``), or None when
    it is absent, incomplete or was made otherwise (its manifest missing, different, or a listed file missing or of
    another size)."""
    folder = Path(out) / spec["name"]
    try:
        man = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(man, dict) or man.get("spec") != spec or not isinstance(man.get("files"), dict):
        return None
    for rel, size in man["files"].items():
        f = folder / rel
        if not f.is_file() or f.stat().st_size != size:
            return None
    return man.get("noise")


def _scene_job(args):
    out, name, split, n_images, seed, max_features, neighbours = args
    out = Path(out)
    spec = _scene_spec(name, split, n_images, seed, max_features, neighbours)
    photos = {n: _photo(n) for n in PHOTOS[split] + GROUND[split]}
    t1 = time.perf_counter()
    stage = out / STAGING / str(os.getpid())
    shutil.rmtree(stage / name, ignore_errors=True)
    noise = generate_scene(stage, name, split, n_images, seed, photos, max_features, neighbours)
    folder = stage / name
    files = {str(f.relative_to(folder)): f.stat().st_size for f in sorted(folder.rglob("*")) if f.is_file()}
    (folder / MANIFEST).write_text(json.dumps({"spec": spec, "files": files, "noise": noise}, indent=1))
    if (out / name).exists():  # an incomplete or outdated scene: replaced as a whole
        shutil.rmtree(out / name)
    folder.rename(out / name)
    try:
        stage.rmdir()
        stage.parent.rmdir()
    except OSError:  # other scenes still being generated there
        pass
    return name, split, noise, time.perf_counter() - t1


SPLITS = ("train", "tuning", "test")


def generate(out: str | Path, preset: str = "default", seed: int = 0, jobs: int | None = None, splits=SPLITS) -> dict:
    """Generate the scenes of a preset's ``splits`` (in parallel over ``jobs`` processes; each scene is seeded by its
    name, so a scene does not depend on ``jobs``, on the other splits, nor on the folder it is written to).
    ``OUT/scenes.yaml`` lists the splits generated here."""
    from concurrent.futures import ProcessPoolExecutor

    if preset not in PRESETS:
        raise UnknownNameError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    bad = [x for x in splits if x not in SPLITS]
    if bad or not splits:
        raise OptionError(f"unknown splits {bad or list(splits)}; choose from {list(SPLITS)}")
    p = PRESETS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [
        (str(out), f"{split}_{i:02d}", split, p.n_images[split], seed, p.max_features, p.match_neighbours)
        for split in SPLITS
        if split in splits
        for i in range(p.n_scenes[split])
    ]
    t0 = time.perf_counter()
    report, splits = {}, {}
    todo = []
    for task in tasks:  # a rerun after a kill keeps the finished scenes
        noise = finished_scene(out, _scene_spec(*task[1:]))
        if noise is None:
            todo.append(task)
        else:
            report[task[1]] = noise
    if len(todo) < len(tasks):
        log.info("%d of %d scenes already generated, kept", len(tasks) - len(todo), len(tasks))
    if todo:  # scenes.yaml (the workflow's output) exists only for a complete root
        (out / "scenes.yaml").unlink(missing_ok=True)
    for stale in (out / STAGING).glob("*"):  # staging folders of killed runs
        shutil.rmtree(stale, ignore_errors=True)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    if jobs == 1:
        results = map(_scene_job, todo)
    else:
        import multiprocessing as mp

        pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"))
        results = pool.map(_scene_job, todo)
    t_gen = time.perf_counter()
    for done, (name, _split, noise, dt) in enumerate(results, 1):
        report[name] = noise
        left = (time.perf_counter() - t_gen) / done * (len(todo) - done)
        log.info(
            "[%d/%d] scene %s: %d images, %d points, SfM noise median %.3f deg / %.3f units (%.1f s)%s",
            done,
            len(todo),
            name,
            noise["num_images"],
            noise["num_points3D"],
            noise["rotation_deg_median"],
            noise["center_median"],
            dt,
            f", ETA {duration(left)}" if done < len(todo) else "",
        )
    if jobs > 1:
        pool.shutdown()
    for _, name, split, *_ in tasks:
        splits.setdefault(split, []).append(name)
    try:
        (out / STAGING).rmdir()
    except OSError:
        pass
    report = {name: report[name] for _, name, *_ in tasks}  # in the preset's order, kept scenes included
    meta = {"preset": preset, "seed": seed, "splits": splits, "seconds": round(time.perf_counter() - t0, 1)}
    for fname, text in (
        ("noise.json", json.dumps(report, indent=2)),
        ("scenes.yaml", yaml.safe_dump(meta, sort_keys=False)),
    ):
        tmp = out / f".{fname}.tmp"
        tmp.write_text(text)
        tmp.replace(out / fname)  # atomically, scenes.yaml last
    log.info(
        "scenes: %d generated, %d kept, in %s -> %s", len(todo), len(tasks) - len(todo), duration(meta["seconds"]), out
    )
    return meta
