"""The map engine: correspondence maps, robust loss maps (Eq. 7), compact sparse storage, bilinear look-ups.

A correspondence map C_n is the spatial softmax over the h*w cells of the dot products between the source
point descriptor h_n and the target descriptor map H (optionally divided by a temperature). The "out" category
has C_n(out) = 0 and |Omega-ring| = h*w + 1. The robust loss map is L_n = min(ln|Omega-ring|, -ln C_n): only its
cells below ln|Omega-ring| are stored (``SparseLossMaps``).

Bilinear look-up rule (shared by MSAC scoring, GNC and the torch NRE): a map position (x, y) (map cells,
see ``nre.geometry.img_to_map``) spreads its mass over the four cells around it with weights
(1-a)(1-b), a(1-b), (1-a)b, ab, a = x - floor(x), b = y - floor(y). A corner outside the grid is "out": its
loss is ln|Omega-ring| in the robust form (+inf in the plain NRE with s = 1). So the band between the outermost
cell centres and the image border interpolates between the edge cell and "out", and a point behind the camera
is entirely "out".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1


def log_omega(h: int, w: int) -> float:
    """ln |Omega-ring| = ln(h * w + 1)."""
    return float(np.log(h * w + 1.0))


@dataclass
class SparseLossMaps:
    """Truncated loss maps of N points on an (h, w) grid in CSR form.

    offsets: (N + 1,) int64; the cells of point n are cells[offsets[n]:offsets[n + 1]].
    cells:   (nnz,) int32 flat indices y * w + x into the (h, w) grid.
    values:  (nnz,) float32 loss values L < trunc.
    trunc:   the truncation level ln|Omega-ring| (for local fine maps: ln of the full fine grid's |Omega-ring|).
    scale:   (sx, sy) = map size / image size (the image <-> map transform of nre.geometry).
    """

    shape: tuple[int, int]
    offsets: np.ndarray
    cells: np.ndarray
    values: np.ndarray
    trunc: float
    scale: np.ndarray = field(default_factory=lambda: np.ones(2))

    def __post_init__(self):
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.cells = np.asarray(self.cells, dtype=np.int32)
        self.values = np.asarray(self.values, dtype=np.float32)
        self.scale = np.asarray(self.scale, dtype=float).reshape(2)
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        if self.offsets[-1] != len(self.cells) or len(self.cells) != len(self.values):
            raise ValueError(
                f"inconsistent sparse maps: offsets end at {self.offsets[-1]}, "
                f"{len(self.cells)} cells, {len(self.values)} values"
            )

    @property
    def n(self) -> int:
        return len(self.offsets) - 1

    @property
    def nnz(self) -> int:
        return len(self.cells)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.cells.nbytes + self.values.nbytes

    def point_index(self) -> np.ndarray:
        """(nnz,) index of the point each stored cell belongs to."""
        return np.repeat(np.arange(self.n), self.counts)

    def cell_xy(self) -> np.ndarray:
        """(nnz, 2) (x, y) map coordinates of the stored cells."""
        w = self.shape[1]
        return np.stack([self.cells % w, self.cells // w], -1)

    def subset(self, idx: np.ndarray) -> SparseLossMaps:
        idx = np.asarray(idx)
        counts = self.counts[idx]
        starts = self.offsets[idx]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        gather = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
        return SparseLossMaps(self.shape, offsets, self.cells[gather], self.values[gather], self.trunc, self.scale)

    def to_dense(self, idx: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
        """(N, h, w) dense truncated loss maps (memory: N * h * w * itemsize)."""
        sub = self if idx is None else self.subset(idx)
        h, w = self.shape
        dense = np.full((sub.n, h * w), sub.trunc, dtype=dtype)
        dense[sub.point_index(), sub.cells] = sub.values
        return dense.reshape(sub.n, h, w)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}shape": np.array(self.shape),
            f"{prefix}offsets": self.offsets,
            f"{prefix}cells": self.cells,
            f"{prefix}values": self.values.astype(np.float16),
            f"{prefix}trunc": np.array(self.trunc),
            f"{prefix}scale": self.scale,
        }

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "") -> SparseLossMaps:
        return cls(
            tuple(arrays[f"{prefix}shape"]),
            arrays[f"{prefix}offsets"],
            arrays[f"{prefix}cells"],
            np.asarray(arrays[f"{prefix}values"], dtype=np.float32),
            float(arrays[f"{prefix}trunc"]),
            arrays[f"{prefix}scale"],
        )


def sparse_lookup(maps: SparseLossMaps, xy: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Robust loss L_n (Eq. 7) of each map n bilinearly interpolated at map position xy[n] (N, 2), straight from the
    sparse form (no dense map): unstored cells and out-of-grid corners cost ``trunc``; ``valid`` False (behind the
    camera, NaN) gives ``trunc``. Same rule as ``lookup_dense``."""
    h, w = maps.shape
    xy = np.asarray(xy, dtype=np.float64)
    ok = np.isfinite(xy).all(1) if valid is None else (np.asarray(valid, bool) & np.isfinite(xy).all(1))
    xy = np.where(ok[:, None], xy, -10.0)
    flat, wts, inside = bilinear_corners(xy, (h, w))
    if maps.nnz == 0:
        return np.full(maps.n, maps.trunc)
    corner = sparse_cells(maps, flat, inside)
    return np.sum(wts * corner, 1)


def sparse_cells(maps: SparseLossMaps, flat: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The loss of map n at its flat cells ``flat[n, k]`` (N, K) from the sparse form: unstored cells and cells not
    ``inside`` hold ``trunc``. Values keep the maps' float32 (they equal ``to_dense()`` at those cells)."""
    h, w = maps.shape
    if maps.nnz == 0:
        return np.full(flat.shape, maps.trunc, dtype=np.float32)
    # one sorted key per stored cell: point * h * w + cell (sorted here if the cells of a point are not)
    keys = maps.point_index().astype(np.int64) * (h * w) + maps.cells
    vals = maps.values
    if np.any(np.diff(keys) < 0):
        order = np.argsort(keys, kind="stable")
        keys, vals = keys[order], vals[order]
    q = np.arange(maps.n)[:, None] * (h * w) + flat
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return np.where(inside & (keys[pos] == q), vals[pos], np.float32(maps.trunc))


def sparse_argmin(maps: SparseLossMaps) -> tuple[np.ndarray, np.ndarray]:
    """Per-map argmin of sparse loss maps: (N, 2) map cells (x, y) (NaN for a map with no stored cell) and (N,) the
    minimum loss (``trunc`` for an empty map). Ties go to the lowest flat cell index."""
    xy = np.full((maps.n, 2), np.nan)
    mins = np.full(maps.n, maps.trunc, dtype=np.float64)
    if maps.nnz:
        # segment reductions over the CSR rows (O(nnz), no sort): the minimum, then the lowest cell attaining it
        has = maps.counts > 0
        starts = maps.offsets[:-1][has]
        seg_min = np.minimum.reduceat(maps.values, starts)
        is_min = maps.values == np.repeat(seg_min, maps.counts[has])
        c = np.minimum.reduceat(np.where(is_min, maps.cells.astype(np.int64), np.iinfo(np.int64).max), starts)
        w = maps.shape[1]
        xy[has] = np.c_[c % w, c // w]
        mins[has] = seg_min
    return xy, mins


def sparse_entropy(maps: SparseLossMaps) -> np.ndarray:
    """Entropy (nats) of each map from its stored cells, sum_q p ln(1/p) with p = exp(-L). Truncated cells (p below
    1 / |Omega-ring| each) are left out, so this is a lower bound, exact for peaked maps; ``dense_maps``'s
    ``MapStats.entropy`` is the exact value when the dense maps are available."""
    v = maps.values.astype(np.float64)
    return np.bincount(maps.point_index(), weights=np.exp(-v) * v, minlength=maps.n)


def bilinear_corners(xy: np.ndarray, shape: tuple[int, int]):
    """The 4 corner cells of map positions (..., 2): flat indices (..., 4), weights (..., 4), inside mask (..., 4)."""
    h, w = shape
    x, y = xy[..., 0], xy[..., 1]
    x0 = np.floor(x)
    y0 = np.floor(y)
    a = x - x0
    b = y - y0
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    cx = np.stack([x0, x0 + 1, x0, x0 + 1], -1)
    cy = np.stack([y0, y0, y0 + 1, y0 + 1], -1)
    wts = np.stack([(1 - a) * (1 - b), a * (1 - b), (1 - a) * b, a * b], -1)
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    flat = np.where(inside, cy * w + cx, 0)
    return flat, wts, inside


def lookup_dense(dense: np.ndarray, point_idx: np.ndarray, xy: np.ndarray, valid: np.ndarray, trunc: float):
    """Bilinear look-up of truncated loss maps ``dense`` (N, h, w) at map positions xy (..., 2) of points
    ``point_idx`` (...,); ``valid`` False (behind the camera, NaN) gives ``trunc``. Vectorised over any batch shape."""
    N, h, w = dense.shape
    xy = np.where(valid[..., None], xy, -10.0)
    flat, wts, inside = bilinear_corners(xy, (h, w))
    vals = dense.reshape(N, h * w)[point_idx[..., None], flat]
    vals = np.where(inside, vals, trunc)
    return np.sum(wts * vals, -1)


# ----------------------------------------------------------------------------------------------- engine
def padded_matmul(a: torch.Tensor, b: torch.Tensor, rows: int) -> torch.Tensor:
    """``a @ b`` computed as the first ``len(a)`` rows of a product with ``rows`` rows (``a`` zero-padded).

    Chunked loops use it so that every chunk, the short last one included, is one product of the same shape.
    BLAS picks its kernel by shape and thread count, so a product of a few rows can differ in the last bits from the
    same rows inside a full-shape product, and between thread counts (docs/results-log.md, "Determinism of the
    maps"); full-shape products agree bit for bit across thread counts (tests/test_maps.py), so a padded last chunk
    makes the maps independent of the thread count (``--cores``) and of where chunks end."""
    import torch

    m = a.shape[0]
    if m < rows:
        a = torch.cat([a, a.new_zeros((rows - m, a.shape[1]))])
    return (a @ b)[:m]


def correspondence_logits(
    src_desc: torch.Tensor, tgt_map: torch.Tensor, temperature: float = 1.0, rows: int = 0
) -> torch.Tensor:
    """Log correspondence maps: (N, D) x (D, h, w) -> (N, h*w) log-softmax over the cells. ``rows`` > N pads
    the product to that many rows (see ``padded_matmul``)."""
    import torch

    D, h, w = tgt_map.shape
    logits = padded_matmul(src_desc, tgt_map.reshape(D, h * w), rows)
    if temperature != 1.0:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1)


@dataclass
class MapStats:
    """Per-map summaries of dense correspondence maps."""

    argmax_xy: np.ndarray  # (N, 2) map cells (x, y) of the most probable cell
    score: np.ndarray  # (N,) its probability
    entropy: np.ndarray  # (N,) Shannon entropy of the map (nats)
    min_loss: np.ndarray  # (N,) -ln score, the map's minimum loss


def dense_maps(
    src_desc: torch.Tensor | np.ndarray,
    tgt_map: torch.Tensor | np.ndarray,
    temperature: float = 1.0,
    scale=(1.0, 1.0),
    sparse: bool = True,
    chunk: int = 256,
    max_cells_per_point: int | None = None,
) -> tuple[SparseLossMaps | None, MapStats]:
    """Correspondence maps of every source descriptor on the target map, computed in chunks of points so that
    memory stays bounded: returns the sparse truncated loss maps (if ``sparse``) and per-map stats.

    ``max_cells_per_point`` optionally keeps only the lowest-loss cells of each map (documented approximation,
    off by default)."""
    import torch

    src = torch.as_tensor(src_desc, dtype=torch.float32)
    tmap = torch.as_tensor(tgt_map, dtype=torch.float32)
    D, h, w = tmap.shape
    trunc = log_omega(h, w)
    N = src.shape[0]
    argmax = np.zeros(N, dtype=np.int64)
    score = np.zeros(N, dtype=np.float32)
    entropy = np.zeros(N, dtype=np.float32)
    cells_l, values_l, counts = [], [], np.zeros(N, dtype=np.int64)
    with torch.no_grad():
        for s in range(0, N, chunk):
            logp = correspondence_logits(src[s : s + chunk], tmap, temperature, chunk)
            mx, am = logp.max(-1)
            argmax[s : s + chunk] = am.numpy()
            score[s : s + chunk] = mx.exp().numpy()
            p = logp.exp()
            entropy[s : s + chunk] = (-(p * logp).sum(-1)).numpy()
            if sparse:
                loss = -logp
                keep = loss < trunc
                if max_cells_per_point is not None:
                    k = min(max_cells_per_point, h * w)
                    kth = loss.kthvalue(k, dim=-1, keepdim=True).values
                    keep &= loss <= kth
                rows, cols = keep.nonzero(as_tuple=True)
                counts[s : s + chunk] = torch.bincount(rows, minlength=keep.shape[0]).numpy()
                cells_l.append(cols.numpy().astype(np.int32))
                values_l.append(loss[rows, cols].numpy())
    stats = MapStats(
        argmax_xy=np.stack([argmax % w, argmax // w], -1).astype(np.float64),
        score=score,
        entropy=entropy,
        min_loss=-np.log(np.maximum(score, 1e-30)),
    )
    if not sparse:
        return None, stats
    offsets = np.concatenate([[0], np.cumsum(counts)])
    maps = SparseLossMaps(
        (h, w),
        offsets,
        np.concatenate(cells_l) if cells_l else np.zeros(0, np.int32),
        np.concatenate(values_l) if values_l else np.zeros(0, np.float32),
        trunc,
        np.asarray(scale, dtype=float),
    )
    return maps, stats
