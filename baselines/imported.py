"""Poses computed elsewhere, evaluated like any estimator: a CSV with columns pair_id, qw, qx, qy, qz, tx, ty, tz
(world-to-camera, quaternion w first), optionally runtime_s. Config: ``imported: {options: {csv: path}}``; give the
entry another key and ``class: imported`` to import several methods."""

from __future__ import annotations

import functools
import os

import numpy as np

from nre.estimators.base import Estimator
from nre.estimators.problem import Result
from nre.geometry import Pose

COLUMNS = ["pair_id", "qw", "qx", "qy", "qz", "tx", "ty", "tz"]


def _load(path: str):
    """The CSV indexed by pair id (re-read when the file changes)."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as e:
        raise FileNotFoundError(f"imported poses: cannot read {path} ({e})") from e
    return _load_cached(path, mtime)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: int):
    import pandas as pd

    df = pd.read_csv(path, dtype={"pair_id": str})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (needs {COLUMNS})")
    if df["pair_id"].duplicated().any():
        raise ValueError(f"{path}: duplicated pair ids, e.g. {df.loc[df['pair_id'].duplicated(), 'pair_id'].iloc[0]}")
    return df.set_index("pair_id")


class Imported(Estimator):
    """Poses computed elsewhere (option ``csv``: pair_id, qw, qx, qy, qz, tx, ty, tz world-to-camera[, runtime_s])."""

    name = "imported"
    label = "Imported poses"
    grid = {}
    defaults = {"csv": ""}
    needs = frozenset()

    def estimate_many(self, problem, settings):
        if not self.options["csv"]:
            return [[Result.failure("imported: no csv option given")] for _ in settings]
        df = _load(str(self.options["csv"]))
        if str(problem.pair_id) not in df.index:
            return [[Result.failure("no imported pose for this pair")] for _ in settings]
        r = df.loc[str(problem.pair_id)]
        q = np.array([r["qw"], r["qx"], r["qy"], r["qz"]], dtype=float)
        t = np.array([r["tx"], r["ty"], r["tz"]], dtype=float)
        if not (np.isfinite(q).all() and np.isfinite(t).all()) or np.linalg.norm(q) < 1e-9:
            return [[Result.failure("imported pose is NaN or invalid")] for _ in settings]
        rt = float(r["runtime_s"]) if "runtime_s" in df.columns else float("nan")
        return [[Result(Pose.from_qt(q, t), runtime_s=rt)] for _ in settings]
