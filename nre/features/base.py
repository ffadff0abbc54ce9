"""The feature backend interface: an image in, dense descriptor maps per level out.

A backend has named levels (the paper's networks: "coarse" at stride 16 and "fine" at stride 2). ``extract`` takes an
RGB uint8 image (H, W, 3) and returns, per level, a ``DenseFeatures``: a (D, h, w) float32 torch tensor plus the
scale (sx, sy) = (w / W, h / H) of the one image <-> map transform (nre.geometry.img_to_map). ``temperature``
divides the dot products before the spatial softmax (1.0 for learned networks: raw dot product).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: a job that needs no features never loads it
    import torch

_BACKENDS: dict[str, type[FeatureBackend]] = {}


@dataclass
class DenseFeatures:
    desc: torch.Tensor  # (D, h, w) float32
    scale: np.ndarray  # (sx, sy) map size / image size
    image_size: tuple[int, int]  # (W, H) of the image given to extract (before any internal resize)

    def sample(self, xy_img: np.ndarray) -> torch.Tensor:
        """Bilinear descriptors at image pixels (N, 2) -> (N, D) (border-clamped)."""
        import torch

        from nre.geometry import img_to_map

        D, h, w = self.desc.shape
        xy = torch.as_tensor(img_to_map(xy_img, self.scale), dtype=torch.float32)
        # grid_sample with align_corners=True maps -1..1 to the centres of the first and last cells
        gx = 2 * xy[:, 0] / max(w - 1, 1) - 1
        gy = 2 * xy[:, 1] / max(h - 1, 1) - 1
        grid = torch.stack([gx, gy], -1)[None, None]
        out = torch.nn.functional.grid_sample(
            self.desc[None], grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        return out[0, :, 0].T.contiguous()


class FeatureBackend(ABC):
    name: ClassVar[str] = ""
    levels: ClassVar[tuple[str, ...]] = ("coarse", "fine")
    temperature: float = 1.0

    @abstractmethod
    def extract(self, image: np.ndarray, levels: tuple[str, ...] | None = None) -> dict[str, DenseFeatures]:
        """Dense descriptors of an RGB uint8 image at the requested levels (default: all)."""


def register_backend(cls: type[FeatureBackend]) -> type[FeatureBackend]:
    _BACKENDS[cls.name] = cls
    return cls


def get_backend(name: str, **options) -> FeatureBackend:
    import importlib
    import pkgutil

    import nre.features as pkg

    for info in pkgutil.iter_modules(pkg.__path__):  # backends register themselves on import
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"nre.features.{info.name}")
    if name not in _BACKENDS:
        raise KeyError(f"unknown feature backend {name!r}; available: {', '.join(sorted(_BACKENDS)) or 'none'}")
    return _BACKENDS[name](**options)
