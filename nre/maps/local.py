"""Local fine maps for the coarse-to-fine NRE (Sec. 5.3): windows around each point's coarse reprojection.

A local softmax over a window always sums to 1, so an outlier would get a full-strength peak. Each local map is
therefore scaled by a coarse probability mass m_n of its point and truncated at ln of the full fine grid's
|Omega-ring| (the dense fine map's Eq. 7 threshold), so outliers stay weak: C_f(q) = m_n softmax_window(q) / S^k.

What the scaling means (``local_norm``, k). Factor the dense fine map as C_f(q) = C_c(c(q)) C_f(q | c(q)), c(q) the
coarse cell of fine cell q (a coarse cell covers (coarse_stride / fine_stride)^2 fine cells). If m_n is the coarse
mass of the window's footprint (``window_mass``, ``mass_region="window"``) and the local softmax stands for the
conditional, then m_n softmax_window(q) IS the dense fine map's probability of q (tested on known descriptors):
``"mass"`` (k = 0) is the exact pmf, truncated where the dense map would be. Dividing by S (``"side"``, k = 1, what
the reference implementation does) or by the S^2 window cells (``"cells"``, k = 2, the default) makes every
local probability S or S^2 times smaller than the dense map's: the same as truncating the dense map at
ln(|Omega-ring| / S^k), i.e. a stricter outlier threshold (2.8 or 5.5 nats fewer gain for S = 16), not a
normalisation. In the reference's geometry (stride-16 coarse, stride-2 fine, S = 16) the window's footprint is
exactly the 2 x 2 coarse cells around the reprojection (``coarse_mass``, ``mass_region="corners"``); with our dsift
strides (coarse 8 or 16, fine 4) the 64-pixel window covers 8 x 8 or 4 x 4 coarse cells, of which "corners" takes
the central 2 x 2: a smaller mass, another (stricter) gate.

Why ``"cells"`` with ``"corners"`` is the default (a deliberate, stricter outlier threshold, not a normalisation):
the estimator starts the fine stage from the coarse pose, and from there the dense-map-like scalings recover fewer
wrong coarse poses, since their outlier cells survive; started at the true pose, S^2 costs something instead, as it
truncates every fine cell of points with little coarse mass (measurements: docs/results-log.md, "Fig. 5 stage by
stage"). ``local_norm="side"`` is the reference's formula, ``"mass"`` with ``mass_region="window"`` the exact pmf.

Windows are S x S fine cells (default S = 16 as in the reference; the paper says 64 x 64), centred on the coarse
reprojection: the window's centre ((S - 1) / 2 cells from its origin) is within half a cell of the reprojection, not
shifted by half a window as in the reference's output (tested), and kept ``margin_px`` (8) pixels inside the image.
Local maps are stored as ``SparseLossMaps`` over the full fine grid; no dense fine map is ever built.
"""

from __future__ import annotations

import numpy as np
import torch

from nre.geometry import Camera, Pose, img_to_map
from nre.maps.dense import SparseLossMaps, bilinear_corners, log_omega, padded_matmul, sparse_cells

LOCAL_NORMS = {"mass": 0, "side": 1, "cells": 2}  # name -> power of the window side S the local map is divided by
MASS_REGIONS = ("corners", "window")


def local_windows(
    pose: Pose, points3d: np.ndarray, camera: Camera, fine_scale, fine_shape, window: int, margin_px: float
):
    """Window origins (x0, y0) in fine cells centred on each point's reprojection, and the in-front mask."""
    h, w = fine_shape
    uv, valid = camera.project(points3d, pose)
    pf = img_to_map(uv, fine_scale)
    lo = np.ceil(img_to_map(np.array([margin_px, margin_px]), fine_scale)).astype(int)
    hi = np.floor(
        img_to_map(np.array([camera.width - 1 - margin_px, camera.height - 1 - margin_px]), fine_scale)
    ).astype(int) - (window - 1)
    lo = np.minimum(lo, [max(w - window, 0), max(h - window, 0)])
    hi = np.maximum(hi, lo)
    origin = np.round(pf - (window - 1) / 2.0)
    origin = np.where(np.isfinite(origin), origin, 0)
    x0 = np.clip(origin[:, 0], lo[0], hi[0]).astype(np.int64)
    y0 = np.clip(origin[:, 1], lo[1], hi[1]).astype(np.int64)
    return x0, y0, valid & np.isfinite(uv).all(1)


def descriptor_window_logprob(
    src: torch.Tensor, tgt: torch.Tensor, x0, y0, size: int, chunk_elems: int = 1 << 24
) -> np.ndarray:
    """Local log-softmax maps (M, size, size) of source descriptors on windows of the target map.

    The logits of a chunk of points on the whole target map are one matrix product, from which each point's
    window is gathered: faster than gathering (D, size, size) descriptor windows (docs/results-log.md); chunks hold
    ``chunk_elems`` logits."""
    D, h, w = tgt.shape
    out = np.empty((len(src), size, size), np.float32)
    ar = torch.arange(size)
    flat = tgt.reshape(D, h * w)
    chunk = max(1, min(256, chunk_elems // max(h * w, 1)))
    with torch.no_grad():
        for s in range(0, len(src), chunk):
            ys = (torch.as_tensor(y0[s : s + chunk])[:, None] + ar).clamp(0, h - 1)  # (m, S)
            xs = (torch.as_tensor(x0[s : s + chunk])[:, None] + ar).clamp(0, w - 1)
            idx = (ys[:, :, None] * w + xs[:, None, :]).reshape(len(ys), -1)  # (m, S * S) flat cells
            logits = torch.gather(padded_matmul(src[s : s + chunk], flat, chunk), 1, idx)  # padded: see there
            out[s : s + chunk] = torch.log_softmax(logits, -1).reshape(-1, size, size).numpy()
    return out


def cell_window_logprob(src: torch.Tensor, cells, shape, x0, y0, size: int, chunk: int = 256) -> np.ndarray:
    """``descriptor_window_logprob`` from the descriptors of just the cells the windows cover: ``cells(flat)`` gives
    (M, D) target descriptors of flat cells (y * w + x) of an (h, w) grid; each distinct cell is asked for once."""
    h, w = shape
    ar = np.arange(size)
    ys = np.clip(np.asarray(y0, dtype=np.int64)[:, None] + ar, 0, h - 1)
    xs = np.clip(np.asarray(x0, dtype=np.int64)[:, None] + ar, 0, w - 1)
    flat = (ys[:, :, None] * w + xs[:, None, :]).reshape(len(ys), -1)  # (M, S * S)
    uniq, inv = np.unique(flat, return_inverse=True)
    desc = cells(uniq)
    inv = torch.from_numpy(inv.reshape(flat.shape))
    out = np.empty((len(src), size, size), np.float32)
    with torch.no_grad():
        for s in range(0, len(src), chunk):
            logits = torch.einsum("md,msd->ms", src[s : s + chunk], desc[inv[s : s + chunk]])
            out[s : s + chunk] = torch.log_softmax(logits, -1).reshape(-1, size, size).numpy()
    return out


class DescriptorFineSource:
    """Local fine correspondence maps from descriptors: source point descriptors on windows of the target map.

    With features that describe at points (``PairFeatures.describes_points``) no dense fine map is built: the
    windows' cells are described on demand (``PairFeatures.target_cells``; the temperature is folded into the source
    descriptors, so target cells are the backend's own descriptors, as in the dense map)."""

    def __init__(self, features, level: str = "fine"):
        self.src = features.source_descriptors(level)
        if getattr(features, "describes_points", False):
            self.tgt = None
            scale, self.shape = features.target_grid(level)
            self.scale = np.asarray(scale, dtype=float)
            self._cells = lambda flat: features.target_cells(level, flat)
        else:
            self.tgt = features.target_map(level)
            self.scale = np.asarray(features.target_scale(level), dtype=float)
            self.shape = tuple(int(v) for v in self.tgt.shape[1:])

    def window_logprob(self, idx, x0, y0, size):
        if self.tgt is None:
            return cell_window_logprob(self.src[idx], self._cells, self.shape, x0, y0, size)
        return descriptor_window_logprob(self.src[idx], self.tgt, x0, y0, size)


def local_fine_maps(
    logp_local: np.ndarray, x0, y0, valid, coarse_mass: np.ndarray, fine_shape, fine_scale, norm: str = "cells"
) -> SparseLossMaps:
    """Sparse loss maps over the full fine grid from local windows, scaled by the coarse mass."""
    N, S, _ = logp_local.shape
    h, w = fine_shape
    trunc = log_omega(h, w)
    if norm == "reference":
        raise ValueError(
            "local_norm 'reference' was renamed: the reference implementation divides by the window side S "
            "('side'); our former default divided by the window cells S^2 ('cells'); see nre.maps.local"
        )
    if norm not in LOCAL_NORMS:
        raise ValueError(f"local_norm must be one of {sorted(LOCAL_NORMS)}, got {norm!r}")
    logm = np.log(np.maximum(np.asarray(coarse_mass, dtype=np.float64), 1e-300)) - LOCAL_NORMS[norm] * np.log(S)
    loss = -(logp_local + logm[:, None, None])
    ys, xs = np.mgrid[0:S, 0:S]
    X = x0[:, None, None] + xs
    Y = y0[:, None, None] + ys
    keep = (loss < trunc) & valid[:, None, None] & (X >= 0) & (X < w) & (Y >= 0) & (Y < h)
    n_idx, yy, xx = np.nonzero(keep)
    cells = (Y[n_idx, yy, xx] * w + X[n_idx, yy, xx]).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(n_idx, minlength=N))])
    return SparseLossMaps((h, w), offsets, cells, loss[n_idx, yy, xx], trunc, fine_scale)


def coarse_mass(maps: SparseLossMaps, pose: Pose, points3d: np.ndarray, camera: Camera) -> np.ndarray:
    """Probability mass of each coarse map in the 2 x 2 cells around the point's reprojection, read from the sparse
    maps (no dense map: at 1600 px and stride 8 a dense copy of 1000 coarse maps is ~100 MB)."""
    uv, valid = camera.project(points3d, pose)
    xy = img_to_map(uv, maps.scale)
    xy = np.where(valid[:, None] & np.isfinite(xy), xy, -10.0)
    flat, _, inside = bilinear_corners(xy, maps.shape)
    loss = sparse_cells(maps, np.where(inside, flat, 0), np.ones_like(inside))
    prob = np.where(inside, np.exp(-loss), 0.0)
    # cells at the truncation level hold (at most) 1/|Omega-ring|: count them as 0
    prob = np.where(loss >= maps.trunc, 0.0, prob)
    return prob.sum(1)


def window_mass(maps: SparseLossMaps, x0, y0, size: int, fine_scale) -> np.ndarray:
    """Coarse probability mass of each point's fine window: the coarse cells under the window's footprint, each
    weighted by the fraction of its area inside the window (the coarse pmf taken as uniform within a cell). Summed
    over the stored (non-truncated) cells only, whose probability exp(-L) is all the mass counted."""
    fs = np.asarray(fine_scale, dtype=float)
    cs = np.asarray(maps.scale, dtype=float)
    h, w = maps.shape

    # fine cell i spans map coordinates [i - 0.5, i + 0.5]: the window [x0 - 0.5, x0 + S - 0.5] in fine cells is
    # [x0 / fs - 0.5, (x0 + S) / fs - 0.5] in pixels, [x0 cs / fs - 0.5, (x0 + S) cs / fs - 0.5] in coarse cells
    def overlap(start, span, cell):  # window [start, start + span] of each stored cell's point vs its cell
        return np.clip(np.minimum(start + span, cell + 0.5) - np.maximum(start, cell - 0.5), 0.0, 1.0)

    n = maps.point_index()
    cx, cy = maps.cells % w, maps.cells // w
    sx = np.asarray(x0, dtype=float) * cs[0] / fs[0] - 0.5
    sy = np.asarray(y0, dtype=float) * cs[1] / fs[1] - 0.5
    wx = overlap(sx[n], size * cs[0] / fs[0], cx)
    wy = overlap(sy[n], size * cs[1] / fs[1], cy)
    prob = np.where(maps.values < maps.trunc, np.exp(-maps.values.astype(np.float64)), 0.0)
    return np.bincount(n, weights=prob * wx * wy, minlength=maps.n)


def build_local_maps(
    source,
    coarse_maps: SparseLossMaps,
    pose: Pose,
    points3d: np.ndarray,
    camera: Camera,
    window: int,
    margin_px: float,
    norm: str,
    region: str,
) -> SparseLossMaps:
    """The local fine maps of coarse-to-fine NRE at ``pose``: windows (``local_windows``), their local log-softmax
    from ``source`` (``DescriptorFineSource``'s interface), scaled by the coarse mass of ``region`` ("window":
    ``window_mass``; "corners": ``coarse_mass``) and the ``norm``."""
    if region not in MASS_REGIONS:
        raise ValueError(f"mass_region must be one of {MASS_REGIONS}, got {region!r}")
    fscale, fshape = source.scale, source.shape
    x0, y0, valid = local_windows(pose, points3d, camera, fscale, fshape, window, margin_px)
    logp = source.window_logprob(np.arange(len(points3d)), x0, y0, window)
    if region == "window":
        mass = window_mass(coarse_maps, x0, y0, window, fscale)
    else:
        mass = coarse_mass(coarse_maps, pose, points3d, camera)
    return local_fine_maps(logp, x0, y0, valid, mass, fshape, fscale, norm)
