"""The NRE feature networks: the paper's InceptionV3-based coarse / fine networks and a compact CPU-sized variant.

Architectures (facts from the public reference implementation, code written here):

- ``official_coarse_net``: InceptionV3 up to Mixed_7a (1280 channels), then a 1x1 conv (no bias) and a BatchNorm.
  Not torchvision's strides or paddings: every stem conv and both stem max-pools are padded by 1, Mixed_6a (the
  InceptionB reduction) is padded by 1, and Mixed_7a (InceptionD) runs at stride 1 with padding 1 and its pool branch
  passes the input through (320 + 192 + 768 = 1280 channels). Output stride 16 (640 x 480 -> 40 x 30).
- ``official_fine_net``: InceptionV3 up to Mixed_5d (288 channels) without the stem max-pools, Conv2d_3b a 3x3 conv
  (padded by 1), then a 1x1 conv and a BatchNorm. Output stride 2 (640 x 480 -> 320 x 240).

Convs inside the Inception blocks have no bias and are followed by BatchNorm(eps=1e-3) and ReLU; the head BatchNorm
uses PyTorch's default eps (1e-5), as in the reference. The parameter names are those of the official Lightning
checkpoints: the layers form an ``nn.Sequential`` stored as the attribute ``cnn`` (keys ``cnn.<index>.<block>...``,
with torchvision's Inception3 block and branch names inside). ``nre/features/manifests/`` holds the names and shapes.

- ``CompactCoarseNet`` / ``CompactFineNet``: our small networks with the same interface (stride 16 / stride 2), sized
  for CPU training and inference, trained by ``nre train`` with the NRE loss (Eq. 10). Their descriptors are
  L2-normalised and multiplied by sqrt(exp(log_scale)), a learned scale, so the raw dot product is a learned multiple
  of the cosine similarity (the learned inverse temperature).

Backends ``nre_official`` and ``nre_compact`` (see ``NRENetBackend``): images RGB in [0, 1] normalised with the
ImageNet mean / std, descriptors compared by the raw dot product (temperature 1).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nre.features.base import DenseFeatures, FeatureBackend, register_backend
from nre.features.nets.checkpoints import CheckpointError, load_into, read_checkpoint

log = logging.getLogger("nre.features.nets")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
COMPACT_WEIGHTS = {"coarse": WEIGHTS_DIR / "compact_coarse.pth", "fine": WEIGHTS_DIR / "compact_fine.pth"}
STRIDES = {"coarse": 16, "fine": 2}
COARSE_STRIDE_MODES = ("features", "image")


# ----------------------------------------------------------------------------------------------- Inception blocks
class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU; parameters ``conv.*`` and ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0, dilation=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg3(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: 64 + 64 + 96 + pool_features channels."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg3(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Mixed_6a (stride-2 reduction): 384 + 96 + cin channels; ``padding`` 1 in the NRE coarse net."""

    def __init__(self, cin: int, padding: int = 1):
        super().__init__()
        self.padding = padding
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2, padding=padding)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=padding)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2, padding=padding)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2, padding=self.padding)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    """Mixed_6b..6e: 4 x 192 = 768 channels, factorised 7x7 convs."""

    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = m(bd)
        bp = self.branch_pool(_avg3(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Mixed_7a. NRE coarse version: stride 1, padding 1, the pool branch is the input itself (320 + 192 + cin)."""

    def __init__(self, cin: int, coarse: bool = True):
        super().__init__()
        self.coarse = coarse
        kw = {"stride": 1, "padding": 1} if coarse else {"stride": 2, "padding": 0}
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, **kw)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, **kw)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = x if self.coarse else F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class OfficialNet(nn.Module):
    """Holds the layers as ``self.cnn`` (nn.Sequential) so that state_dict keys are the official ``cnn.<i>...``."""

    def __init__(self, layers: list[nn.Module], level: str, dim: int):
        super().__init__()
        self.cnn = nn.Sequential(*layers)
        self.level = level
        self.descriptor_dim = dim
        self.stride = STRIDES[level]

    def forward(self, x):
        return self.cnn(x)


def official_coarse_net(second_maxpool: bool = True) -> OfficialNet:
    """The NRE coarse network (stride 16, 1280-D). ``second_maxpool=False`` is the reference's ``no_maxpool``."""
    layers = [
        BasicConv2d(3, 32, 3, stride=2, padding=1),  # Conv2d_1a_3x3
        BasicConv2d(32, 32, 3, padding=1),  # Conv2d_2a_3x3
        BasicConv2d(32, 64, 3, padding=1),  # Conv2d_2b_3x3
        nn.MaxPool2d(3, stride=2, padding=1),
        BasicConv2d(64, 80, 1),  # Conv2d_3b_1x1
        BasicConv2d(80, 192, 3, padding=1),  # Conv2d_4a_3x3
    ]
    if second_maxpool:
        layers.append(nn.MaxPool2d(3, stride=2, padding=1))
    layers += [
        InceptionA(192, 32),  # Mixed_5b
        InceptionA(256, 64),  # Mixed_5c
        InceptionA(288, 64),  # Mixed_5d
        InceptionB(288, padding=1),  # Mixed_6a
        InceptionC(768, 128),  # Mixed_6b
        InceptionC(768, 160),  # Mixed_6c
        InceptionC(768, 160),  # Mixed_6d
        InceptionC(768, 192),  # Mixed_6e
        InceptionD(768, coarse=True),  # Mixed_7a
        nn.Conv2d(1280, 1280, 1, bias=False),
        nn.BatchNorm2d(1280),
    ]
    return OfficialNet(layers, "coarse", 1280)


def official_fine_net() -> OfficialNet:
    """The NRE fine network (stride 2, 288-D): no stem max-pools, Conv2d_3b is 3x3."""
    layers = [
        BasicConv2d(3, 32, 3, stride=2, padding=1),  # Conv2d_1a_3x3
        BasicConv2d(32, 32, 3, padding=1),  # Conv2d_2a_3x3
        BasicConv2d(32, 64, 3, padding=1),  # Conv2d_2b_3x3
        BasicConv2d(64, 80, 3, padding=1),  # Conv2d_3b_1x1 (3x3 in the fine net)
        BasicConv2d(80, 192, 3, padding=1),  # Conv2d_4a_3x3
        InceptionA(192, 32),  # Mixed_5b
        InceptionA(256, 64),  # Mixed_5c
        InceptionA(288, 64),  # Mixed_5d
        nn.Conv2d(288, 288, 1, bias=False),
        nn.BatchNorm2d(288),
    ]
    return OfficialNet(layers, "fine", 288)


# ----------------------------------------------------------------------------------------------- compact networks
class _NormScale(nn.Module):
    """L2 normalisation times sqrt(exp(log_scale)): dot products = exp(log_scale) * cosine."""

    def __init__(self, init_scale: float = 20.0):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(init_scale))))

    def forward(self, x):
        return F.normalize(x, dim=1) * torch.exp(0.5 * self.log_scale)


class CompactCoarseNet(nn.Module):
    """Stride-16 encoder: 4 stride-2 stages, dilated context convs, 1x1 head + BN, normalised x learned scale."""

    def __init__(self, dim: int = 128, width: int = 32):
        super().__init__()
        w = width
        self.level, self.stride, self.descriptor_dim = "coarse", 16, dim
        self.body = nn.Sequential(
            BasicConv2d(3, w // 2 + w // 4, 3, stride=2, padding=1),  # s2
            BasicConv2d(w // 2 + w // 4, w + w // 2, 3, stride=2, padding=1),  # s4
            BasicConv2d(w + w // 2, w + w // 2, 3, padding=1),
            BasicConv2d(w + w // 2, 3 * w, 3, stride=2, padding=1),  # s8
            BasicConv2d(3 * w, 3 * w, 3, padding=1),
            BasicConv2d(3 * w, 4 * w, 3, stride=2, padding=1),  # s16
            BasicConv2d(4 * w, 4 * w, 3, padding=2, dilation=2),
            BasicConv2d(4 * w, 4 * w, 3, padding=4, dilation=4),
        )
        self.head = nn.Sequential(nn.Conv2d(4 * w, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.norm = _NormScale()

    def forward(self, x):
        return self.norm(self.head(self.body(x)))


class CompactFineNet(nn.Module):
    """Stride-2 descriptors from a small U-Net: stride 2/4/8 encoder, decoder back to stride 2 with skips."""

    def __init__(self, dim: int = 64, width: int = 16):
        super().__init__()
        w = width
        self.level, self.stride, self.descriptor_dim = "fine", 2, dim
        self.enc1 = BasicConv2d(3, w, 3, stride=2, padding=1)  # s2
        self.enc2 = nn.Sequential(
            BasicConv2d(w, 2 * w, 3, stride=2, padding=1), BasicConv2d(2 * w, 2 * w, 3, padding=1)
        )
        self.enc3 = nn.Sequential(
            BasicConv2d(2 * w, 4 * w, 3, stride=2, padding=1), BasicConv2d(4 * w, 4 * w, 3, padding=2, dilation=2)
        )
        self.lat3 = nn.Conv2d(4 * w, 2 * w, 1)
        self.dec2 = BasicConv2d(2 * w, 2 * w, 3, padding=1)
        self.lat2 = nn.Conv2d(2 * w, w, 1)
        self.dec1 = BasicConv2d(w, 2 * w, 3, padding=1)
        self.head = nn.Sequential(nn.Conv2d(2 * w, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.norm = _NormScale()

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(e2 + F.interpolate(self.lat3(e3), size=e2.shape[-2:], mode="bilinear", align_corners=False))
        d1 = self.dec1(e1 + F.interpolate(self.lat2(d2), size=e1.shape[-2:], mode="bilinear", align_corners=False))
        return self.norm(self.head(d1))


def compact_net(level: str, **kw) -> nn.Module:
    if level == "coarse":
        return CompactCoarseNet(**kw)
    if level == "fine":
        return CompactFineNet(**kw)
    raise ValueError(f"unknown level {level!r} (coarse or fine)")


def build_net(level: str, arch: str, hparams: dict | None = None) -> nn.Module:
    """A network from its (level, arch) and the checkpoint's hyper-parameters (``arch`` official or compact)."""
    hp = dict(hparams or {})
    if arch == "official":
        if level == "coarse":
            return official_coarse_net(second_maxpool=not hp.get("no_maxpool", False))
        if level == "fine":
            return official_fine_net()
        raise ValueError(f"unknown level {level!r} (coarse or fine)")
    if arch == "compact":
        kw = {k: int(hp[k]) for k in ("dim", "width") if k in hp}
        return compact_net(level, **kw)
    raise ValueError(f"unknown architecture {arch!r} (official or compact)")


# ----------------------------------------------------------------------------------------------- images
def load_network(path: str | Path, level: str, arch: str) -> torch.nn.Module:
    """Build the ``arch`` (official / compact) network of ``level`` from a checkpoint and load it strictly.

    The checkpoint's hyper-parameters decide the variant (official: ``no_maxpool``; compact: ``dim``, ``width``);
    a ``level`` recorded in them must agree with the requested one (a fine file given as coarse is an error)."""
    sd, hp, _ = read_checkpoint(path)
    hp_level = hp.get("level") if isinstance(hp, dict) else None
    if hp_level is not None and hp_level != level:
        raise CheckpointError(f"{path}: checkpoint is a {hp_level!r} network, expected {level!r}")
    hp_arch = hp.get("arch") if isinstance(hp, dict) else None
    if hp_arch is not None and hp_arch != arch:
        raise CheckpointError(f"{path}: checkpoint is a {hp_arch!r} network, expected {arch!r}")
    model = build_net(level, arch, hp if isinstance(hp, dict) else {})
    return load_into(model, sd, path)


def image_tensor(image: np.ndarray, max_size: int | None = None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> (1, 3, H', W') float tensor, [0, 1] then ImageNet-normalised; resized (area) so that
    max(H', W') <= max_size. The map scale is then taken w.r.t. the original size (one image <-> map transform)."""
    from nre.features.images import resize_image

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    img, _ = resize_image(img, max_size)
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std)[None]


def default_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def file_digest(path: str | Path | None) -> str | None:
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- backends
class NRENetBackend(FeatureBackend):
    """Two networks (coarse stride 16, fine stride 2) loaded from Lightning-style checkpoints.

    Options: ``coarse_weights`` / ``fine_weights`` (checkpoint paths; ``None`` with ``random_init=True`` builds
    randomly initialised networks, for benchmarks and tests), ``max_size`` (coarse input: longest side, None = as is),
    ``fine_max_size`` (fine input), ``device`` (auto: CUDA when available, else CPU), ``coarse_stride`` (16, the
    architecture's, or 16 / k: see below), ``coarse_stride_mode``.

    ``coarse_stride`` 8 (or 4) gives a finer coarse grid from a network whose stride is 16 by architecture:
    ``coarse_stride_mode="features"`` (default) bilinearly upsamples its descriptor map by 16 / stride (half-pixel
    convention, the one image <-> map transform: cell j of the finer grid samples the network's map at
    (j + 0.5) / k - 0.5); ``"image"`` runs the network on the image upsampled by k (k^2 the cost; the network then
    sees the scene at k times its scale). 16 is the paper's coarse level."""

    arch: str = ""
    levels = ("coarse", "fine")
    uses_gpu = True

    def __init__(
        self,
        coarse_weights=None,
        fine_weights=None,
        max_size: int | None = None,
        fine_max_size: int | None = None,
        device: str | None = None,
        random_init: bool = False,
        seed: int = 0,
        coarse_stride: int = 16,
        coarse_stride_mode: str = "features",
    ):
        k = 16 / coarse_stride if isinstance(coarse_stride, (int, float)) and coarse_stride > 0 else 0
        if k < 1 or k != int(k):
            raise ValueError(
                f"{self.name}: coarse_stride must be 16 / k for an integer k >= 1 (16, 8, 4), got {coarse_stride!r}"
            )
        if coarse_stride_mode not in COARSE_STRIDE_MODES:
            raise ValueError(
                f"{self.name}: coarse_stride_mode must be one of {COARSE_STRIDE_MODES}, got {coarse_stride_mode!r}"
            )
        self.coarse_upsample = int(k)
        self.coarse_stride_mode = coarse_stride_mode

        self.device = default_device(device)
        self.max_sizes = {"coarse": max_size, "fine": fine_max_size}
        self.weights = {"coarse": coarse_weights, "fine": fine_weights}
        self.nets: dict[str, nn.Module] = {}
        self.temperature = 1.0
        for lv in self.levels:
            path = self.weights[lv]
            if path is None:
                if not random_init:
                    raise ValueError(
                        f"{self.name}: no {lv}_weights given (pass a checkpoint path, or random_init=True)"
                    )
                torch.manual_seed(int(seed) + (0 if lv == "coarse" else 1))
                net = build_net(lv, self.arch)
            else:
                net = load_network(path, level=lv, arch=self.arch)
            self.nets[lv] = net.to(self.device).eval()
        self._digests = {lv: file_digest(p) for lv, p in self.weights.items()}

    def options(self) -> dict:
        opts = {
            "weights": {lv: (str(p) if p is not None else None) for lv, p in self.weights.items()},
            "sha256": self._digests,
            "max_sizes": self.max_sizes,
        }
        if self.coarse_upsample != 1:  # recorded only when not the architecture's: older caches stay current
            opts["coarse_stride"] = 16 // self.coarse_upsample
            opts["coarse_stride_mode"] = self.coarse_stride_mode
        return opts

    @torch.no_grad()
    def extract(self, image: np.ndarray, levels=None) -> dict[str, DenseFeatures]:
        levels = self.levels if levels is None else levels
        H, W = np.asarray(image).shape[:2]
        out = {}
        cache: dict = {}
        for lv in levels:
            if lv not in self.nets:
                raise KeyError(f"backend {self.name!r} has no level {lv!r} (has {self.levels})")
            ms = self.max_sizes[lv]
            if ms not in cache:
                cache[ms] = image_tensor(image, ms).to(self.device)
            x = cache[ms]
            k = self.coarse_upsample if lv == "coarse" else 1
            if k > 1 and self.coarse_stride_mode == "image":  # align_corners=False: the half-pixel convention
                x = F.interpolate(x, scale_factor=k, mode="bilinear", align_corners=False)
            desc = self.nets[lv](x)[0].float()
            if k > 1 and self.coarse_stride_mode == "features":
                desc = F.interpolate(desc[None], scale_factor=k, mode="bilinear", align_corners=False)[0]
            desc = desc.cpu().contiguous()
            h, w = desc.shape[-2:]
            out[lv] = DenseFeatures(desc, np.array([w / W, h / H]), (W, H))
        return out


@register_backend
class NREOfficialBackend(NRENetBackend):
    """``nre_official``: the paper's networks with the official ``coarse.pth`` / ``fine.pth`` (Lightning files).
    The reference resizes fine inputs to at most 1600 px (``fine_max_size``); coarse inputs as given by default."""

    name = "nre_official"
    arch = "official"

    def __init__(self, coarse_weights=None, fine_weights=None, max_size=None, fine_max_size=1600, **kw):
        super().__init__(coarse_weights, fine_weights, max_size, fine_max_size, **kw)


@register_backend
class NRECompactBackend(NRENetBackend):
    """``nre_compact``: our compact networks; weights default to the shipped ``nre/weights/compact_{coarse,fine}.pth``
    (regenerated by ``nre train --config config/train.yaml``; see nre/weights/README.md). Its coarse level runs the
    coarse network on the image upsampled twice (stride 8), the setting measured best; preset ``paper``: stride 16."""

    name = "nre_compact"
    arch = "compact"

    def __init__(
        self,
        coarse_weights="default",
        fine_weights="default",
        max_size=None,
        fine_max_size=None,
        coarse_stride=8,
        coarse_stride_mode="image",
        **kw,
    ):
        paths = {}
        for lv, p in (("coarse", coarse_weights), ("fine", fine_weights)):
            if p == "default":
                p = COMPACT_WEIGHTS[lv]
                if not p.exists():
                    raise FileNotFoundError(
                        f"{p}: shipped {lv} weights of nre_compact are missing; regenerate them with "
                        "`nre train --config config/train.yaml --out work/train` (see nre/weights/README.md)"
                    )
            paths[lv] = p
        super().__init__(
            paths["coarse"],
            paths["fine"],
            max_size,
            fine_max_size,
            coarse_stride=coarse_stride,
            coarse_stride_mode=coarse_stride_mode,
            **kw,
        )
