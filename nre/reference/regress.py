"""Regression check of a run against its committed reference (``results/<name>/``).

The reference holds the evaluation's failure rates (``failure_rates.csv``), the summary (``summary.csv``: median
errors and AUC of each estimator's selected setting), the tables and figures, the per-pair rows (``rows.parquet``)
and ``provenance.json``: the digest of the study the config describes (``study_sha256``, ``study_hash``), the hash
of the pair table, the scene generator's version for generated scenes, and the library versions.

Checks, in order (each failure names what to do):
1. stale reference: the reference's study digest no longer matches the config's (the config or a code default of
   what it runs changed and the reference was not updated on purpose);
2. different pairs: the run's pair table is not the reference's (data or pair sampling changed);
3. per-metric tolerances (``TOLERANCES``), on every cell of the reference (a cell missing from the run fails too):
   - failure rates (``t>X``, ``R>Xdeg``, ``mean_failure``) of every (features, estimator, params, stage, split,
     category), compared as pair counts (rate x n, so the CSVs' 6 significant digits cannot turn an allowed flip
     into a failure): at most ``max(rate_flips, rate_abs x n)`` pairs may change sides of the threshold;
   - median errors of the summary (``median_rot_deg``, ``median_trans``): with the reference's per-pair errors
     (``rows.parquet`` / ``errors.parquet``), the current median must lie in the band of medians reachable when up
     to ``rate_flips`` of the cell's pairs change arbitrarily (the reference's sorted errors shifted by that many
     ranks), widened by ``median_abs + median_rel x |bound|`` for the drift of all the others; without per-pair
     errors, ``median_abs + median_rel x |reference|``;
   - AUC of the summary: ``flips / n`` (one pair's curve step).
   Default: one pair may flip per cell, medians' band ends may drift by 0.5% + 0.001. Why: repeated runs on one
   machine are bit-identical (every random choice is seeded), and so are runs with other chunk sizes and --cores
   (tests/test_workflow.py); across CPUs and code paths the libraries pick other kernels, most rows change in their
   last digits and a pair may flip (measured with ``scripts/codepath_variation.sh``: docs/results-log.md,
   "Regression tolerances"). These tolerances still catch a 0.1 deg worse rotation of any single estimator on every
   pair of the quick config (tests/test_regress.py). An estimator that cannot be made bit-reproducible run to run
   gets its own allowance in ``NONDETERMINISTIC`` (none does now).
``variation(dirs)`` measures the largest difference of every metric between repeated runs, and with their rows the
largest number of pairs flipped in one cell (``pair_flips``): rerun a config a few times or under code-path variants
and pass the evaluation folders to set the tolerances from measurements (``nre regress --measure``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from nre.errors import OptionError
from nre.estimators.rows import COLUMNS as ROW_COLUMNS

RATE_KEYS = ["features", "estimator", "params", "stage", "split", "category"]
SUMMARY_KEYS = ["features", "estimator", "stage", "category"]
NONDETERMINISTIC: dict[str, float] = {}  # estimator key -> pairs allowed to flip per cell
TOLERANCES = {
    "rate_flips": 1.0,  # pairs allowed to flip per rate cell
    "rate_abs": 0.0,
    "median_rel": 0.005,  # drift at the ends of a median's flip band (or around the reference without per-pair rows)
    "median_abs": 0.001,
    "auc_flips": 1.0,
}
REFERENCE_FILES = (".csv", ".md", ".tex", ".png")
COLUMNS = ["what", *RATE_KEYS, "metric", "reference", "current", "tolerance"]


def file_hash(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def study_hash(config_path, overrides: dict | None = None) -> str:
    """The digest of the study a config file (or several, layered, then ``overrides``: Snakemake's ``--config
    key=value``) describes: ``nre.workflow.plan.study_digest`` of the config with its defaults and presets applied,
    so that a comment or a repeated default changes nothing and a changed code default of an estimator it runs makes
    the reference stale."""
    from nre.workflow.config import load_config, with_defaults
    from nre.workflow.plan import study_digest

    return study_digest(with_defaults(load_config(_config_paths(config_path), overrides)))


def _config_paths(config_path) -> list:
    """One config file or several (layered in order) as a list."""
    return [config_path] if isinstance(config_path, (str, Path)) else list(config_path)


def _described(config_path, overrides: dict | None = None) -> str:
    """The config files (and overrides) as the provenance and the messages name them."""
    text = " + ".join(map(str, _config_paths(config_path)))
    return f"{text} + --config {json.dumps(overrides, sort_keys=True)}" if overrides else text


def provenance(config_path, pairs_csv, overrides: dict | None = None) -> dict:
    from nre.versions import versions

    paths = _config_paths(config_path)
    out = {
        "config": _described(paths),
        "study_sha256": study_hash(paths, overrides),
        "pairs_sha256": file_hash(pairs_csv),
        "versions": versions(),
    }
    if overrides:
        out["overrides"] = overrides  # Snakemake's --config key=value of the run, part of the study
    generator = synth_generator(paths[-1])
    if generator is not None:
        out["synth_generator"] = generator
    return out


def synth_generator(config_path) -> int | None:
    """``nre.data.synth.GENERATOR_VERSION`` if the config's data are the generated scenes (``data.synth``), else
    None (e.g. MegaDepth)."""
    from nre.workflow.config import load_config

    cfg = load_config(config_path)
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


def _row(keys, key, what, metric, ref, cur, tol) -> dict:
    return {
        **dict.fromkeys(RATE_KEYS, ""),
        **dict(zip(keys, key)),
        "what": what,
        "metric": metric,
        "reference": ref,
        "current": cur,
        "tolerance": tol,
    }


def _aligned(ref, cur, keys, what):
    """(reference cells, current cells on the same index, rows for the reference cells missing from the run)."""
    ref = _norm(ref, keys).set_index(keys)
    cur = _norm(cur, keys).set_index(keys)
    cur = cur[~cur.index.duplicated()]
    missing = [_row(keys, k, what, "(missing)", np.nan, np.nan, 0.0) for k in ref.index.difference(cur.index)]
    common = ref.index.intersection(cur.index)
    return ref.loc[common], cur.loc[common], missing


def _flips_of(index, default: float) -> np.ndarray:
    """Pairs allowed to flip per cell: the estimator's own allowance (NONDETERMINISTIC) or ``default``."""
    return np.array([max(NONDETERMINISTIC.get(k[1], 0.0), default) for k in index], dtype=float)


def _compare_rates(ref, cur, rate_cols, tol) -> list[dict]:
    """Failure rates compared as pair counts (rate x n, rounded: the CSVs hold 6 significant digits, so comparing
    the rates themselves with a 1/n tolerance refused a one-pair flip that the rounding made look larger)."""
    r, c, rows = _aligned(ref, cur, RATE_KEYS, "rate")
    if not len(r):
        return rows
    n_ref = np.maximum(r["n"].to_numpy(dtype=float), 1)
    n_cur = np.maximum(c["n"].to_numpy(dtype=float), 1) if "n" in c.columns else n_ref
    allowed = np.maximum(tol["rate_abs"] * n_ref, _flips_of(r.index, tol["rate_flips"]))
    n_rates = max(len([m for m in rate_cols if m != "mean_failure"]), 1)
    for m in rate_cols:
        if m not in c.columns or m not in r.columns:
            continue
        rv, cv = r[m].to_numpy(dtype=float), c[m].to_numpy(dtype=float)
        # mean_failure is the mean of the rate columns: its count is the sum of theirs
        k = n_rates if m == "mean_failure" else 1
        same = (rv == cv) | (np.isnan(rv) & np.isnan(cv))
        moved_pairs = np.abs(np.round(cv * n_cur * k) - np.round(rv * n_ref * k)) / k
        bad = ~same & ~(moved_pairs <= allowed)
        for i in np.flatnonzero(bad):
            rows.append(_row(RATE_KEYS, r.index[i], "rate", m, rv[i], cv[i], float(allowed[i] / n_ref[i])))
    return rows


def _median_band(errors: np.ndarray, flips: int) -> tuple[float, float]:
    """The range of medians of ``errors`` when up to ``flips`` of its values change arbitrarily: the median of the
    sorted values shifted by ``flips`` ranks down (the largest values replaced by -inf) and up."""
    e = np.sort(np.asarray(errors, dtype=float))
    n = len(e)
    padded = np.concatenate([np.full(flips, -np.inf), e, np.full(flips, np.inf)])
    mid = np.array([(n - 1) // 2, n // 2]) + flips  # the median's one or two ranks, in ``padded``
    lo_idx, hi_idx = mid - flips, mid + flips
    with np.errstate(invalid="ignore"):
        lo, hi = padded[lo_idx].mean(), padded[hi_idx].mean()
    return float(lo), float(hi)


def _per_pair(rows: pd.DataFrame | None) -> dict | None:
    """Reference per-pair errors grouped for the median bands: (features, estimator, stage, params, category) ->
    {metric column: errors}, test split, failures as infinite errors."""
    if rows is None or not len(rows):
        return None
    from nre.eval.metrics import prepare

    d = prepare(rows[rows["split"].astype(str) == "test"])
    d = _norm(d, ["features", "estimator", "stage", "params", "category"])
    out = {}
    cols = ["rotation_error_deg", "translation_error"]
    for key, g in d.groupby(["features", "estimator", "stage", "params"], sort=False):
        vals = {c: g[c].to_numpy(dtype=float) for c in cols}
        out[(*key, "all")] = vals
        for cat, gc in g.groupby("category", sort=False):
            out[(*key, cat)] = {c: gc[c].to_numpy(dtype=float) for c in cols}
    return out


SUMMARY_ERROR = {"median_rot_deg": "rotation_error_deg", "median_trans": "translation_error"}


def _compare_summary(ref, cur, tol, ref_rows=None) -> list[dict]:
    """Medians and AUCs of the summary. A median's tolerance, with the reference's per-pair errors at hand, is the
    band of medians reachable when up to ``rate_flips`` pairs of the cell change (plus the relative / absolute drift
    of ``median_rel`` / ``median_abs`` at its ends): on 12 or 36 pairs one flip moves a median by a whole gap between
    neighbouring errors, which no fixed relative tolerance absorbs without also absorbing a degraded estimator.
    Without per-pair errors: ``median_abs + median_rel * |reference|``. An AUC moves by at most 1/n per flipped pair."""
    r, c, rows = _aligned(ref, cur, SUMMARY_KEYS, "summary")
    if not len(r):
        return rows
    flips = _flips_of(r.index, tol["rate_flips"])
    n = np.maximum(r["n"].to_numpy(dtype=float), 1)
    per_pair = _per_pair(ref_rows)
    params_of = c if "params" in c.columns else r if "params" in r.columns else None
    params = params_of["params"].astype(str).to_numpy() if params_of is not None else None
    metrics = [m for m in r.columns if m.startswith(("median_rot", "median_trans", "AUC"))]

    def drift(v):
        return tol["median_abs"] + tol["median_rel"] * (abs(v) if np.isfinite(v) else 0.0)

    for m in metrics:
        if m not in c.columns:
            continue
        rv, cv = r[m].to_numpy(dtype=float), c[m].to_numpy(dtype=float)
        for i in range(len(r)):
            if rv[i] == cv[i] or (np.isnan(rv[i]) and np.isnan(cv[i])):
                continue
            if m.startswith("AUC"):
                t = float(max(flips[i], tol["auc_flips"]) / n[i])
                ok = abs(cv[i] - rv[i]) <= t + 1e-6  # 6 significant digits in the CSV
            else:
                feat, est, stage, cat = r.index[i]
                errs = None if per_pair is None or params is None else per_pair.get((feat, est, stage, params[i], cat))
                if errs is not None and len(errs[SUMMARY_ERROR[m]]):
                    # the band of the setting the run selected, from the reference's errors at that setting
                    lo, hi = _median_band(errs[SUMMARY_ERROR[m]], int(flips[i]))
                    lo_ok, hi_ok = lo - drift(lo), hi + drift(hi)
                    ok = lo_ok <= cv[i] <= hi_ok
                    t = float(hi_ok - rv[i]) if cv[i] > rv[i] else float(rv[i] - lo_ok)
                else:
                    t = drift(rv[i])
                    ok = abs(cv[i] - rv[i]) <= t * (1 + 1e-6)
            if not ok:
                rows.append(_row(SUMMARY_KEYS, r.index[i], "summary", m, rv[i], cv[i], t))
    return rows


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    abs_tol: float | None = None,
    pairs_tol: float | None = None,
    ref_summary: pd.DataFrame | None = None,
    cur_summary: pd.DataFrame | None = None,
    tolerances: dict | None = None,
    ref_rows: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows of what moved beyond tolerance (empty when the run matches its reference). ``ref_rows``: the
    reference's per-pair errors (rows.parquet / errors.parquet), for the medians' flip bands."""
    tol = {**TOLERANCES, **(tolerances or {})}
    if abs_tol is not None:
        tol["rate_abs"] = abs_tol
    if pairs_tol is not None:
        tol["rate_flips"] = pairs_tol
    rate_cols = [c for c in reference.columns if c.startswith(("t>", "R>"))] + ["mean_failure"]
    rows = _compare_rates(reference, current, rate_cols, tol)
    if ref_summary is not None and cur_summary is not None and len(ref_summary):
        rows += _compare_summary(ref_summary, cur_summary, tol, ref_rows)
    return pd.DataFrame(rows, columns=COLUMNS)


def reference_rows(reference_dir) -> pd.DataFrame | None:
    """The reference's per-pair errors (``rows.parquet`` or the slim ``errors.parquet``), or None."""
    for name in ("rows.parquet", "errors.parquet"):
        f = Path(reference_dir) / name
        if f.exists():
            cols = ["pair_id", "split", "category", "features", "estimator", "params", "stage", "success"]
            cols += ["rotation_error_deg", "translation_error", "center_error"]
            df = pd.read_parquet(f, columns=cols)
            for c in df.columns:
                if isinstance(df[c].dtype, pd.CategoricalDtype):
                    df[c] = df[c].astype(str)
            return df
    return None


def _read(path) -> pd.DataFrame | None:
    path = Path(path)
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"params": str})


PAIR_IDENTITY = ["pair_id", "scene", "source", "target", "category", "split"]
PAIR_NUMERIC_RTOL = {"n_covisible": 0.05, "distance": 0.01, "rotation_angle_deg": 0.01, "axis_angle_deg": 0.01}


def pair_table_difference(reference_csv, current_csv) -> str:
    """ "" when two pair tables hold the same pairs (ids, scenes, images, category, split, in order) and their
    measurements agree within ``PAIR_NUMERIC_RTOL``; else what differs. Not a byte comparison: scenes regenerated on
    another CPU carry SfM models that differ in their last digits (OpenBLAS picks its kernels at run time), which
    moves viewpoint distances and covisible counts slightly, with the same pairs and categories
    (docs/results-log.md, "Regression tolerances")."""
    a, b = pd.read_csv(reference_csv), pd.read_csv(current_csv)
    if len(a) != len(b):
        return f"{len(b)} pairs instead of {len(a)}"
    for c in PAIR_IDENTITY:
        if c in a.columns or c in b.columns:
            if c not in a.columns or c not in b.columns:
                return f"column {c} only in one table"
            bad = (a[c].astype(str) != b[c].astype(str)).to_numpy()
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                return f"{int(bad.sum())} rows differ in {c}, first row {i + 1}: {a[c].iloc[i]!r} vs {b[c].iloc[i]!r}"
    for c, rtol in PAIR_NUMERIC_RTOL.items():
        if c in a.columns and c in b.columns:
            x, y = a[c].to_numpy(dtype=float), b[c].to_numpy(dtype=float)
            bad = ~np.isclose(y, x, rtol=rtol, atol=0, equal_nan=True)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                return f"{int(bad.sum())} rows differ in {c} beyond {rtol:g} (relative), first {a['pair_id'].iloc[i]}"
    return ""


def check(
    reference_dir,
    current_eval_dir,
    config_path,
    abs_tol: float | None = None,
    pairs_tol: float | None = None,
    pairs_csv=None,
    tolerances: dict | None = None,
    overrides: dict | None = None,
):
    """(ok, message). Fails on a stale reference, a different pair table, or metrics beyond tolerance.
    ``overrides``: the run's ``--config key=value`` settings, layered over the config files."""
    ref_dir = Path(reference_dir)
    prov_file = ref_dir / "provenance.json"
    if not prov_file.exists():
        return False, f"{prov_file}: missing (no committed reference; create one with `nre regress --update`)"
    prov = json.loads(prov_file.read_text())
    now = study_hash(config_path, overrides)
    if prov.get("study_sha256") != now:
        return False, (
            f"stale reference: {ref_dir} was made from a different study than {_described(config_path, overrides)} "
            "describes now "
            f"(study hash {prov.get('study_sha256')} != {now}: the config or an estimator's code defaults changed); "
            "rerun and update it on purpose (nre regress --update, docs/reference-results.md)"
        )
    notes = []
    if pairs_csv is not None and Path(pairs_csv).exists() and prov.get("pairs_sha256") != file_hash(pairs_csv):
        ref_pairs = ref_dir / "pairs.csv"
        problem = pair_table_difference(ref_pairs, pairs_csv) if ref_pairs.exists() else "no pairs.csv in reference"
        if problem:
            notes.append(
                f"the run's pair table {pairs_csv} differs from the reference's ({problem}): the scenes or the pair "
                "sampling changed (after a deliberate change of the scene generator, bump "
                "nre.data.synth.GENERATOR_VERSION and rerun and update every reference made on generated scenes)"
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
        reference_rows(ref_dir),
    )
    if len(moved) or notes:
        from nre.eval.tables import to_markdown

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
    cols = ["file", "metric", "cells", "max_abs_diff", "cells_moved"]
    res = pd.DataFrame(out, columns=cols)
    # with the runs' rows: the largest number of pairs flipped in one cell between the first run and each other
    thr_file = dirs[0] / "thresholds.json"
    if thr_file.exists() and all((d / "rows.parquet").exists() for d in dirs):
        thr = json.loads(thr_file.read_text())
        first = pd.read_parquet(dirs[0] / "rows.parquet")
        flips = pd.concat([pair_flips(first, pd.read_parquet(d / "rows.parquet"), thr) for d in dirs[1:]])
        rate_names = [c for c in flips.columns if c.startswith(("t>", "R>"))]
        res["max_pairs_flipped"] = [
            int(flips[m].max()) if f == "failure_rates.csv" and m in rate_names else np.nan
            for f, m in zip(res["file"], res["metric"])
        ]
    return res


def pair_flips(rows_a: pd.DataFrame, rows_b: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    """Per rate cell (features, estimator, params, stage, split, category 'all') and threshold: how many pairs fail
    in one run and not in the other (the count the ``rate_flips`` tolerance bounds; two opposite flips leave a rate
    unchanged, so this is never below the rate's change in pairs). Rows present in only one run are ignored."""
    from nre.eval.metrics import metric_columns, prepare

    keys = ["features", "estimator", "params", "stage", "split", "pair_id"]
    a, b = (_norm(prepare(r), keys) for r in (rows_a, rows_b))
    m = a.merge(b, on=keys, suffixes=("_a", "_b"))
    out = m[keys[:-1]].copy()
    names = []
    for name, err, t in metric_columns(thresholds):
        out[name] = (m[f"{err}_a"].to_numpy(dtype=float) > t) != (m[f"{err}_b"].to_numpy(dtype=float) > t)
        names.append(name)
    g = out.groupby(keys[:-1], sort=True)
    res = g[names].sum()
    res.insert(0, "n", g.size())
    return res.reset_index()


# Per-pair columns kept in a slim reference (``errors.parquet``): what every table is computed from (the row schema
# without poses, diagnostics and versions, plus the renderer-truth errors evaluation adds on the embedded default).
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


def update(
    reference_dir, current_eval_dir, config_path, pairs_csv, rows: str = "auto", overrides: dict | None = None
) -> None:
    """Deliberately replace the reference with the current run (old files of the reference are removed).

    ``rows``: ``full`` copies every result row (``rows.parquet``: poses, diagnostics, versions); ``errors`` writes
    only the per-pair errors (``errors.parquet``, float32, zstd: far smaller); ``auto`` = full up to
    MAX_FULL_ROWS_MB, else errors (the embedded default's 3300 pairs x ~70 rows)."""
    if rows not in ("auto", "full", "errors"):
        raise OptionError(f"rows must be auto, full or errors, got {rows!r}")
    configs = _config_paths(config_path)
    if len(configs) == 1:
        config_path = configs[0]  # the provenance names the one file, as the staleness test reads it
    for f in (Path(current_eval_dir) / "failure_rates.csv", *map(Path, configs), Path(pairs_csv)):
        if not f.is_file():  # checked before the old reference is removed
            raise FileNotFoundError(errno.ENOENT, "missing (the reference is left as it is)", str(f))
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
    (ref / "provenance.json").write_text(
        json.dumps(provenance(config_path, pairs_csv, overrides), indent=2, sort_keys=True)
    )


def regress(
    *,
    reference: str | Path,
    current: str | Path,
    config: str | Path | list,
    pairs: str | Path | None = None,
    abs_tol: float | None = None,
    pairs_tol: float | None = None,
    tolerances: dict | None = None,
    out: str | Path | None = None,
    overrides: dict | None = None,
) -> tuple[bool, str]:
    """``check`` as a verdict text (``OK: ...`` or ``REGRESSION: ...``), also written to ``out`` when given. A
    missing config file or evaluation folder is an error (FileNotFoundError), not a verdict."""
    for c in _config_paths(config):
        if not Path(c).is_file():
            raise FileNotFoundError(errno.ENOENT, "no such config file", str(c))
    if not Path(current).is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such evaluation folder", str(current))
    ok, msg = check(reference, current, config, abs_tol, pairs_tol, pairs, tolerances, overrides)
    text = ("OK: " if ok else "REGRESSION: ") + msg
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text if text.endswith("\n") else text + "\n")
    return ok, text


def measure(*, eval_dirs: list[str | Path], out: str | Path | None = None) -> pd.DataFrame:
    """``variation`` of repeated runs' evaluation folders, also written to ``out`` (CSV) when given."""
    v = variation(eval_dirs)
    if out:
        v.to_csv(out, index=False)
    return v
