"""Per-pair result rows: one per (pair, estimator, hyperparameter setting, stage).

| column | meaning |
| --- | --- |
| pair_id, scene, category, split | from the pair table |
| features | feature backend of the maps |
| estimator | registered name |
| params | hyperparameter setting as JSON (sorted keys) |
| stage | stage name for multi-stage estimators (nre_c2f: p3p, coarse_gnc, fine_gnc), else "" |
| success, failure_reason | a failure keeps its row, with infinite errors |
| qw qx qy qz tx ty tz | estimated world-to-camera pose (NaN on failure) |
| rotation_error_deg, translation_error, center_error | against the ground truth (inf on failure) |
| runtime_s, inliers, low_support | run time of the setting (shared set-up included), RANSAC support |
| diagnostics, versions | JSON: estimator diagnostics; library versions |
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from nre.geometry import R_to_quat_wxyz, pose_error

COLUMNS = [
    "pair_id",
    "scene",
    "category",
    "split",
    "features",
    "estimator",
    "params",
    "stage",
    "success",
    "failure_reason",
    "qw",
    "qx",
    "qy",
    "qz",
    "tx",
    "ty",
    "tz",
    "rotation_error_deg",
    "translation_error",
    "center_error",
    "runtime_s",
    "inliers",
    "low_support",
    "diagnostics",
    "versions",
]


def params_key(setting: dict) -> str:
    return json.dumps(setting, sort_keys=True)


def _jsonable(d: dict) -> str:
    def conv(v):
        if isinstance(v, (np.floating, float)):
            return None if not math.isfinite(float(v)) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.ndarray):
            return v.tolist()
        return v if isinstance(v, (str, int, bool, type(None), list, dict)) else str(v)

    return json.dumps({k: conv(v) for k, v in d.items() if k != "traceback"}, sort_keys=True)


def rows_from_results(
    pair_row: dict, estimator: str, settings: list[dict], results, gt_pose, versions: str, features: str = ""
):
    rows = []
    for setting, res_list in zip(settings, results):
        for r in res_list:
            err = pose_error(r.pose if r.success else None, gt_pose) if gt_pose is not None else None
            if r.success and r.pose is not None:
                q = R_to_quat_wxyz(r.pose.R)
                t = r.pose.t
            else:
                q = t = [np.nan] * 4
            rows.append(
                {
                    "pair_id": pair_row["pair_id"],
                    "scene": pair_row.get("scene", ""),
                    "category": pair_row.get("category", ""),
                    "split": pair_row.get("split", ""),
                    "features": features,
                    "estimator": estimator,
                    "params": params_key(setting),
                    "stage": r.stage or "",
                    "success": bool(r.success),
                    "failure_reason": r.failure_reason or "",
                    "qw": q[0],
                    "qx": q[1],
                    "qy": q[2],
                    "qz": q[3],
                    "tx": t[0],
                    "ty": t[1],
                    "tz": t[2],
                    "rotation_error_deg": err.rotation_deg if err else np.nan,
                    "translation_error": err.translation if err else np.nan,
                    "center_error": err.center if err else np.nan,
                    "runtime_s": float(r.runtime_s),
                    "inliers": -1 if r.inliers is None else int(r.inliers),
                    "low_support": bool(r.diagnostics.get("low_support", False)),
                    "diagnostics": _jsonable(r.diagnostics),
                    "versions": versions,
                }
            )
    return rows


def write(rows: list[dict], path) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.to_parquet(path, index=False)
    return df


def read(paths) -> pd.DataFrame:
    if isinstance(paths, (str, bytes)) or not hasattr(paths, "__iter__"):
        paths = [paths]
    frames = [pd.read_parquet(p) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
