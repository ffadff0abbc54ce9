"""Images for feature backends: loading, [0, 1] / ImageNet normalisation, resizing with the camera rescaled.

Every resize goes through the one image <-> map transform of ``nre.geometry`` (pixel centres at integer
coordinates): an image of (W, H) resized to (W', H') has ``scale = (W' / W, H' / H)`` and a pixel x maps to
``(x + 0.5) * scale - 0.5``. OpenCV's ``resize`` follows the same half-pixel convention (INTER_AREA and
INTER_LINEAR), and ``Camera.scaled`` applies it to the intrinsics, so a 3D point projects onto the same image
content before and after a resize (tested).

Learned backends take ``to_tensor(image)`` (RGB in [0, 1], (3, H, W) float32) then ``imagenet_normalize``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nre.data.images import read_image
from nre.geometry import Camera

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# single-focal models and their exact two-focal equivalents (for anisotropic resizes)
_TWO_FOCAL = {"SIMPLE_PINHOLE": "PINHOLE", "SIMPLE_RADIAL": "OPENCV", "RADIAL": "OPENCV"}


def load_image(path: str | Path, grayscale: bool = False) -> np.ndarray:
    """RGB uint8 (H, W, 3) (or (H, W) grayscale); a missing or unreadable file raises ValueError naming it."""
    img = read_image(path)
    return to_gray(img) if grayscale else img


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) -> (H, W) float32 luminance in the image's own range (ITU-R BT.601 weights)."""
    img = np.asarray(image)
    if img.ndim == 2:
        return img.astype(np.float32)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    img = img[..., :3].astype(np.float32)
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    import torch

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    scale = 255.0 if img.dtype == np.uint8 else 1.0
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float() / scale


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) or (B, 3, H, W) RGB in [0, 1] -> ImageNet mean / std normalised."""
    import torch

    shape = (3, 1, 1) if x.dim() == 3 else (1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(shape)
    return (x - mean) / std


def resized_size(size: tuple[int, int], max_size: int | None) -> tuple[int, int]:
    """(W', H') with max(W', H') <= max_size keeping the aspect ratio (no upscaling; None = unchanged)."""
    W, H = (int(v) for v in size)
    if max_size is None or max(W, H) <= max_size:
        return W, H
    f = max_size / max(W, H)
    return max(1, int(round(W * f))), max(1, int(round(H * f)))


def resize_image(
    image: np.ndarray, max_size: int | None = None, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size`` (W', H') or to fit ``max_size``; returns the image and ``scale = (W'/W, H'/H)``.

    Downscaling uses area averaging (anti-aliased), upscaling bilinear interpolation; both keep the half-pixel
    convention of ``nre.geometry.img_to_map``."""
    import cv2

    img = np.asarray(image)
    H, W = img.shape[:2]
    Wn, Hn = (int(size[0]), int(size[1])) if size is not None else resized_size((W, H), max_size)
    scale = np.array([Wn / W, Hn / H], dtype=float)
    if (Wn, Hn) == (W, H):
        return img, scale
    interp = cv2.INTER_AREA if Wn <= W and Hn <= H else cv2.INTER_LINEAR
    return cv2.resize(img, (Wn, Hn), interpolation=interp), scale


def two_focal(camera: Camera) -> Camera:
    """The exact equivalent of a single-focal camera with separate fx, fy (needed for anisotropic scaling)."""
    if camera.model not in _TWO_FOCAL:
        return camera
    p = camera.params
    if camera.model == "SIMPLE_PINHOLE":
        params = [p[0], p[0], p[1], p[2]]
    elif camera.model == "SIMPLE_RADIAL":
        params = [p[0], p[0], p[1], p[2], p[3], 0.0, 0.0, 0.0]
    else:  # RADIAL: k1 r^2 + k2 r^4, as OpenCV's k1 k2
        params = [p[0], p[0], p[1], p[2], p[3], p[4], 0.0, 0.0]
    return Camera(_TWO_FOCAL[camera.model], camera.width, camera.height, params)


def scale_camera(camera: Camera, scale, size: tuple[int, int] | None = None) -> Camera:
    """``camera.scaled`` for an image resized by ``scale = (sx, sy)`` to ``size`` (W', H'); a single-focal model
    scaled anisotropically (rounded sizes) becomes its two-focal equivalent instead of failing."""
    sx, sy = (float(v) for v in np.broadcast_to(np.asarray(scale, dtype=float), (2,)))
    W, H = size if size is not None else (None, None)
    cam = camera
    if camera.model in _TWO_FOCAL and abs(sx - sy) > 1e-9 * max(sx, sy):
        cam = two_focal(camera)
    return cam.scaled(sx, sy, width=W, height=H)


def resize_with_camera(
    image: np.ndarray, camera: Camera, max_size: int | None = None, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, Camera, np.ndarray]:
    """Resize an image and rescale its camera consistently: returns (image', camera', scale)."""
    img = np.asarray(image)
    if (img.shape[1], img.shape[0]) != camera.size:
        raise ValueError(f"image is {img.shape[1]}x{img.shape[0]} but its camera says {camera.width}x{camera.height}")
    out, scale = resize_image(img, max_size, size)
    return out, scale_camera(camera, scale, (out.shape[1], out.shape[0])), scale
