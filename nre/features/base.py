"""The feature backend interface: an image in, dense descriptor maps per level out.

A backend has named levels (the paper's networks: "coarse" at stride 16 and "fine" at stride 2). ``extract`` takes an
RGB uint8 image (H, W, 3) and returns, per level, a ``DenseFeatures``: a (D, h, w) float32 torch tensor plus the
scale (sx, sy) = (w / W, h / H) of the one image <-> map transform (nre.geometry.img_to_map). ``temperature``
divides the dot products before the spatial softmax (1.0 for learned networks: raw dot product); a backend whose
levels need different temperatures overrides ``level_temperature``.

Optional capability, describing at points (``describes_points = True``): ``prepare(image)`` runs the backend's network
once and returns a ``PreparedImage`` (the per-image intermediate, e.g. the backbone's feature map), from which
descriptors are computed at any image pixels and any level (``describe``), at cells of a level's grid (``cells``,
memoised per cell) or densely (``dense``). ``nre.features.access.PairFeatures`` then keeps the ``PreparedImage`` in the
``FeatureMemo`` and computes source descriptors only at the query points and fine target descriptors only on the
cells of the local windows the estimator asks for. A backend without the capability keeps the dense path (its
``extract`` maps, sampled bilinearly), unchanged.
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
GPU_BACKENDS = frozenset({"aliked", "nre_compact", "nre_official", "s2dnet", "xfeat"})
PREPARED = "@prepared"  # the FeatureMemo level under which a backend's PreparedImage of an image is kept


def backend_uses_gpu(name: str) -> bool:
    """Whether the feature backend ``name`` runs a network that a GPU speeds up (dense SIFT does not)."""
    return name in GPU_BACKENDS


class FeatureMemo:
    """Descriptor maps of recently seen images, kept in memory for the pairs that follow (least recently used evicted
    beyond ``max_mb``). Pairs are sorted by scene and source image and each image takes part in ~10 pairs, so a job
    over a chunk extracts each image about once instead of once per pair. Keyed by a digest of the image's pixels
    (and its shape) and the level: a changed file can never be served stale maps. Results are bit-identical: the
    same ``DenseFeatures`` objects are returned, and nothing modifies them in place. A backend that describes at
    points keeps its ``PreparedImage`` of each image here instead (level ``PREPARED``; its memoised cells only ever
    gain entries, each computed the same way whenever asked). One memo serves one backend (``FeatureBackend.memo``);
    off by default (the timing rule measures extraction per pair)."""

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

    def get(self, key: tuple, level: str) -> DenseFeatures | PreparedImage | None:
        item = self._items.get((key, level))
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end((key, level))
        self.hits += 1
        return item

    def put(self, key: tuple, level: str, feats: DenseFeatures | PreparedImage) -> None:
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
    def _size(feats: DenseFeatures | PreparedImage) -> int:
        if isinstance(feats, PreparedImage):
            return feats.nbytes
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


class PreparedImage(ABC):
    """A backend's per-image intermediate (its network pass over one image), from which descriptors are computed at
    any pixels and any level of the backend. Cells of a level's grid are memoised: each is computed once, however
    many pairs and estimators ask for it (``cells``; the memory is counted in ``nbytes`` from the start, so the
    ``FeatureMemo`` accounts for it). Subclasses set ``image_size``, ``dim`` and ``level_names`` and implement
    ``grid``, ``describe`` and ``compute_cells``; ``compute_cells`` must give each cell the same bits whichever other
    cells are computed with it (maps must not depend on the order of requests)."""

    image_size: tuple[int, int]  # (W, H) of the image given to prepare
    dim: int  # descriptor dimension
    level_names: tuple[str, ...] = ()

    def __init__(self):
        self._cells: dict[str, tuple] = {}

    @abstractmethod
    def grid(self, level: str) -> tuple[np.ndarray, tuple[int, int]]:
        """The level's grid: scale (w / W, h / H) relative to ``image_size`` (the one image <-> map transform) and
        (h, w)."""

    @abstractmethod
    def describe(self, xy_img: np.ndarray, level: str) -> torch.Tensor:
        """(N, D) float32 descriptors (before any temperature) at image pixels (N, 2) of the level; positions outside
        the image get the descriptor of the nearest position inside."""

    @abstractmethod
    def compute_cells(self, level: str, flat: np.ndarray) -> torch.Tensor:
        """(M, D) descriptors of the level's cells ``flat`` (y * w + x), not memoised (see ``cells``)."""

    @property
    def base_nbytes(self) -> int:
        return 0

    @property
    def nbytes(self) -> int:
        """Memory of the intermediate plus the full cell buffers of every level (allocated on first use)."""
        total = self.base_nbytes
        for lv in self.level_names:
            h, w = self.grid(lv)[1]
            total += h * w * (self.dim * 4 + 1)
        return total

    def cells(self, level: str, flat) -> torch.Tensor:
        """(M, D) descriptors of the level's cells ``flat``, each computed once and kept."""
        import torch

        flat = np.asarray(flat, dtype=np.int64).reshape(-1)
        if level not in self._cells:
            h, w = self.grid(level)[1]
            self._cells[level] = (torch.empty((h * w, self.dim), dtype=torch.float32), np.zeros(h * w, dtype=bool))
        buf, done = self._cells[level]
        need = np.unique(flat[~done[flat]])
        if len(need):
            buf[torch.from_numpy(need)] = self.compute_cells(level, need)
            done[need] = True
        return buf[torch.from_numpy(flat)]

    def dense(self, level: str) -> DenseFeatures:
        """The level's dense map (every cell; memoised like ``cells``)."""
        scale, (h, w) = self.grid(level)
        desc = self.cells(level, np.arange(h * w))
        return DenseFeatures(desc.T.reshape(-1, h, w).contiguous(), np.asarray(scale, dtype=float), self.image_size)


class FeatureBackend(ABC):
    name: ClassVar[str] = ""
    levels: ClassVar[tuple[str, ...]] = ("coarse", "fine")
    uses_gpu: ClassVar[bool] = False  # runs a network (on CUDA when a GPU is visible): keep GPU_BACKENDS in step
    describes_points: ClassVar[bool] = False  # implements prepare (see the module doc)
    temperature: float = 1.0
    memo: FeatureMemo | None = None  # see enable_memo

    @abstractmethod
    def extract(self, image: np.ndarray, levels: tuple[str, ...] | None = None) -> dict[str, DenseFeatures]:
        """Dense descriptors of an RGB uint8 image at the requested levels (default: all)."""

    def level_temperature(self, level: str) -> float:
        """The softmax temperature of a level (dot products of its descriptors are divided by it)."""
        return float(self.temperature)

    def prepare(self, image: np.ndarray) -> PreparedImage:
        """The per-image intermediate of a backend with ``describes_points`` (see ``PreparedImage``)."""
        raise NotImplementedError(f"feature backend {self.name!r} does not describe at points")

    def extract_prepared(self, prepared: PreparedImage, levels: tuple[str, ...] | None = None) -> dict:
        """``extract`` of a backend with ``describes_points``: the dense maps of its prepared image."""
        levels = self.levels if levels is None else tuple(levels)
        unknown = [lv for lv in levels if lv not in self.levels]
        if unknown:
            raise KeyError(f"backend {self.name!r} has no level(s) {unknown} (levels: {self.levels})")
        return {lv: prepared.dense(lv) for lv in levels}


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
            text = describe(name, problems)
            prefix = f"feature backend {name!r}"
            raise BackendError(text if text.startswith(prefix) else f"{prefix}: {text}")
    for module in sorted({info.module for info in BACKENDS.values()}):  # backends register themselves on import
        importlib.import_module(module)
    if name not in _BACKENDS:
        raise UnknownBackendError(
            f"unknown feature backend {name!r}; available: {', '.join(sorted(set(_BACKENDS) | set(BACKENDS)))}"
        )
    return _BACKENDS[name](**options)
