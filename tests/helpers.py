"""Shared test helpers: repository paths, and the pairs and map caches of the committed tiny MegaDepth-format scene
made through the library."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
TINY_MD = DATA / "megadepth_tiny"  # two scenes: 0016 (model 0016_0) and 0033
SAMPLE = DATA / "sample_pair" / "pair.npz"  # official NRE sample format (tests/data/sample_pair)


def tiny_pairs(out: Path, n_pairs: int = 3, root: Path = TINY_MD, **kw) -> pd.DataFrame:
    """Test pairs of scene 0016 of ``root`` (at least 20 covisible points, no tuning split) written to ``out``."""
    from nre.data.pairs import build_pair_table, read_pair_table

    args = dict(scenes=["0016"], n_pairs=n_pairs, min_covisible=20, n_tuning=0) | kw
    build_pair_table(root=root, out=out, **args)
    return read_pair_table(out)


def tiny_maps(pairs: Path, out_dir: Path, root: Path = TINY_MD, max_points: int = 200, **kw):
    """The map caches of ``pairs`` in ``out_dir`` (dense SIFT, one thread, manifest ``out_dir``/m.csv)."""
    from nre.maps.job import compute_maps

    args = dict(threads=1, manifest=out_dir / "m.csv") | kw
    return compute_maps(pairs=pairs, root=root, out_dir=out_dir, max_points=max_points, **args)
