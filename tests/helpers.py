"""Shared test helpers: repository paths, a Snakemake runner, hand-made result rows, and the pairs and map caches of
the committed tiny MegaDepth-format scene made through the library (tests/conftest.py makes them fixtures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from nre.estimators.rows import COLUMNS
from nre.eval import metrics as E

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
TINY_MD = DATA / "megadepth_tiny"  # two scenes: 0016 (model 0016_0) and 0033
SAMPLE = DATA / "sample_pair" / "pair.npz"  # official NRE sample format (tests/data/sample_pair)
THR = E.DEFAULT_THRESHOLDS


def snakemake(*args, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``python -m snakemake ARGS`` in the repository; ``check``: a failure raises with the end of its output."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


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


def make_rows(rng, estimators, n=30, splits=("test", "tuning"), features="dsift"):
    """Rows for ``n`` pairs per split (categories cycling easy, medium, hard).

    estimators: name -> {params tuple/dict: (rotation error or f(rng, category), success)}; a params key may be
    (params, stage) via a dict {"params": ..., "stage": ...}. Translation error = rotation error / 10."""
    rows = []
    for split in splits:
        for i in range(n):
            cat = E.CATEGORIES[i % 3]
            for est, params_err in estimators.items():
                for params, (rot, ok) in params_err.items():
                    stage = ""
                    if isinstance(params, tuple) and len(params) == 2 and params[0] == "stage":
                        stage, params = params[1], ()
                    if isinstance(params, tuple) and params and isinstance(params[0], tuple):  # ((k, v), stage)
                        params, stage = dict([params[0]]), params[1]
                    p = dict(params) if isinstance(params, dict) else ({params[0]: params[1]} if params else {})
                    r = rot(rng, cat) if callable(rot) else rot
                    row = dict.fromkeys(COLUMNS, np.nan)
                    row.update(
                        pair_id=f"{split}{i}",
                        scene="s",
                        category=cat,
                        split=split,
                        features=features,
                        estimator=est,
                        params=json.dumps(p, sort_keys=True),
                        stage=stage,
                        success=ok,
                        failure_reason="" if ok else "EstimatorError: boom",
                        rotation_error_deg=r,
                        translation_error=r / 10,
                        center_error=r / 10,
                        runtime_s=0.1,
                        inliers=10,
                        low_support=False,
                        diagnostics="{}",
                        versions="{}",
                    )
                    rows.append(row)
    return pd.DataFrame(rows)
