"""Regression check of a run against its committed reference (``results/<name>/``).

The reference holds the evaluation's failure rates (``failure_rates.csv``), the summary (``summary.csv``: median
errors and AUC of each estimator's selected setting), the tables and figures, the per-pair rows (``rows.parquet``)
and ``provenance.json``: hashes of the config file and of the pair table, and the library versions.

Checks, in order (each failure names what to do):
1. stale reference: the reference's config hash no longer matches the config file (the config changed and the
   reference was not updated on purpose);
2. different pairs: the run's pair table is not the reference's (data or pair sampling changed);
3. per-metric tolerances (``TOLERANCES``), on every cell of the reference (a cell missing from the run fails too):
   - failure rates (``t>X``, ``R>Xdeg``, ``mean_failure``) of every (features, estimator, params, stage, split,
     category): ``max(abs, flips / n)``, n the pairs of the cell, i.e. how many pairs may flip across the threshold;
   - median errors of the summary (``median_rot_deg``, ``median_trans``): ``abs + rel * |reference|``;
   - AUC of the summary: ``flips / n`` (one pair's curve step).
   Default: one pair may flip per cell, medians may move by 2% + 0.01. How they were derived: repeated runs of
   config/quick.yaml on one machine are bit-identical (every random choice is seeded; measured with
   ``variation``), and so are runs with other chunk sizes and --cores (tests/test_workflow.py); the tolerance only
   absorbs floating-point differences across machines and library builds, where an argmax or a RANSAC sample may
   change. ``gc_ransac`` (OpenCV USAC_ACCURATE) is not bit-reproducible run to run: it gets 2 flips per cell.
``variation(dirs)`` measures the largest difference of every metric between repeated runs: rerun a config a few
times and pass the evaluation folders to set the tolerances from measurements (``nre regress --measure``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from nre.results import COLUMNS as ROW_COLUMNS

RATE_KEYS = ["features", "estimator", "params", "stage", "split", "category"]
SUMMARY_KEYS = ["features", "estimator", "stage", "category"]
NONDETERMINISTIC = {"gc_ransac": 2}
TOLERANCES = {
    "rate_flips": 1.0,  # pairs allowed to flip per rate cell
    "rate_abs": 0.0,
    "median_rel": 0.02,
    "median_abs": 0.01,
    "auc_flips": 1.0,
}
REFERENCE_FILES = (".csv", ".md", ".tex", ".png")
COLUMNS = ["what", *RATE_KEYS, "metric", "reference", "current", "tolerance"]


def file_hash(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def provenance(config_path, pairs_csv) -> dict:
    from nre.commands.version import versions

    out = {
        "config": str(config_path),
        "config_sha256": file_hash(config_path),
        "pairs_sha256": file_hash(pairs_csv),
        "versions": versions(),
    }
    generator = synth_generator(config_path)
    if generator is not None:
        out["synth_generator"] = generator
    return out


def synth_generator(config_path) -> int | None:
    """``nre.data.synth.GENERATOR_VERSION`` if the config's data are the generated scenes (``data.synth``), else
    None (e.g. MegaDepth)."""
    import yaml

    cfg = yaml.safe_load(Path(config_path).read_text()) or {}
    if not (cfg.get("data") or {}).get("synth"):
        return None
    from nre.data.synth import GENERATOR_VERSION

    return GENERATOR_VERSION


def _norm(df: pd.DataFrame, keys) -> pd.DataFrame:
    df = df.copy()
    for k in keys:
        if k in df.columns:
            df[k] = ["" if pd.isna(v) else str(v) for v in df[k]]
    return df


def _moved(ref, cur, keys, metrics, tol_of, what) -> list[dict]:
    """Rows for every reference cell missing from ``cur`` or with a metric beyond its tolerance."""
    ref = _norm(ref, keys).set_index(keys)
    cur = _norm(cur, keys).set_index(keys)
    cur = cur[~cur.index.duplicated()]
    rows = []
    base = dict.fromkeys(RATE_KEYS, "")
    missing = ref.index.difference(cur.index)
    for key in missing:
        rows.append(
            {
                **base,
                **dict(zip(keys, key)),
                "what": what,
                "metric": "(missing)",
                "reference": np.nan,
                "current": np.nan,
                "tolerance": 0.0,
            }
        )
    common = ref.index.intersection(cur.index)
    if not len(common):
        return rows
    r, c = ref.loc[common], cur.loc[common]
    for m in metrics:
        if m not in c.columns:
            continue
        rv, cv = r[m].to_numpy(dtype=float), c[m].to_numpy(dtype=float)
        tol = tol_of(r, m)
        same = (rv == cv) | (np.isnan(rv) & np.isnan(cv))
        bad = ~same & ~(np.abs(cv - rv) <= tol + 1e-12)
        for i in np.flatnonzero(bad):
            rows.append(
                {
                    **base,
                    **dict(zip(keys, common[i])),
                    "what": what,
                    "metric": m,
                    "reference": rv[i],
                    "current": cv[i],
                    "tolerance": float(tol[i]),
                }
            )
    return rows


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    abs_tol: float | None = None,
    pairs_tol: float | None = None,
    ref_summary: pd.DataFrame | None = None,
    cur_summary: pd.DataFrame | None = None,
    tolerances: dict | None = None,
) -> pd.DataFrame:
    """Rows of what moved beyond tolerance (empty when the run matches its reference)."""
    tol = {**TOLERANCES, **(tolerances or {})}
    if abs_tol is not None:
        tol["rate_abs"] = abs_tol
    if pairs_tol is not None:
        tol["rate_flips"] = pairs_tol
    rate_cols = [c for c in reference.columns if c.startswith(("t>", "R>"))] + ["mean_failure"]

    def rate_tol(r, m):
        flips = np.array([NONDETERMINISTIC.get(k[1], tol["rate_flips"]) for k in r.index], dtype=float)
        n = np.maximum(r["n"].to_numpy(dtype=float), 1)
        return np.maximum(tol["rate_abs"], flips / n)  # (a mean of rates moves at most as much as its largest)

    rows = _moved(reference, current, RATE_KEYS, rate_cols, rate_tol, "rate")
    if ref_summary is not None and cur_summary is not None and len(ref_summary):

        def sum_tol(r, m):
            if m.startswith("AUC"):
                flips = np.array([NONDETERMINISTIC.get(k[1], tol["auc_flips"]) for k in r.index], dtype=float)
                return flips / np.maximum(r["n"].to_numpy(dtype=float), 1)
            v = np.abs(r[m].to_numpy(dtype=float))
            return tol["median_abs"] + tol["median_rel"] * np.where(np.isfinite(v), v, 0.0)

        metrics = [c for c in ref_summary.columns if c.startswith(("median_rot", "median_trans", "AUC"))]
        rows += _moved(ref_summary, cur_summary, SUMMARY_KEYS, metrics, sum_tol, "summary")
    return pd.DataFrame(rows, columns=COLUMNS)


def _read(path) -> pd.DataFrame | None:
    path = Path(path)
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"params": str})


def check(
    reference_dir,
    current_eval_dir,
    config_path,
    abs_tol: float | None = None,
    pairs_tol: float | None = None,
    pairs_csv=None,
    tolerances: dict | None = None,
):
    """(ok, message). Fails on a stale reference, a different pair table, or metrics beyond tolerance."""
    ref_dir = Path(reference_dir)
    prov_file = ref_dir / "provenance.json"
    if not prov_file.exists():
        return False, f"{prov_file}: missing (no committed reference; create one with `nre regress --update`)"
    prov = json.loads(prov_file.read_text())
    if prov["config_sha256"] != file_hash(config_path):
        return False, (
            f"stale reference: {ref_dir} was made from a different {config_path} "
            f"(hash {prov['config_sha256']} != {file_hash(config_path)}); rerun and update it on purpose "
            f"(nre regress --update, see README)"
        )
    notes = []
    if pairs_csv is not None and Path(pairs_csv).exists() and prov.get("pairs_sha256") != file_hash(pairs_csv):
        notes.append(
            f"the run's pair table {pairs_csv} differs from the reference's (hash {file_hash(pairs_csv)} != "
            f"{prov.get('pairs_sha256')}): the scenes or the pair sampling changed (after a deliberate change of the "
            "scene generator, bump nre.data.synth.GENERATOR_VERSION and rerun and update every reference made on "
            "generated scenes)"
        )
    cur_dir = Path(current_eval_dir)
    if not (cur_dir / "failure_rates.csv").exists():
        return False, f"{cur_dir / 'failure_rates.csv'}: missing (run nre evaluate first)"
    moved = compare(
        _read(ref_dir / "failure_rates.csv"),
        _read(cur_dir / "failure_rates.csv"),
        abs_tol,
        pairs_tol,
        _read(ref_dir / "summary.csv"),
        _read(cur_dir / "summary.csv"),
        tolerances,
    )
    if len(moved) or notes:
        from nre.tables import to_markdown

        msg = "\n".join(notes)
        if len(moved):
            shown = moved.drop(columns=["split"] if (moved["split"] == "").all() else [])
            msg += (
                f"\n{len(moved)} metric(s) moved beyond tolerance ({', '.join(sorted(set(moved['what'])))}):\n"
                + to_markdown(shown.head(200))
                + (f"... and {len(moved) - 200} more\n" if len(moved) > 200 else "")
            )
        return False, msg.strip() + "\n"
    return True, "results match the reference within tolerance"


def variation(eval_dirs) -> pd.DataFrame:
    """Largest absolute difference of every failure rate / summary metric across repeated runs' evaluation
    folders (the measured run-to-run variation the tolerances should cover), with the rate cells' smallest n."""
    dirs = [Path(d) for d in eval_dirs]
    out = []
    for fname, keys in (("failure_rates.csv", RATE_KEYS), ("summary.csv", SUMMARY_KEYS)):
        frames = [_read(d / fname) for d in dirs]
        frames = [_norm(f, keys).set_index(keys) for f in frames if f is not None]
        if len(frames) < 2:
            continue
        metrics = [
            c for c in frames[0].columns if c.startswith(("t>", "R>", "mean_failure", "median_r", "median_t", "AUC"))
        ]
        common = frames[0].index
        for f in frames[1:]:
            common = common.intersection(f.index)
        stack = np.stack([f.loc[common, metrics].to_numpy(dtype=float) for f in frames])
        with np.errstate(invalid="ignore"):
            diff = np.nanmax(stack, 0) - np.nanmin(stack, 0)
        for j, m in enumerate(metrics):
            d = np.nan_to_num(diff[:, j], nan=0.0)
            out.append(
                {
                    "file": fname,
                    "metric": m,
                    "cells": len(common),
                    "max_abs_diff": float(d.max(initial=0.0)),
                    "cells_moved": int((d > 0).sum()),
                }
            )
    return pd.DataFrame(out, columns=["file", "metric", "cells", "max_abs_diff", "cells_moved"])


# Per-pair columns kept in a slim reference (``errors.parquet``): what every table is computed from (the row schema
# without poses, diagnostics and versions, plus the renderer-truth errors nre.evaluate adds on the embedded default).
_DROPPED = {"qw", "qx", "qy", "qz", "tx", "ty", "tz", "low_support", "diagnostics", "versions"}
ERROR_COLUMNS = [c for c in ROW_COLUMNS if c not in _DROPPED] + [
    "rotation_error_truth_deg",
    "translation_error_truth",
    "center_error_truth",
]
MAX_FULL_ROWS_MB = 5.0


def slim_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-pair errors of ``rows`` (no poses, diagnostics or versions), floats as float32, labels categorical."""
    out = rows[[c for c in ERROR_COLUMNS if c in rows.columns]].copy()
    for c in out.columns:
        if out[c].dtype == np.float64:
            out[c] = out[c].astype(np.float32)
        elif out[c].dtype == object:
            out[c] = out[c].astype("category")
    return out


def update(reference_dir, current_eval_dir, config_path, pairs_csv, rows: str = "auto") -> None:
    """Deliberately replace the reference with the current run (old files of the reference are removed).

    ``rows``: ``full`` copies every result row (``rows.parquet``: poses, diagnostics, versions); ``errors`` writes
    only the per-pair errors (``errors.parquet``, float32, zstd: ~10x smaller); ``auto`` = full up to
    MAX_FULL_ROWS_MB, else errors (the embedded default's 3300 pairs x ~70 rows)."""
    if rows not in ("auto", "full", "errors"):
        raise ValueError(f"rows must be auto, full or errors, got {rows!r}")
    ref = Path(reference_dir)
    if ref.exists():
        for f in ref.iterdir():
            if f.is_file():
                f.unlink()
    ref.mkdir(parents=True, exist_ok=True)
    ev = Path(current_eval_dir)
    for f in sorted(ev.iterdir()):
        if f.is_file() and (f.suffix in REFERENCE_FILES or f.name == "thresholds.json"):
            shutil.copy2(f, ref / f.name)
    src = ev / "rows.parquet"
    if src.exists():
        if rows == "auto":
            rows = "full" if src.stat().st_size <= MAX_FULL_ROWS_MB * 2**20 else "errors"
        if rows == "full":
            shutil.copy2(src, ref / "rows.parquet")
        else:
            slim_rows(pd.read_parquet(src)).to_parquet(ref / "errors.parquet", compression="zstd", index=False)
    shutil.copy2(pairs_csv, ref / "pairs.csv")
    (ref / "provenance.json").write_text(json.dumps(provenance(config_path, pairs_csv), indent=2, sort_keys=True))
