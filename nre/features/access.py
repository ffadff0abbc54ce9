"""``PairFeatures``: lazy descriptor access for one pair (implements nre.problem.FeatureAccess).

Target descriptor maps and the source descriptors of the query points are extracted on first use and kept. The
backend's softmax temperature is folded into the source descriptors (divided by it), so that every dot product
``source . target`` is directly a logit of the correspondence map.
"""

from __future__ import annotations

import numpy as np
import torch

from nre.features.base import DenseFeatures, FeatureBackend
from nre.pair import PairData, read_image


class PairFeatures:
    def __init__(self, backend: FeatureBackend, pair: PairData):
        self.backend = backend
        self.pair = pair
        self.levels = tuple(backend.levels)
        self._tgt: dict[str, DenseFeatures] = {}
        self._src: dict[str, torch.Tensor] = {}
        self._src_maps: dict[str, DenseFeatures] = {}

    def _extract(self, side: str, level: str) -> DenseFeatures:
        cache = self._tgt if side == "target" else self._src_maps
        if level not in cache:
            if level not in self.levels:
                raise KeyError(f"backend {self.backend.name!r} has no level {level!r} (has {self.levels})")
            path = self.pair.target_image if side == "target" else self.pair.source_image
            img = read_image(path)
            cam = self.pair.target_camera if side == "target" else self.pair.source_camera
            if (img.shape[1], img.shape[0]) != cam.size:
                raise ValueError(
                    f"{path}: image is {img.shape[1]}x{img.shape[0]} but its camera says {cam.width}x{cam.height}"
                )
            missing = [lv for lv in self.levels if lv not in cache]
            cache.update(self.backend.extract(img, tuple(missing)))
        return cache[level]

    def source_points_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Projections of the query points in the source image and a mask of those in front and inside."""
        cam, pose = self.pair.source_camera, self.pair.source_pose
        uv, valid = cam.project(self.pair.points3d, pose)
        return uv, valid & cam.in_image(uv)

    def source_descriptors(self, level: str) -> torch.Tensor:
        if level not in self._src:
            uv, _ = self.source_points_xy()
            d = self._extract("source", level).sample(uv)
            self._src[level] = d / float(self.backend.temperature)
        return self._src[level]

    def raw_source_descriptors(self, level: str) -> torch.Tensor:
        """Source descriptors before the temperature (the backend's own descriptors)."""
        return self.source_descriptors(level) * float(self.backend.temperature)

    def target_features(self, level: str) -> DenseFeatures:
        return self._extract("target", level)

    def target_map(self, level: str) -> torch.Tensor:
        return self._extract("target", level).desc

    def target_scale(self, level: str) -> np.ndarray:
        return self._extract("target", level).scale
