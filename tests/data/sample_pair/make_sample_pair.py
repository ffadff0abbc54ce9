"""Regenerate the committed sample pair: ``python tests/data/sample_pair/make_sample_pair.py``.

A room corner (two walls and a floor, textured with scikit-image's bundled photographs) ray-cast from two known
poses at 320 x 240: every pixel's ray is intersected with the three planes and the nearest hit samples its texture
(rendered at 2x and area-downsampled, through the one image <-> map transform of ``Camera.scaled``). The target
camera has mild radial distortion (OpenCV k1, k2), exercising the ``*_dist`` fields of the official format. The 3D
points lie on the planes, spread over the textured areas seen by the source (not occluded there: the corner is
seen from inside). Files: ``pair.npz`` (official NRE sample keys + pair_id and sizes), ``source.jpg``,
``target.jpg``. Deterministic (seed 0).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from nre.pair import PairData

from nre.geometry import Camera, Pose, pose_error

HERE = Path(__file__).resolve().parent
W, H = 320, 240


def look_at(center, target, up=(0.0, 0.0, 1.0)) -> Pose:
    center, target = np.asarray(center, float), np.asarray(target, float)
    f = (target - center) / np.linalg.norm(target - center)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    d = np.cross(f, r)  # image y down
    R = np.stack([r, d, f])
    return Pose(R, -R @ center)


def planes():
    """(origin, u, v, texture): points origin + a u + b v, (a, b) in [0, 1]^2, texel (a * tw - 0.5, b * th - 0.5)."""
    import skimage.data

    tex = {
        "astronaut": skimage.data.astronaut(),
        "coffee": skimage.data.coffee(),
        "brick": cv2.cvtColor(skimage.data.brick(), cv2.COLOR_GRAY2RGB),
    }
    return [
        (np.array([0.0, 0.0, 4.0]), np.array([6.0, 0.0, 0.0]), np.array([0.0, 0.0, -4.0]), tex["astronaut"]),  # y=0
        (np.array([0.0, 6.0, 4.0]), np.array([0.0, -6.0, 0.0]), np.array([0.0, 0.0, -4.0]), tex["coffee"]),  # x=0
        (np.array([0.0, 0.0, 0.0]), np.array([6.0, 0.0, 0.0]), np.array([0.0, 6.0, 0.0]), tex["brick"]),  # z=0
    ]


def render(cam: Camera, pose: Pose, ss: int = 2) -> np.ndarray:
    cs = cam.scaled(ss)
    xs, ys = np.meshgrid(np.arange(cs.width, dtype=float), np.arange(cs.height, dtype=float))
    nrm = cs.undistort_points(np.stack([xs.ravel(), ys.ravel()], -1))
    rays_c = np.c_[nrm, np.ones(len(nrm))]
    rays_w = rays_c @ pose.R  # R^T d
    C = pose.center
    best = np.full(len(rays_w), np.inf)
    img = np.full((len(rays_w), 3), 128.0, np.float32)
    for origin, u, v, tex in planes():
        n = np.cross(u, v)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = ((origin - C) @ n) / (rays_w @ n)
        X = C + s[:, None] * rays_w
        rel = X - origin
        a, b = rel @ u / (u @ u), rel @ v / (v @ v)
        hit = (s > 0) & (s < best) & (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1)
        th, tw = tex.shape[:2]
        k = int(hit.sum())
        rows = -(-k // 1024)  # remap takes a 2D map of fewer than 32767 rows
        mx = np.zeros(rows * 1024, np.float32)
        my = np.zeros(rows * 1024, np.float32)
        mx[:k], my[:k] = a[hit] * tw - 0.5, b[hit] * th - 0.5
        out = cv2.remap(
            tex.astype(np.float32),
            mx.reshape(rows, 1024),
            my.reshape(rows, 1024),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        img[hit] = out.reshape(-1, 3)[:k]
        best[hit] = s[hit]
    big = img.reshape(cs.height, cs.width, 3)
    return np.clip(cv2.resize(big, (cam.width, cam.height), interpolation=cv2.INTER_AREA), 0, 255).astype(np.uint8)


def sample_points(cam: Camera, pose: Pose, n: int, rng) -> np.ndarray:
    pts = []
    for origin, u, v, _ in planes():
        ab = rng.uniform(0.03, 0.97, (4 * n, 2))
        pts.append(origin + ab[:, :1] * u + ab[:, 1:] * v)
    pts = np.concatenate(pts)
    uv, ok = cam.project(pts, pose)
    ok &= cam.in_image(uv, margin=4)
    pts = pts[ok]
    return pts[rng.choice(len(pts), min(n, len(pts)), replace=False)]


def main() -> None:
    rng = np.random.default_rng(0)
    src_cam = Camera("PINHOLE", W, H, [250.0, 250.0, 159.5, 119.5])
    tgt_cam = Camera("OPENCV", W, H, [240.0, 242.0, 161.0, 118.0, -0.04, 0.01, 0.0, 0.0])
    src_pose = look_at([7.5, 8.5, 3.2], [1.5, 1.5, 1.6])
    tgt_pose = look_at([9.0, 6.0, 2.6], [1.8, 2.0, 1.8])
    print("viewpoint change:", pose_error(tgt_pose, src_pose).as_dict())
    for name, cam, pose in (("source.jpg", src_cam, src_pose), ("target.jpg", tgt_cam, tgt_pose)):
        img = render(cam, pose)
        cv2.imwrite(str(HERE / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    pts = sample_points(src_cam, src_pose, 1500, rng)
    pair = PairData(
        "sample_room_corner", Path("source.jpg"), Path("target.jpg"), pts, src_cam, tgt_cam, src_pose, tgt_pose
    )
    pair.save_npz(HERE / "pair.npz")
    sizes = {p.name: p.stat().st_size for p in HERE.iterdir() if p.suffix in (".npz", ".jpg")}
    print(f"{len(pts)} points; files {sizes} ({sum(sizes.values()) / 1e3:.0f} KB)")


if __name__ == "__main__":
    main()
