"""``dsift``: upright dense SIFT / RootSIFT on a grid. Needs no download.

The descriptor of map cell (i, j) is SIFT's 4 x 4 x 8 histogram of gradient orientations centred on the image pixel
``nre.geometry.map_to_img((i, j), scale)``, ``scale = (w / W, h / H)``, the grid being ``w = round(W / stride)``
by ``h = round(H / stride)`` (tested against OpenCV's SIFT at the cell centres, and by a mirror-symmetry test).

Two implementations give the same descriptor layout (rows, columns, orientations; orientation bin k at k * 45 deg
measured from +x towards +y, the image's downward y):
- ``impl="torch"`` (default): orientation channels soft-binned once per image, pooled with SIFT's triangular
  (trilinear) spatial kernel (separable convolution, or running sums for large bins), then sampled at the 16 bin
  centres of every grid point with one ``grid_sample``: a few filters per image whatever the stride.
- ``impl="opencv"``: ``cv2.SIFT.compute`` on one upright KeyPoint per cell (OpenCV rounds keypoint centres to whole
  pixels and blurs with its own sigma 1.6): the reference, several times slower (scripts/bench_features.py).

SIFT's bin width ``bin`` (pixels; OpenCV keypoint size = bin / 1.5) is per level. The defaults (coarse stride 8 with
16 px bins, fine stride 4 with 6 px bins, temperature 0.01) are the settings measured best on the training and tuning
scenes (docs/results-log.md); the paper's coarse level is stride 16 (preset ``paper``). Descriptors are
L2-normalised unit vectors (RootSIFT: L1-normalised then square-rooted; SIFT: clipped at 0.2). The softmax
temperature divides the dot products of unit descriptors; ``nre calibrate`` fits it by the Eq. 10 cross-entropy
on training pairs. ``max_size`` resizes the image internally (``nre.features.images``); the returned maps keep
``scale`` relative to the image given to ``extract``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from nre.features.base import DenseFeatures, FeatureBackend, register_backend
from nre.features.images import resize_image, to_gray
from nre.geometry import map_to_img

N_ORI = 8
N_BINS = 4  # spatial bins per side
MIN_BIN_PX = 8  # larger bins are computed on a reduced image (see dense_sift)
IMPLS = ("torch", "opencv")


def _separable(x: torch.Tensor, k: torch.Tensor, pad_mode: str) -> torch.Tensor:
    """Convolve (1, C, H, W) with the symmetric 1D kernel k along x then y (same size; replicate or zero padding).
    OpenCV's separable filter per channel: faster than torch's depthwise conv2d on CPU (same values
    to float32 rounding); float64 inputs (long running sums) and other devices go through torch."""
    if x.dtype == torch.float32 and x.device.type == "cpu":
        import cv2

        border = cv2.BORDER_CONSTANT if pad_mode == "zeros" else cv2.BORDER_REPLICATE
        kn = k.to(torch.float32).numpy()
        xs = x[0].contiguous().numpy()
        out = np.empty_like(xs)
        for c in range(xs.shape[0]):
            out[c] = cv2.sepFilter2D(xs[c], -1, kn, kn, borderType=border)
        return torch.from_numpy(out)[None]
    r = (len(k) - 1) // 2
    c = x.shape[1]
    kx = k.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    if pad_mode == "zeros":
        x = F.conv2d(x, kx, padding=(0, r), groups=c)
        return F.conv2d(x, ky, padding=(r, 0), groups=c)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=pad_mode), kx, groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=pad_mode), ky, groups=c)


def gaussian_blur(gray: torch.Tensor, sigma: float) -> torch.Tensor:
    """(H, W) image blurred by a Gaussian of ``sigma`` pixels (replicated borders)."""
    if sigma < 0.3:
        return gray
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=gray.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return _separable(gray[None, None], k / k.sum(), "replicate")[0, 0]


def orientation_channels(gray: torch.Tensor) -> torch.Tensor:
    """(H, W) grayscale -> (8, H, W): gradient magnitude soft-binned (linearly) over 8 orientations."""
    g = F.pad(gray[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    gx = 0.5 * (g[1:-1, 2:] - g[1:-1, :-2])
    gy = 0.5 * (g[2:, 1:-1] - g[:-2, 1:-1])
    mag = torch.sqrt(gx * gx + gy * gy)
    o = torch.remainder(torch.atan2(gy, gx), 2 * math.pi) * (N_ORI / (2 * math.pi))
    o0 = torch.floor(o)
    frac = o - o0
    o0 = o0.long() % N_ORI
    ch = torch.zeros((N_ORI,) + gray.shape, dtype=gray.dtype)
    ch.scatter_add_(0, o0[None], (mag * (1 - frac))[None])
    ch.scatter_add_(0, ((o0 + 1) % N_ORI)[None], (mag * frac)[None])
    return ch


def _box(x: torch.Tensor, b: int, dim: int, causal: bool) -> torch.Tensor:
    """Running sums of b samples along ``dim`` (zeros outside): x[i-b+1..i] (causal) or x[i..i+b-1]."""
    n = x.shape[dim]
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim())
    xp = F.pad(x, pad + ([b, 0] if causal else [b, b - 1]))
    c = torch.cumsum(xp, dim)
    if causal:  # c[i + b] - c[i]
        return c.narrow(dim, b, n) - c.narrow(dim, 0, n)
    return c.narrow(dim, 2 * b - 1, n) - c.narrow(dim, b - 1, n)


def triangle_pool(ch: torch.Tensor, bin_size: float) -> torch.Tensor:
    """(C, H, W) filtered by the separable triangle max(0, 1 - |d| / bin) (SIFT's trilinear assignment of a pixel to
    its spatial bins), zero-padded. A large integer bin uses two running sums per axis (the triangle is the
    convolution of two boxes); other bins a direct separable convolution."""
    b = int(round(bin_size))
    if abs(bin_size - b) > 1e-9 or b < 12:  # running sums win for large bins (docs/results-log.md)
        r = int(math.ceil(bin_size))
        t = torch.arange(-r, r + 1, dtype=ch.dtype)
        return _separable(ch[None], torch.clamp(1 - t.abs() / bin_size, min=0), "zeros")[0]
    x = ch.double() if max(ch.shape[1:]) > 4096 else ch  # long running sums: keep float32 error small
    for dim in (2, 1):
        n = x.shape[dim]
        pad = [0, 0] * (2 - dim) + [b - 1, b - 1]  # the box of the box reaches b - 1 samples beyond the image
        x = _box(_box(F.pad(x, pad), b, dim, False), b, dim, True).narrow(dim, b - 1, n)
    return (x / (b * b)).to(ch.dtype)


def _finish(desc: torch.Tensor, root: bool) -> torch.Tensor:
    """(128, ...) raw histograms -> unit descriptors (RootSIFT or SIFT's clip at 0.2)."""
    if root:
        desc = torch.sqrt(desc / desc.sum(0, keepdim=True).clamp_min(1e-12))
    else:
        desc = desc / desc.norm(dim=0, keepdim=True).clamp_min(1e-12)
        desc = torch.clamp(desc, max=0.2)
    return desc / desc.norm(dim=0, keepdim=True).clamp_min(1e-12)


def dense_sift(
    gray: torch.Tensor, centers_x: np.ndarray, centers_y: np.ndarray, bin_size: float, root: bool = True
) -> torch.Tensor:
    """Unit descriptors (128, h, w) centred on the pixel grid ``centers_y`` x ``centers_x`` of an (H, W) image
    (values in [0, 1]). Layout: (row bin, column bin, orientation).

    Bins of at least 2 * MIN_BIN_PX pixels are computed on the image area-averaged by f = bin // MIN_BIN_PX (same
    pre-smoothing in original pixels, centres mapped by the one image <-> map transform, bins divided by f): the
    filters run on f^2 fewer pixels with f times shorter kernels (coarse level: ~4x faster, same accuracy)."""
    f = max(1, int(bin_size // MIN_BIN_PX))
    blur_var = 0.25  # the image's own blur (variance, pixels^2), as SIFT assumes
    if f > 1:
        Hc, Wc = (gray.shape[0] // f) * f, (gray.shape[1] // f) * f  # drops < f border pixels: no shift of frame
        gray = F.avg_pool2d(gray[None, None, :Hc, :Wc], f)[0, 0]
        centers_x = (np.asarray(centers_x, dtype=float) + 0.5) / f - 0.5
        centers_y = (np.asarray(centers_y, dtype=float) + 0.5) / f - 0.5
        blur_var = (0.25 + (f * f - 1) / 12.0) / (f * f)  # plus the f-pixel box, in reduced pixels
        bin_size = bin_size / f
    H, W = gray.shape
    # pre-smoothing with the scale of the bins (as dense SIFT implementations do)
    sigma = math.sqrt(max((bin_size / 6.0) ** 2 - blur_var, 0.0))
    pooled_ch = orientation_channels(gaussian_blur(gray, sigma))
    pooled = triangle_pool(pooled_ch, bin_size)  # (8, H, W)
    offs = (np.arange(N_BINS) - (N_BINS - 1) / 2) * bin_size
    # SIFT's Gaussian window (sigma = half the descriptor width), evaluated at the bin centres
    wgt = np.exp(-(offs[:, None] ** 2 + offs[None, :] ** 2) / (2 * (N_BINS / 2 * bin_size) ** 2))
    cx = torch.as_tensor(np.asarray(centers_x, dtype=np.float32))
    cy = torch.as_tensor(np.asarray(centers_y, dtype=np.float32))
    h, w = len(cy), len(cx)
    ox = torch.as_tensor(offs, dtype=torch.float32)
    X = (cx[None, :] + ox[:, None])[None, :, None, :].expand(N_BINS, N_BINS, h, w)  # (by, bx, h, w)
    Y = (cy[None, :] + ox[:, None])[:, None, :, None].expand(N_BINS, N_BINS, h, w)
    # grid_sample with align_corners=True: -1 and 1 are the centres of the first and last pixels
    grid = torch.stack([2 * X / max(W - 1, 1) - 1, 2 * Y / max(H - 1, 1) - 1], -1)
    s = F.grid_sample(pooled[None], grid.reshape(1, N_BINS * N_BINS * h, w, 2), "bilinear", "zeros", align_corners=True)
    s = s.reshape(N_ORI, N_BINS, N_BINS, h, w) * torch.as_tensor(wgt, dtype=torch.float32)[None, :, :, None, None]
    return _finish(s.permute(1, 2, 0, 3, 4).reshape(N_BINS * N_BINS * N_ORI, h, w), root)


# OpenCV measures orientations with y up (dy = I(y-1) - I(y+1)): its bin k is our bin (8 - k) % 8
_CV_ORI = np.array([(N_ORI - k) % N_ORI for k in range(N_ORI)])
_CV_PERM = (np.arange(N_BINS * N_BINS)[:, None] * N_ORI + _CV_ORI[None, :]).reshape(-1)


def dense_sift_opencv(
    gray: np.ndarray, centers_x: np.ndarray, centers_y: np.ndarray, bin_size: float, root: bool = True
) -> torch.Tensor:
    """The same descriptors from ``cv2.SIFT.compute`` on upright KeyPoints (gray in [0, 255]): (128, h, w)."""
    import cv2

    img = np.clip(np.round(np.asarray(gray, dtype=np.float32)), 0, 255).astype(np.uint8)
    X, Y = np.meshgrid(np.asarray(centers_x, dtype=float), np.asarray(centers_y, dtype=float))
    kps = [cv2.KeyPoint(float(x), float(y), bin_size / 1.5, 0.0) for x, y in zip(X.ravel(), Y.ravel())]
    kp_out, desc = cv2.SIFT_create().compute(img, kps)
    if desc is None or len(kp_out) != len(kps):
        raise RuntimeError(f"OpenCV SIFT returned {0 if desc is None else len(kp_out)} of {len(kps)} descriptors")
    d = torch.as_tensor(desc[:, _CV_PERM].astype(np.float32)).T.reshape(-1, *X.shape)
    return _finish(d, root)


def grid_centers(size: tuple[int, int], stride: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an image of (W, H): the map's scale (w / W, h / H) and the pixel centres of its columns and rows."""
    W, H = size
    w, h = max(1, int(round(W / stride))), max(1, int(round(H / stride)))
    scale = np.array([w / W, h / H], dtype=float)
    return scale, map_to_img(np.arange(w), scale[0]), map_to_img(np.arange(h), scale[1])


@register_backend
class DenseSift(FeatureBackend):
    name = "dsift"
    levels = ("coarse", "fine")

    def __init__(
        self,
        coarse_stride: int = 8,
        fine_stride: int = 4,
        coarse_bin: float = 16.0,
        fine_bin: float = 6.0,
        root: bool = True,
        temperature: float = 0.01,
        max_size: int | None = None,
        impl: str = "torch",
    ):
        for k, v in (("coarse_stride", coarse_stride), ("fine_stride", fine_stride)):
            if not (isinstance(v, numbers.Real) and v >= 1):
                raise ValueError(f"dsift: {k} must be >= 1, got {v!r}")
        for k, v in (("coarse_bin", coarse_bin), ("fine_bin", fine_bin), ("temperature", temperature)):
            if not (isinstance(v, numbers.Real) and v > 0 and math.isfinite(v)):
                raise ValueError(f"dsift: {k} must be a positive number, got {v!r}")
        if impl not in IMPLS:
            raise ValueError(f"dsift: impl must be one of {IMPLS}, got {impl!r}")
        if max_size is not None and int(max_size) < 16:
            raise ValueError(f"dsift: max_size must be at least 16 pixels, got {max_size!r}")
        self.strides = {"coarse": coarse_stride, "fine": fine_stride}
        self.bins = {"coarse": float(coarse_bin), "fine": float(fine_bin)}
        self.root = bool(root)
        self.temperature = float(temperature)
        self.max_size = None if max_size is None else int(max_size)
        self.impl = impl

    def options(self) -> dict:
        """Everything that changes the descriptors or the maps (the cache's identity)."""
        return {
            "strides": self.strides,
            "bins": self.bins,
            "root": self.root,
            "temperature": self.temperature,
            "max_size": self.max_size,
            "impl": self.impl,
        }

    def extract(self, image: np.ndarray, levels=None) -> dict[str, DenseFeatures]:
        levels = self.levels if levels is None else tuple(levels)
        unknown = [lv for lv in levels if lv not in self.strides]
        if unknown:
            raise KeyError(f"dsift has no level(s) {unknown} (levels: {self.levels})")
        img = np.asarray(image)
        if img.ndim not in (2, 3) or min(img.shape[:2]) < 8:
            raise ValueError(f"dsift: expected an RGB (H, W, 3) or gray (H, W) image of at least 8 px, got {img.shape}")
        H0, W0 = img.shape[:2]
        img, rs = resize_image(img, self.max_size)
        gray = to_gray(img)  # [0, 255]
        H, W = gray.shape
        gray_t = torch.from_numpy(np.ascontiguousarray(gray)) / 255.0
        out = {}
        for lv in levels:
            scale, cx, cy = grid_centers((W, H), self.strides[lv])
            if self.impl == "torch":
                desc = dense_sift(gray_t, cx, cy, self.bins[lv], self.root)
            else:
                desc = dense_sift_opencv(gray, cx, cy, self.bins[lv], self.root)
            # map scale relative to the caller's image: (w / W') * (W' / W0) = w / W0
            out[lv] = DenseFeatures(desc.contiguous(), scale * rs, (W0, H0))
        return out
