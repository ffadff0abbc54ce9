"""S2DNet (Germain et al., ECCV 2020): a VGG16 hypercolumn with adaptation layers, backend ``s2dnet``.

Architecture (facts from the public S2DNet release, code written here): the VGG16 feature extractor up to conv5_3
(``encoder``: torchvision's ``vgg16.features`` indices 0..28, convs with bias), features taken at conv1_2, conv3_3 and
conv5_3 (strides 1, 4, 16), each through an adaptation layer ``adaptation_layers.adap_layer_<i>`` =
1x1 conv (64) -> ReLU -> 5x5 conv (128, padding 2) -> BatchNorm: three 128-channel maps.
In the release the hypercolumn tensors of conv1_2 and conv3_3 are modified by the in-place ReLU that follows them, so
the adaptation layers see the rectified activations; conv5_3 is the last encoder layer and stays unrectified.
We reproduce that behaviour explicitly.

Weights: the official ``s2dnet_weights.pth`` is a dict with ``state_dict`` and ``hypercolumn_layers``; it is read
with ``nre.features.nets.checkpoints`` (weights-only, strict keys and shapes).

Levels: which hypercolumn serves as ``coarse`` and which as ``fine`` is an option: ``coarse_layer`` (default conv5_3,
stride 16, as the NRE coarse network) and ``fine_layer`` (default conv1_2, stride 1: the full-resolution maps of the
paper's Table 1; conv3_3, stride 4, is the cheaper choice). Images RGB in [0, 1], ImageNet mean / std.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nre.features.base import DenseFeatures, FeatureBackend, register_backend
from nre.features.nets.nre_nets import default_device, file_digest, image_tensor

# (name, torchvision vgg16.features index, output channels, stride)
VGG16_CONVS = {
    "conv1_1": (0, 64, 1),
    "conv1_2": (2, 64, 1),
    "conv2_1": (5, 128, 2),
    "conv2_2": (7, 128, 2),
    "conv3_1": (10, 256, 4),
    "conv3_2": (12, 256, 4),
    "conv3_3": (14, 256, 4),
    "conv4_1": (17, 512, 8),
    "conv4_2": (19, 512, 8),
    "conv4_3": (21, 512, 8),
    "conv5_1": (24, 512, 16),
    "conv5_2": (26, 512, 16),
    "conv5_3": (28, 512, 16),
}
DEFAULT_HYPERCOLUMN = ("conv1_2", "conv3_3", "conv5_3")


def vgg16_encoder() -> nn.Sequential:
    """torchvision's vgg16.features without its last ReLU and max-pool (indices 0..28)."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    layers, cin = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers[:-1])  # ends at conv5_3


class AdaptationLayers(nn.Module):
    def __init__(self, hypercolumn_layers=DEFAULT_HYPERCOLUMN, output_dim: int = 128):
        super().__init__()
        for i, name in enumerate(hypercolumn_layers):
            cin = VGG16_CONVS[name][1]
            layer = nn.Sequential(
                nn.Conv2d(cin, 64, 1), nn.ReLU(), nn.Conv2d(64, output_dim, 5, padding=2), nn.BatchNorm2d(output_dim)
            )
            self.add_module(f"adap_layer_{i}", layer)


class S2DNet(nn.Module):
    def __init__(self, hypercolumn_layers=DEFAULT_HYPERCOLUMN, output_dim: int = 128):
        super().__init__()
        unknown = [n for n in hypercolumn_layers if n not in VGG16_CONVS]
        if unknown:
            raise ValueError(f"unknown VGG16 layers {unknown}; choose from {list(VGG16_CONVS)}")
        self.hypercolumn_layers = list(hypercolumn_layers)
        self.encoder = vgg16_encoder()
        self.adaptation_layers = AdaptationLayers(self.hypercolumn_layers, output_dim)

    def forward(self, x: torch.Tensor, wanted: list[str] | None = None) -> dict[str, torch.Tensor]:
        """{layer name: (B, 128, h, w)} for the hypercolumn layers in ``wanted`` (default all)."""
        wanted = list(self.hypercolumn_layers if wanted is None else wanted)
        idx = {VGG16_CONVS[n][0]: (i, n) for i, n in enumerate(self.hypercolumn_layers) if n in wanted}
        last = max(idx) if idx else -1
        out = {}
        n_layers = len(self.encoder)
        for i, layer in enumerate(self.encoder):
            if i > last:
                break
            x = layer(x)
            if i in idx:
                k, name = idx[i]
                feat = F.relu(x) if i + 1 < n_layers else x  # the release's in-place ReLU rectifies it
                out[name] = getattr(self.adaptation_layers, f"adap_layer_{k}")(feat)
        return out


def load_s2dnet(path) -> S2DNet:
    """An S2DNet with the official ``s2dnet_weights.pth`` (``state_dict`` + ``hypercolumn_layers``), strictly."""
    from nre.features.nets.checkpoints import CheckpointError, load_into, read_checkpoint

    sd, _, obj = read_checkpoint(path)
    layers = obj.get("hypercolumn_layers", list(DEFAULT_HYPERCOLUMN))
    if not isinstance(layers, (list, tuple)) or not all(isinstance(n, str) for n in layers):
        raise CheckpointError(f"{path}: 'hypercolumn_layers' must be a list of VGG16 layer names, got {layers!r}")
    return load_into(S2DNet(tuple(layers)), sd, path)


@register_backend
class S2DNetBackend(FeatureBackend):
    """``s2dnet``. Options: ``weights`` (path to s2dnet_weights.pth; or ``random_init=True``), ``coarse_layer``
    (default conv5_3), ``fine_layer`` (default conv1_2), ``max_size``, ``device``."""

    name = "s2dnet"
    levels = ("coarse", "fine")
    uses_gpu = True

    def __init__(
        self,
        weights=None,
        coarse_layer: str = "conv5_3",
        fine_layer: str = "conv1_2",
        max_size: int | None = None,
        device: str | None = None,
        random_init: bool = False,
        seed: int = 0,
    ):
        self.device = default_device(device)
        if weights is None:
            if not random_init:
                raise ValueError("s2dnet: pass weights=<path to s2dnet_weights.pth> (or random_init=True)")
            torch.manual_seed(int(seed))
            net = S2DNet()
        else:
            net = load_s2dnet(weights)
        for lv, name in (("coarse", coarse_layer), ("fine", fine_layer)):
            if name not in net.hypercolumn_layers:
                raise ValueError(f"s2dnet: {lv}_layer {name!r} is not a hypercolumn layer {net.hypercolumn_layers}")
        self.net = net.to(self.device).eval()
        self.layer_of = {"coarse": coarse_layer, "fine": fine_layer}
        self.weights = weights
        self.max_size = max_size
        self.temperature = 1.0
        self._digest = file_digest(weights)

    def options(self) -> dict:
        return {
            "weights": str(self.weights) if self.weights else None,
            "sha256": self._digest,
            "layers": self.layer_of,
            "max_size": self.max_size,
        }

    shared_levels = True  # one VGG pass serves every level: PairFeatures extracts them together

    @torch.no_grad()
    def extract(self, image: np.ndarray, levels=None) -> dict[str, DenseFeatures]:
        levels = self.levels if levels is None else levels
        bad = [lv for lv in levels if lv not in self.layer_of]
        if bad:
            raise KeyError(f"backend 's2dnet' has no level {bad[0]!r} (has {self.levels})")
        H, W = np.asarray(image).shape[:2]
        x = image_tensor(image, self.max_size).to(self.device)
        maps = self.net(x, [self.layer_of[lv] for lv in levels])
        out = {}
        for lv in levels:
            desc = maps[self.layer_of[lv]][0].float().cpu().contiguous()
            h, w = desc.shape[-2:]
            out[lv] = DenseFeatures(desc, np.array([w / W, h / H]), (W, H))
        return out
