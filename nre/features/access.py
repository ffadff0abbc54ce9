"""``PairFeatures``: lazy descriptor access for one pair (implements ``nre.estimators.problem.FeatureAccess``).

The target image's descriptor maps and the source descriptors of the query points are computed on first use, level
by level (an estimator that reads only the fine level never pays for the coarse one), and kept; a backend whose
levels share one network pass (``shared_levels = True``, e.g. S2DNet) extracts all its levels at once. Source
descriptors are sampled bilinearly (``DenseFeatures.sample``) at the points' projections with the source camera and
pose. The backend's softmax temperature is folded into the source
descriptors (divided by it), so every dot product ``source . target`` is directly a logit of the correspondence
map: pass ``temperature=1`` to ``nre.maps.dense.dense_maps``. ``raw_source_descriptors`` gives them before the
temperature (FPR compares descriptors, not logits). A backend with a ``FeatureMemo`` (``enable_memo``) serves the
maps of an image already extracted for an earlier pair from memory.

A backend that describes at points (``FeatureBackend.describes_points``, e.g. xfeat, aliked) is used through its
``PreparedImage`` of each image (kept in the memo under ``nre.features.base.PREPARED``): source descriptors are
computed at the query points themselves (not sampled from a dense map), dense maps come from the prepared image, and
``target_grid`` / ``target_cells`` give the fine level's grid and the descriptors of just the cells a local window
needs (``nre.maps.local.DescriptorFineSource``), each cell computed once per image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nre.data.pairdata import PairData
from nre.features.base import PREPARED, DenseFeatures, FeatureBackend, PreparedImage
from nre.features.images import load_image

if TYPE_CHECKING:
    import torch


class PairFeatures:
    def __init__(self, backend: FeatureBackend, pair: PairData):
        self.backend = backend
        self.pair = pair
        self.levels = tuple(backend.levels)
        self._tgt: dict[str, DenseFeatures] = {}
        self._src: dict[str, torch.Tensor] = {}
        self._src_maps: dict[str, DenseFeatures] = {}
        self._src_xy: tuple[np.ndarray, np.ndarray] | None = None
        self._images: dict[str, np.ndarray] = {}
        self._keys: dict[str, tuple] = {}  # FeatureMemo keys of the two images
        self._prepared: dict[str, PreparedImage] = {}
        self.describes_points = bool(getattr(backend, "describes_points", False))

    def _image(self, side: str) -> np.ndarray:
        if side not in self._images:
            path = self.pair.target_image if side == "target" else self.pair.source_image
            img = load_image(path)
            cam = self.pair.target_camera if side == "target" else self.pair.source_camera
            if (img.shape[1], img.shape[0]) != cam.size:
                raise ValueError(
                    f"{path}: image is {img.shape[1]}x{img.shape[0]} but its camera says {cam.width}x{cam.height}"
                )
            self._images[side] = img
        return self._images[side]

    def _check_level(self, level: str) -> None:
        if level not in self.levels:
            raise KeyError(f"backend {self.backend.name!r} has no level {level!r} (has {self.levels})")

    def prepared(self, side: str) -> PreparedImage:
        """The backend's ``PreparedImage`` of the source or target image (from the memo when it holds it)."""
        if side not in self._prepared:
            memo = getattr(self.backend, "memo", None)
            img = self._image(side)
            hit = None
            if memo is not None:
                if side not in self._keys:
                    self._keys[side] = memo.image_key(img)
                hit = memo.get(self._keys[side], PREPARED)
            if hit is None:
                hit = self.backend.prepare(img)
                if memo is not None:
                    memo.put(self._keys[side], PREPARED, hit)
            self._prepared[side] = hit
            self._images.pop(side, None)  # the prepared image holds all that is needed from it
        return self._prepared[side]

    def _path(self, side: str):
        return self.pair.target_image if side == "target" else self.pair.source_image

    def _extract(self, side: str, level: str) -> DenseFeatures:
        cache = self._tgt if side == "target" else self._src_maps
        if level not in cache and self.describes_points:
            self._check_level(level)
            cache.update(self._checked({level: self.prepared(side).dense(level)}, self._path(side)))
        if level not in cache:
            self._check_level(level)
            self._image(side)
            if getattr(self.backend, "shared_levels", False):
                wanted = tuple(lv for lv in self.levels if lv not in cache)
            else:
                wanted = (level,)
            memo = getattr(self.backend, "memo", None)
            path = self.pair.target_image if side == "target" else self.pair.source_image
            if memo is None:
                cache.update(self._checked(self.backend.extract(self._images[side], wanted), path))
            else:  # maps of an image seen in an earlier pair of this job are reused (FeatureMemo)
                if side not in self._keys:  # one digest per image, whichever levels are asked for
                    self._keys[side] = memo.image_key(self._images[side])
                key = self._keys[side]
                for lv in wanted:
                    hit = memo.get(key, lv)
                    if hit is not None:
                        cache[lv] = hit
                missing = tuple(lv for lv in wanted if lv not in cache)
                if missing:
                    got = self._checked(self.backend.extract(self._images[side], missing), path)
                    for lv, f in got.items():
                        memo.put(key, lv, f)
                    cache.update(got)
            if all(lv in self._tgt and lv in self._src_maps for lv in self.levels):
                self._images.clear()
        return cache[level]

    def _checked(self, got: dict[str, DenseFeatures], path) -> dict[str, DenseFeatures]:
        """The backend's maps, after checking that every descriptor is finite: NaN descriptors would make NaN
        correspondence maps whose argmaxes are arbitrary cells (confident wrong poses), so they are an error naming
        the image, the backend and the level (~1 ms for a fine dense-SIFT map)."""
        for lv, f in got.items():
            self._finite(f.desc, path, lv)
        return got

    def _finite(self, desc, path, level: str):
        import torch

        desc = torch.as_tensor(desc)
        if not bool(torch.isfinite(desc).all()):
            bad = int((~torch.isfinite(desc)).sum())
            raise ValueError(
                f"{path}: non-finite {self.backend.name} descriptors at level {level!r} ({bad} of {desc.numel()} "
                "values NaN or inf): broken weights or a broken image"
            )
        return desc

    def source_points_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) projections of the query points in the source image, and a mask of those in front and inside
        (the others get the descriptor of the nearest border position)."""
        if self._src_xy is None:
            cam, pose = self.pair.source_camera, self.pair.source_pose
            uv, valid = cam.project(self.pair.points3d, pose)
            self._src_xy = (uv, valid & cam.in_image(uv))
        return self._src_xy

    def source_descriptors(self, level: str) -> torch.Tensor:
        """(N, D) source descriptors divided by the level's temperature (dot products with target maps are logits).
        A backend that describes at points computes them at the points themselves; others sample the dense map."""
        if level not in self._src:
            uv, _ = self.source_points_xy()
            uv = np.nan_to_num(uv, nan=0.0, posinf=0.0, neginf=0.0)
            if self.describes_points:
                self._check_level(level)
                d = self._finite(self.prepared("source").describe(uv, level), self._path("source"), level)
            else:
                d = self._extract("source", level).sample(uv)
            self._src[level] = d / self._temperature(level)
        return self._src[level]

    def _temperature(self, level: str) -> float:
        return float(self.backend.level_temperature(level))

    def raw_source_descriptors(self, level: str) -> torch.Tensor:
        """Source descriptors before the temperature (the backend's own descriptors)."""
        return self.source_descriptors(level) * self._temperature(level)

    def target_grid(self, level: str) -> tuple[np.ndarray, tuple[int, int]]:
        """The target map's scale (map size / image size) and (h, w) at a level, without building a dense map when
        the backend describes at points."""
        if self.describes_points:
            self._check_level(level)
            scale, hw = self.prepared("target").grid(level)
            return np.asarray(scale, dtype=float), (int(hw[0]), int(hw[1]))
        f = self._extract("target", level)
        return f.scale, (int(f.desc.shape[1]), int(f.desc.shape[2]))

    def target_cells(self, level: str, flat) -> torch.Tensor:
        """(M, D) target descriptors (before the temperature) of the level's cells ``flat`` (y * w + x): computed
        for those cells only (and kept for later requests) when the backend describes at points, else taken from the
        dense map."""
        import torch

        flat = np.asarray(flat, dtype=np.int64)
        if self.describes_points:
            self._check_level(level)
            return self._finite(self.prepared("target").cells(level, flat), self._path("target"), level)
        desc = self._extract("target", level).desc
        return desc.reshape(desc.shape[0], -1)[:, torch.from_numpy(flat)].T

    def target_features(self, level: str) -> DenseFeatures:
        return self._extract("target", level)

    def target_map(self, level: str) -> torch.Tensor:
        return self._extract("target", level).desc

    def target_scale(self, level: str) -> np.ndarray:
        return self._extract("target", level).scale

    def release_source_maps(self) -> None:
        """Drop the source descriptor maps once the query descriptors are sampled (memory)."""
        for lv in self.levels:
            if lv not in self._src:
                self.source_descriptors(lv)
        self._src_maps.clear()
        self._images.pop("source", None)
        self._prepared.pop("source", None)
