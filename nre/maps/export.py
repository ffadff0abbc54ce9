"""Export of cached matches and maps to HDF5, for tools outside this project.

One group per pair (``/<pair_id>``), written from a pair (``PairData``, capped as in the cache) and its cache arrays
(``nre.maps.cache``):

    /<pair_id>/points3d            (N, 3) float64 world points (the capped query points)
    /<pair_id>/point_index         (N,) int indices of those points into the pair's source points
    /<pair_id>/matches/xy          (N, 2) float32 target image pixels (pixel centres at integer coordinates;
                                   add 0.5 for COLMAP's convention) of each dense-level map's argmax
    /<pair_id>/matches/score       (N,) argmax probability;  /<pair_id>/matches/entropy (N,) map entropy (nats)
    /<pair_id>/coarse_maps/offsets (N + 1,), cells (nnz,) flat y * w + x, values (nnz,) float32 truncated loss
                                   attrs: shape (h, w), scale (sx, sy) map / image, trunc = ln(h * w + 1)
    /<pair_id>/target              attrs: model, width, height, params (camera), R, t (ground truth, world-to-camera)
    attrs of the pair group: backend, backend_options (JSON), cache version

Cells not stored in a coarse map have loss ``trunc``. Map cell (x, y) is centred on image pixel
``(x + 0.5) / scale - 0.5`` (``nre.geometry.map_to_img``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nre.data.pairdata import PairData
from nre.maps.dense import SparseLossMaps


def write_pair(h5, pair: PairData, arrays: dict, maps: bool = True) -> None:
    """Write one pair's group into an open ``h5py.File`` (replacing an existing group of that pair)."""
    pid = str(arrays["pair_id"])
    if pid != pair.pair_id:
        raise ValueError(f"cache arrays are for pair {pid}, not {pair.pair_id}")
    if pid in h5:
        del h5[pid]
    g = h5.create_group(pid)
    g.attrs["backend"] = str(arrays["backend"])
    g.attrs["backend_options"] = str(arrays["backend_options"])
    g.attrs["cache_version"] = int(arrays["version"])
    g.create_dataset("points3d", data=np.asarray(pair.points3d, dtype=np.float64))
    g.create_dataset("point_index", data=np.asarray(arrays["point_index"]))
    m = g.create_group("matches")
    m.create_dataset("xy", data=np.asarray(arrays["match_xy"], dtype=np.float32))
    m.create_dataset("score", data=np.asarray(arrays["match_score"], dtype=np.float32))
    m.create_dataset("entropy", data=np.asarray(arrays["match_entropy"], dtype=np.float32))
    t = g.create_group("target")
    cam = pair.target_camera
    t.attrs.update(model=cam.model, width=cam.width, height=cam.height, params=cam.params)
    t.attrs.update(R=pair.target_pose.R, t=pair.target_pose.t)
    if maps:
        cm = SparseLossMaps.from_arrays(arrays, "coarse_")
        c = g.create_group("coarse_maps")
        c.create_dataset("offsets", data=cm.offsets, compression="gzip")
        c.create_dataset("cells", data=cm.cells, compression="gzip")
        c.create_dataset("values", data=cm.values, compression="gzip")
        c.attrs.update(shape=np.array(cm.shape), scale=cm.scale, trunc=cm.trunc)


def export_h5(path: str | Path, items: Iterable[tuple[PairData, dict]], maps: bool = True) -> int:
    """Write (pair, cache arrays) items into an HDF5 file (appending / replacing pairs); returns the count."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with h5py.File(path, "a") as h5:
        for pair, arrays in items:
            write_pair(h5, pair, arrays, maps)
            n += 1
    return n


def read_pair(path: str | Path, pair_id: str) -> dict:
    """One pair's matches and coarse maps back from an export (for tests and tools)."""
    import h5py

    with h5py.File(path, "r") as h5:
        if pair_id not in h5:
            raise KeyError(f"{path}: no pair {pair_id!r} (has {len(h5)} pairs)")
        g = h5[pair_id]
        out = {
            "points3d": g["points3d"][()],
            "match_xy": g["matches/xy"][()],
            "match_score": g["matches/score"][()],
            "backend": g.attrs["backend"],
        }
        if "coarse_maps" in g:
            c = g["coarse_maps"]
            out["coarse_maps"] = SparseLossMaps(
                tuple(c.attrs["shape"]),
                c["offsets"][()],
                c["cells"][()],
                c["values"][()],
                float(c.attrs["trunc"]),
                c.attrs["scale"],
            )
        return out
