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

from nre.errors import InputError

if TYPE_CHECKING:  # torch is imported where it is used: a job that needs no features never loads it
    import torch

_BACKENDS: dict[str, type[FeatureBackend]] = {}
# Backends that run a network, on CUDA when a GPU is visible and on the CPU otherwise (``device: auto``): the workflow
# asks a GPU for their jobs on a cluster (workflow/rules, resource ``gpu``). A plain set, so that the workflow reads it
# without importing torch; tests/test_cluster.py checks it against the backends' ``uses_gpu``.
GPU_BACKENDS = frozenset({"nre_compact", "nre_official", "s2dnet"})


def backend_uses_gpu(name: str) -> bool:
    """Whether the feature backend ``name`` runs a network that a GPU speeds up (dense SIFT does not)."""
    return name in GPU_BACKENDS


class FeatureMemo:
    """Descriptor maps of recently seen images, kept in memory for the pairs that follow (least recently used evicted
    beyond ``max_mb``). Pairs are sorted by scene and source image and each image takes part in ~10 pairs, so a job
    over a chunk extracts each image about once instead of once per pair. Keyed by a digest of the image's pixels
    (and its shape) and the level: a changed file can never be served stale maps. Results are bit-identical: the
    same ``DenseFeatures`` objects are returned, and nothing modifies them in place. One memo serves one backend
    (``FeatureBackend.memo``); off by default (the timing rule measures extraction per pair)."""

    def __init__(self, max_mb: float = 512):
        from collections import OrderedDict

        if max_mb < 0:
            raise ValueError(f"feature memo size must be >= 0 MB, got {max_mb}")
        self.max_bytes = int(max_mb * 2**20)
        self._items: OrderedDict = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def image_key(image: np.ndarray) -> tuple:
        import hashlib

        a = np.ascontiguousarray(image)
        return (a.shape, str(a.dtype), hashlib.blake2b(a.data, digest_size=16).hexdigest())

    def get(self, key: tuple, level: str) -> DenseFeatures | None:
        item = self._items.get((key, level))
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end((key, level))
        self.hits += 1
        return item

    def put(self, key: tuple, level: str, feats: DenseFeatures) -> None:
        size = self._size(feats)
        if size > self.max_bytes:
            return
        old = self._items.pop((key, level), None)
        if old is not None:
            self.nbytes -= self._size(old)
        self._items[(key, level)] = feats
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, ev = self._items.popitem(last=False)
            self.nbytes -= self._size(ev)

    @staticmethod
    def _size(feats: DenseFeatures) -> int:
        d = feats.desc
        return d.numel() * d.element_size() if hasattr(d, "numel") else d.nbytes

    def __len__(self) -> int:
        return len(self._items)

    def summary(self) -> str:
        n = self.hits + self.misses
        return (
            f"feature memo: {self.hits}/{n} level look-ups served from memory, {len(self)} maps "
            f"({self.nbytes / 2**20:.0f} of {self.max_bytes / 2**20:.0f} MB)"
        )


def enable_memo(backend: FeatureBackend, max_mb: float | None) -> FeatureBackend:
    """Give ``backend`` a ``FeatureMemo`` of ``max_mb`` MB (``None`` or 0: none). Returns the backend."""
    backend.memo = FeatureMemo(max_mb) if max_mb else None
    return backend


def memo_mb_default() -> float:
    """The memo size of the maps and estimate jobs: ``NRE_FEATURE_MEMO_MB`` if set (0 disables it), else 512 MB.
    An environment variable, not a config key: it changes memory and time only, never a result, so it must not
    change the config hash nor make Snakemake rerun finished jobs."""
    import os

    v = os.environ.get("NRE_FEATURE_MEMO_MB", "512")
    try:
        mb = float(v)
    except ValueError:
        raise ValueError(f"NRE_FEATURE_MEMO_MB must be a number of MB, got {v!r}") from None
    if mb < 0:
        raise ValueError(f"NRE_FEATURE_MEMO_MB must be >= 0, got {v!r}")
    return mb


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
    uses_gpu: ClassVar[bool] = False  # runs a network (on CUDA when a GPU is visible): keep GPU_BACKENDS in step
    temperature: float = 1.0
    memo: FeatureMemo | None = None  # see enable_memo

    @abstractmethod
    def extract(self, image: np.ndarray, levels: tuple[str, ...] | None = None) -> dict[str, DenseFeatures]:
        """Dense descriptors of an RGB uint8 image at the requested levels (default: all)."""


def register_backend(cls: type[FeatureBackend]) -> type[FeatureBackend]:
    _BACKENDS[cls.name] = cls
    return cls


class BackendError(InputError, TypeError):
    """An unknown feature backend, an unknown option or a missing checkpoint file (one line naming it)."""


class UnknownBackendError(BackendError, KeyError):
    __str__ = Exception.__str__  # KeyError would print the message in quotes


def get_backend(name: str, **options) -> FeatureBackend:
    """Build the backend ``name``. Its options are checked first against ``nre.features.catalog`` (names,
    checkpoint files), so a misspelt option or a missing weights file is a ``BackendError`` naming it."""
    import importlib

    from nre.features.catalog import BACKENDS, describe, option_problems

    if name in BACKENDS:
        problems = option_problems(name, options)
        if problems:
            raise BackendError(f"feature backend {name!r}: {describe(name, problems)}")
    for module in sorted({info.module for info in BACKENDS.values()}):  # backends register themselves on import
        importlib.import_module(module)
    if name not in _BACKENDS:
        raise UnknownBackendError(
            f"unknown feature backend {name!r}; available: {', '.join(sorted(set(_BACKENDS) | set(BACKENDS)))}"
        )
    return _BACKENDS[name](**options)
