"""Per-pair result rows: one per (pair, estimator, hyperparameter setting, stage).

| column | meaning |
| --- | --- |
| pair_id, scene, category, split | from the pair table |
| features | feature backend of the maps |
| estimator | the config key of the estimator (its registered name by default; `<key>@<k>` for repeat k) |
| params | hyperparameter setting as JSON (sorted keys) |
| stage | stage name for multi-stage estimators (nre_c2f: p3p, coarse_gnc, fine_gnc), else "" |
| success, failure_reason | a failure keeps its row, with infinite errors |
| qw qx qy qz tx ty tz | estimated world-to-camera pose (NaN on failure) |
| rotation_error_deg, translation_error, center_error | nre.geometry.pose_error against the ground truth: degrees, \
  ``||t_est - t_gt||``, camera-centre distance (inf on failure; NaN for a success without ground truth) |
| runtime_s, inliers, low_support | run time of the setting (shared set-up included), RANSAC support |
| diagnostics, versions | JSON: estimator diagnostics (NaN/inf as null); library versions (``nre version``) |

A failure (``success`` False) never loses its row: pose NaN, errors inf, ``failure_reason`` says why (estimator
exception, NaN pose, time-out, missing cache, bad data). ``read`` checks the columns and names the file it reads.
"""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from nre.errors import FileFormatError
from nre.geometry import Pose, R_to_quat_wxyz, pose_error

# the row schema, by dtype (COLUMNS gives the order)
ID_COLUMNS = ["pair_id", "scene", "category", "split", "features", "estimator", "params", "stage"]
FLOAT_COLUMNS = [
    "qw", "qx", "qy", "qz", "tx", "ty", "tz", "rotation_error_deg", "translation_error", "center_error", "runtime_s",
]  # fmt: skip
COLUMNS = [
    *ID_COLUMNS, "success", "failure_reason", *FLOAT_COLUMNS, "inliers", "low_support", "diagnostics", "versions",
]  # fmt: skip
STR_COLUMNS = [*ID_COLUMNS, "failure_reason", "diagnostics", "versions"]


def params_key(setting: dict) -> str:
    """A hyperparameter setting as the ``params`` column: JSON with sorted keys."""
    return json.dumps(_clean(setting), sort_keys=True)


def _clean(v):
    """JSON-safe copy: numpy scalars/arrays to Python, non-finite floats to None, unknown objects to str."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    return v if isinstance(v, (str, type(None))) else str(v)


def _jsonable(d: dict) -> str:
    return json.dumps(_clean({k: v for k, v in d.items() if k != "traceback"}), sort_keys=True)


def rows_from_results(
    problem, pair_row, estimator_name, settings: list[dict], results, versions, features: str = ""
) -> list[dict]:
    """One row per (setting, stage) of ``results`` (as returned by ``Estimator.run``) for one pair.

    ``problem`` supplies the ground truth (``problem.gt_pose``); it may be ``None`` or a ``Pose`` (the ground truth
    itself) when the problem could not be built. ``pair_row``: the pair table row (dict or Series). ``versions``: dict
    or JSON string. The older order ``(pair_row, estimator, settings, results, gt_pose, versions[, features])`` is
    still accepted."""
    if isinstance(pair_row, str):
        # legacy order: (pair_row, estimator, settings, results, gt_pose, versions[, features])
        problem, pair_row, estimator_name, settings, results, versions, features = (
            results,
            problem,
            pair_row,
            estimator_name,
            settings,
            results_versions(versions),
            features,
        )
    gt_pose = problem if isinstance(problem, Pose) or problem is None else problem.gt_pose
    if isinstance(versions, dict):
        versions = json.dumps(versions, sort_keys=True)
    pair_row = dict(pair_row)
    rows = []
    for setting, res_list in zip(settings, results, strict=True):
        for r in res_list:
            ok = bool(r.success) and r.pose is not None
            if not ok:
                err = (math.inf, math.inf, math.inf)
            elif gt_pose is None:
                err = (math.nan, math.nan, math.nan)
            else:
                e = pose_error(r.pose, gt_pose)
                err = (e.rotation_deg, e.translation, e.center)
            q, t = (R_to_quat_wxyz(r.pose.R), r.pose.t) if ok else ([np.nan] * 4, [np.nan] * 3)
            rows.append(
                {
                    "pair_id": str(pair_row["pair_id"]),
                    "scene": str(pair_row.get("scene", "")),
                    "category": str(pair_row.get("category", "")),
                    "split": str(pair_row.get("split", "")),
                    "features": features,
                    "estimator": estimator_name,
                    "params": params_key(setting),
                    "stage": r.stage or "",
                    "success": ok,
                    "failure_reason": "" if ok else (r.failure_reason or "failed (no reason given)"),
                    "qw": float(q[0]),
                    "qx": float(q[1]),
                    "qy": float(q[2]),
                    "qz": float(q[3]),
                    "tx": float(t[0]),
                    "ty": float(t[1]),
                    "tz": float(t[2]),
                    "rotation_error_deg": float(err[0]),
                    "translation_error": float(err[1]),
                    "center_error": float(err[2]),
                    "runtime_s": float(r.runtime_s),
                    "inliers": -1 if r.inliers is None else int(r.inliers),
                    "low_support": bool(r.diagnostics.get("low_support", False)),
                    "diagnostics": _jsonable(r.diagnostics),
                    "versions": versions,
                }
            )
    return rows


def results_versions(versions) -> str:
    return versions if isinstance(versions, str) else json.dumps(versions, sort_keys=True)


def frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as a DataFrame with the schema's columns and dtypes (also when empty)."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in FLOAT_COLUMNS:
        df[c] = df[c].astype("float64")
    df["inliers"] = df["inliers"].astype("int64")
    df["success"] = df["success"].astype(bool)
    df["low_support"] = df["low_support"].astype(bool)
    for c in STR_COLUMNS:
        df[c] = df[c].astype("str")
    return df


def write(rows: list[dict], path) -> pd.DataFrame:
    """Write rows as parquet (atomically: a partial file never looks like a result) and return the frame."""
    df = frame(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)
    return df


def read(paths) -> pd.DataFrame:
    """Concatenated rows of one or several parquet files; a file missing schema columns is an error naming it."""
    if isinstance(paths, (str, bytes, Path)) or not hasattr(paths, "__iter__"):
        paths = [paths]
    frames = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(errno.ENOENT, "no such result-rows file", str(p))
        if p.is_dir():  # pandas would read a folder as a dataset
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a result-rows file (parquet)", str(p))
        try:
            df = pd.read_parquet(p)
        except (ValueError, OSError) as e:  # pyarrow: ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise FileFormatError(f"{p}: not a result-rows file (parquet): {type(e).__name__}") from None
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise FileFormatError(f"{p}: not a result-rows file, missing columns {missing}")
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else frame([])
