"""From per-pair result rows to failure rates, hyperparameter selection and diagnostics.

Failure rates: for each threshold, the fraction of pairs whose error is above it (lower is better), as in the paper.
A failed estimate has infinite error, never a dropped row. A "variant" is one (features, estimator, params, stage).

Selection of each estimator's hyperparameter: one metric (default ``mean_failure``: the mean of the six failure
rates over all categories; any single rate column such as ``R>10deg`` can be chosen instead), computed on the final
stage of the estimator (its last declared stage, from the study info or the rows: ``nre.eval.study``; the only stage
of a single-stage estimator) and applied to all its stages, so that an ablation compares stages of one setting.
Repeats of a randomised estimator (rows ``<key>@<k>``) take no part: they are evaluated at their base key's choice.
Two protocols side by side:
- ``paper``: the best setting on the test pairs (what the paper did);
- ``fair``: the best setting on the tuning split, applied once to the test pairs. Without tuning rows (a run
  with ``pairs.n_tuning: 0``) it never falls back to the test pairs: an estimator with one setting keeps it (nothing
  is chosen), any other gets ``FAIR_NA`` and its fair Table 1 rows say so (``fair_basis`` records which).
Ties go to the first setting in the sorted ``params`` JSON, so the choice is deterministic.

Besides the failure rates: recall at combined (translation, rotation) thresholds (``recall``, visuallocalization.net's
(0.25, 2 deg), (0.5, 5 deg), (5, 10 deg) by default), the share of queries with an estimate (``success``), median
errors and the AUC of the cumulative error curves (``auc``).

The tables built from these (Table 1, 2, summary) live in ``nre.eval.tables``; the figures in ``nre.eval.figures``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from nre.eval.study import Study, is_repeat, stage_order

CATEGORIES = ("easy", "medium", "hard")
DEFAULT_THRESHOLDS = {"rotation_deg": [2.0, 5.0, 10.0], "translation": [0.25, 1.0, 5.0]}
DEFAULT_RECALL = [[0.25, 2.0], [0.5, 5.0], [5.0, 10.0]]  # (translation, rotation deg): visuallocalization.net's
KEYS = ["features", "estimator", "params", "stage"]
FAIR_NA = "n/a: no tuning pairs"  # the fair choice of a swept estimator when the run has no tuning split


def metric_columns(thresholds: dict) -> list[tuple[str, str, float]]:
    """(column name, error column, threshold) for each threshold, translation first as in the paper."""
    cols = [(f"t>{t:g}", "translation_error", float(t)) for t in thresholds["translation"]]
    cols += [(f"R>{r:g}deg", "rotation_error_deg", float(r)) for r in thresholds["rotation_deg"]]
    return cols


def prepare(rows: pd.DataFrame) -> pd.DataFrame:
    """Failures get infinite errors (whatever was recorded); missing stage / features become ""."""
    df = rows.copy()
    for c in ("rotation_error_deg", "translation_error", "center_error"):
        df[c] = df[c].astype(float).fillna(np.inf)
        df.loc[~df["success"].astype(bool), c] = np.inf
    df["stage"] = df["stage"].fillna("")
    df["features"] = df.get("features", pd.Series("", index=df.index)).fillna("")
    return df


def failure_rates(df: pd.DataFrame, thresholds: dict, by=("split", "category")) -> pd.DataFrame:
    """Rates per variant and group (vectorised); ``category`` 'all' pools the categories."""
    cols = metric_columns(thresholds)
    flags = df[KEYS + list(by)].copy()
    flags["pair_id"] = df["pair_id"]
    for name, err, t in cols:
        flags[name] = (df[err].to_numpy(dtype=float) > t).astype(float)
    out = []
    for src in (flags, flags.assign(category="all")):
        g = src.groupby(KEYS + list(by), sort=True)
        r = g[[c for c, _, _ in cols]].mean()
        r.insert(0, "n", g.size())
        out.append(r.reset_index())
    res = pd.concat(out, ignore_index=True)
    res["mean_failure"] = res[[c for c, _, _ in cols]].mean(axis=1)
    return res


def recall_columns(recall_thresholds) -> list[tuple[str, float, float]]:
    """(column name, translation threshold, rotation threshold in deg) of each combined threshold."""
    return [(f"recall@{float(t):g}/{float(r):g}deg", float(t), float(r)) for t, r in recall_thresholds]


def recall(df: pd.DataFrame, t_max: float, r_max: float) -> float:
    """The share of rows whose translation error is at most ``t_max`` and rotation error at most ``r_max`` deg
    (a failure has infinite errors, so it is never recalled)."""
    if len(df) == 0:
        return np.nan
    t = df["translation_error"].to_numpy(dtype=float)
    r = df["rotation_error_deg"].to_numpy(dtype=float)
    ok = (t <= t_max) & (r <= r_max)
    return float(ok.mean())


def success(df: pd.DataFrame) -> float:
    """The share of rows (queries) with an estimate, right or wrong."""
    return float(df["success"].astype(bool).mean()) if len(df) else np.nan


def final_stages(df: pd.DataFrame, study=None) -> dict[str, str]:
    """Per estimator label (repeats too): the stage it is judged on, from ``study`` (``nre.eval.study.Study``) or,
    without it, the last stage its rows give (the runner writes an estimator's stages in their declared order)."""
    study = study or Study.fallback(df)
    present = stage_order(df)
    return {e: study.final_stage(e, st) for e, st in present.items()}


def select(rates: pd.DataFrame, metric: str = "mean_failure", final: dict[str, str] | None = None) -> pd.DataFrame:
    """The chosen params per (features, estimator) under both protocols, selected on the final stage: ``final``
    maps an estimator to it (``final_stages``); a single-stage estimator needs no entry, a multi-stage one without
    an entry is an error (its stages' order is not in the rates). Repeats (``<key>@<k>``) are left out."""
    if metric not in rates.columns:
        raise ValueError(f"selection metric {metric!r} is not a rate column (have {list(rates.columns)})")
    allc = rates[(rates["category"] == "all") & ~rates["estimator"].astype(str).map(is_repeat)]
    rows = []
    for (feat, est), g in allc.groupby(["features", "estimator"], sort=True):
        stages = list(g["stage"].unique())
        stage = (final or {}).get(est)
        if stage not in stages:  # without a final stage: the unstaged result, else the only stage
            if "" not in stages and len(stages) > 1:
                raise ValueError(f"{est}: stages {sorted(stages)} and no final stage given (pass final_stages(rows))")
            stage = "" if "" in stages else stages[0]
        g = g[g["stage"] == stage]
        test = g[g["split"] == "test"].sort_values([metric, "params"], kind="stable")
        tun = g[g["split"] == "tuning"].sort_values([metric, "params"], kind="stable")
        if test.empty:
            continue
        paper = test.iloc[0]["params"]
        n_settings = int(test["params"].nunique())
        if not tun.empty:
            fair, basis = tun.iloc[0]["params"], "tuning"
        elif n_settings == 1:  # nothing to choose: the fair protocol uses no test information either
            fair, basis = paper, "single setting"
        else:  # never the test pairs' choice under the fair label
            fair, basis = FAIR_NA, FAIR_NA
        rows.append(
            {
                "features": feat,
                "estimator": est,
                "stage": stage,
                "metric": metric,
                "paper": paper,
                "paper_test_value": float(test.iloc[0][metric]),
                "fair": fair,
                "fair_test_value": float(test.set_index("params").loc[fair, metric])
                if fair in set(test["params"])
                else np.nan,
                "fair_from_tuning": not tun.empty,
                "fair_basis": basis,
                "n_settings": n_settings,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "features",
            "estimator",
            "stage",
            "metric",
            "paper",
            "paper_test_value",
            "fair",
            "fair_test_value",
            "fair_from_tuning",
            "fair_basis",
            "n_settings",
        ],
    )


def selected_rows(df: pd.DataFrame, sel: pd.DataFrame, protocol: str, final_only: bool = False) -> pd.DataFrame:
    """Rows of every stage (``final_only``: of the final stage the selection was made on) of each (features,
    estimator) at its selected params."""
    cols = ["features", "estimator", protocol] + (["stage"] if final_only else [])
    keep = sel[cols].rename(columns={protocol: "params"})
    return df.merge(keep, on=[c if c != protocol else "params" for c in cols])


def bootstrap_ci(fail: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of a failure rate by resampling pairs (seeded)."""
    fail = np.asarray(fail, dtype=float)
    if len(fail) == 0 or n_boot <= 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // len(fail))  # bounded memory for large tables
    for i in range(0, n_boot, step):
        k = min(step, n_boot - i)
        means[i : i + k] = fail[rng.integers(0, len(fail), size=(k, len(fail)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided McNemar test on paired binary outcomes (failure indicators).

    Under the null the n01 discordant pairs of one kind follow Binomial(n01 + n10, 1/2), which is symmetric, so the
    two-sided p-value is min(1, 2 P(X <= min(n01, n10))): scipy's ``binomtest`` gives the same value (tested) at
    ~9x the cost, which Table 1's hundreds of cells felt (and scipy.special imports in a third of scipy.stats' time)."""
    from scipy.special import bdtr

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    n01 = int(np.sum(a & ~b))
    n10 = int(np.sum(~a & b))
    if n01 + n10 == 0:
        return 1.0
    return float(min(1.0, 2.0 * bdtr(min(n01, n10), n01 + n10, 0.5)))


def auc(errors: np.ndarray, threshold: float) -> float:
    """Area under the cumulative error curve up to ``threshold``, normalised to [0, 1] (exact, piecewise constant)."""
    e = np.sort(np.asarray(errors, dtype=float))
    if len(e) == 0:
        return np.nan
    e = e[e < threshold]
    # the CDF steps up by 1/n at each error below the threshold: area = sum (threshold - e_i) / n
    return float(np.sum(threshold - e) / threshold / (len(np.asarray(errors))))


# ----------------------------------------------------------------------------------------------- diagnostics
def failure_reasons(df: pd.DataFrame) -> pd.DataFrame:
    f = df[~df["success"].astype(bool)]
    if f.empty:
        return pd.DataFrame(columns=["estimator", "category", "failure_reason", "count"])
    reason = f["failure_reason"].fillna("").astype(str).str.split(":").str[0].str.slice(0, 80)
    return (
        f.assign(failure_reason=reason)
        .groupby(["estimator", "category", "failure_reason"])
        .size()
        .rename("count")
        .reset_index()
        .sort_values(["estimator", "count"], ascending=[True, False], kind="stable")
    )


def _diag(series: pd.Series) -> list[dict]:
    return [json.loads(s) if isinstance(s, str) and s else {} for s in series]


def _carrying(df: pd.DataFrame, *keys: str) -> pd.DataFrame:
    """Rows whose diagnostics name every key of ``keys`` (a cheap text test, parsed later)."""
    if "diagnostics" not in df.columns or df.empty:
        return df.iloc[:0]
    text = df["diagnostics"].fillna("").astype(str)
    m = np.ones(len(df), dtype=bool)
    for k in keys:
        m &= text.str.contains(f'"{k}"', regex=False).to_numpy()
    return df[m]


def _inlier_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (features, pair) of an estimator whose diagnostics carry the maps' ``inlier_ratio`` (the oracle's:
    a property of the maps, not of the estimator)."""
    d = _carrying(df[~df["estimator"].astype(str).map(is_repeat)], "inlier_ratio")
    return d.drop_duplicates(["features", "pair_id"])


def inlier_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Per category: the fraction of argmax matches within the oracle radius of the true reprojection (from the
    diagnostics that carry ``inlier_ratio``, the oracle's): how hard the maps make each category, independently of
    any estimator."""
    d = _inlier_rows(df)
    vals = [x.get("inlier_ratio") for x in _diag(d["diagnostics"])]
    t = d[["features", "split", "category"]].assign(inlier_ratio=pd.to_numeric(pd.Series(vals, index=d.index)))
    t = t.dropna(subset=["inlier_ratio"])
    if t.empty:
        return pd.DataFrame(columns=["features", "split", "category", "n", "median", "q25", "q75"])
    t = pd.concat([t, t.assign(category="all")])
    g = t.groupby(["features", "split", "category"])["inlier_ratio"]
    return pd.DataFrame(
        {"n": g.size(), "median": g.median(), "q25": g.quantile(0.25), "q75": g.quantile(0.75)}
    ).reset_index()


def per_pair_inliers(df: pd.DataFrame) -> pd.DataFrame:
    """pair_id, features, inlier_ratio of the argmax matches (oracle diagnostics), for per-pair plots."""
    d = _inlier_rows(df)
    vals = [x.get("inlier_ratio") for x in _diag(d["diagnostics"])]
    return d[["features", "pair_id", "split", "category"]].assign(inlier_ratio=pd.to_numeric(pd.Series(vals)).values)


def cost_diagnostics(df: pd.DataFrame) -> pd.DataFrame:
    """Cost at the estimate vs at the ground truth, for every estimator whose diagnostics carry ``cost`` and
    ``cost_at_truth`` (the NRE estimators and RE minimising Eq. 11 today): truth cheaper than the estimate is an
    optimiser failure (the objective was right, the search missed it); estimate cheaper and wrong is an objective
    failure."""
    d = _carrying(df[df["success"].astype(bool)], "cost", "cost_at_truth")
    diags = _diag(d["diagnostics"])
    out = d[["pair_id", "features", "estimator", "stage", "params", "split", "category", "rotation_error_deg"]].copy()
    out["cost"] = pd.to_numeric(pd.Series([x.get("cost") for x in diags], index=d.index))
    out["cost_at_truth"] = pd.to_numeric(pd.Series([x.get("cost_at_truth") for x in diags], index=d.index))
    out = out.dropna(subset=["cost", "cost_at_truth"]).reset_index(drop=True)
    out["optimiser_failure"] = out["cost_at_truth"] < out["cost"] - 1e-6
    return out


def cost_summary(cost: pd.DataFrame, wrong_deg: float = 10.0) -> pd.DataFrame:
    """Per (estimator, stage, params, category): among wrong estimates (rotation error above ``wrong_deg``), how
    many are optimiser failures (truth cheaper) vs objective failures (estimate cheaper)."""
    cols = ["features", "estimator", "stage", "params", "category", "n", "wrong", "optimiser", "objective"]
    if cost.empty:
        return pd.DataFrame(columns=cols)
    c = cost.assign(wrong=cost["rotation_error_deg"] > wrong_deg)
    c = pd.concat([c, c.assign(category="all")])
    c["optimiser"] = c["wrong"] & c["optimiser_failure"]
    c["objective"] = c["wrong"] & ~c["optimiser_failure"]
    g = c.groupby(cols[:5], sort=True)
    return pd.DataFrame(
        {"n": g.size(), "wrong": g["wrong"].sum(), "optimiser": g["optimiser"].sum(), "objective": g["objective"].sum()}
    ).reset_index()


# ----------------------------------------------------------------------------------------------- renderer truth
def _quat_to_R(q: np.ndarray) -> np.ndarray:
    """(N, 4) w, x, y, z -> (N, 3, 3), normalising the quaternions."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


@functools.lru_cache(maxsize=64)
def scene_alignment(scene_dir: str):
    """(sim3 matrix M (3x4, scale included), scale, {image name: truth world-to-camera (R, t)}) for a scene with a
    renderer truth model (``<scene>/truth/``) next to its SfM model (``<scene>/sparse/``); None without truth.
    M maps SfM world points to truth world points, estimated from the camera centres of the common images."""
    import pycolmap

    from nre.geometry import Pose

    d = Path(scene_dir)
    if not (d / "truth").is_dir() or not (d / "sparse").is_dir():
        return None
    sfm, truth = pycolmap.Reconstruction(str(d / "sparse")), pycolmap.Reconstruction(str(d / "truth"))
    t_by_name = {im.name: im for im in truth.images.values()}
    pairs = [(im, t_by_name[im.name]) for im in sfm.images.values() if im.name in t_by_name]
    if len(pairs) < 3:
        return None
    c_s = np.stack([a.projection_center() for a, _ in pairs])
    c_t = np.stack([b.projection_center() for _, b in pairs])
    sim = pycolmap.estimate_sim3d(c_s, c_t)
    if sim is None:
        return None
    poses = {}
    for im in t_by_name.values():
        p = Pose.from_pycolmap(im.cam_from_world())
        poses[im.name] = (p.R, p.t)
    return np.asarray(sim.matrix()), float(sim.scale), poses


def truth_errors(df: pd.DataFrame, pairs: pd.DataFrame, root) -> pd.DataFrame:
    """Errors of every row against the renderer's truth (synthetic scenes only): the estimate, expressed in the SfM
    model's frame, is moved to the truth frame by the similarity that aligns the SfM camera centres to the true ones
    (x_cam = R X + t in SfM units -> R' = R Rs^T, t' = s t - R Rs^T ts, with X_truth = s Rs X + ts).

    Adds rotation_error_truth_deg, translation_error_truth, center_error_truth (NaN where the scene has no truth
    model; inf for failures)."""
    out = df.copy()
    for c in ("rotation_error_truth_deg", "translation_error_truth", "center_error_truth"):
        out[c] = np.nan
    tgt = pairs.set_index(pairs["pair_id"].astype(str))["target"]
    for scene, idx in out.groupby("scene").groups.items():
        al = scene_alignment(str(Path(root) / str(scene)))
        if al is None:
            continue
        M, s, poses = al
        Rs, ts = M[:, :3] / s, M[:, 3]
        sub = out.loc[idx]
        names = tgt.reindex(sub["pair_id"].astype(str)).to_numpy()
        have = np.array([n in poses for n in names])
        q = sub[["qw", "qx", "qy", "qz"]].to_numpy(dtype=float)
        t = sub[["tx", "ty", "tz"]].to_numpy(dtype=float)
        ok = have & np.isfinite(q).all(1) & np.isfinite(t).all(1) & sub["success"].to_numpy(dtype=bool)
        rot = np.full(len(sub), np.inf)
        tra = np.full(len(sub), np.inf)
        cen = np.full(len(sub), np.inf)
        if ok.any():
            R = _quat_to_R(q[ok])
            R2 = R @ Rs.T
            t2 = s * t[ok] - R2 @ ts
            Rg = np.stack([poses[n][0] for n in names[ok]])
            tg = np.stack([poses[n][1] for n in names[ok]])
            cosang = (np.einsum("nij,nij->n", R2, Rg) - 1) / 2  # trace(R2^T Rg)
            rot[ok] = np.degrees(np.arccos(np.clip(cosang, -1, 1)))
            tra[ok] = np.linalg.norm(t2 - tg, axis=1)
            c2 = -np.einsum("nji,nj->ni", R2, t2)
            cg = -np.einsum("nji,nj->ni", Rg, tg)
            cen[ok] = np.linalg.norm(c2 - cg, axis=1)
        rot[~have], tra[~have], cen[~have] = np.nan, np.nan, np.nan
        out.loc[idx, "rotation_error_truth_deg"] = rot
        out.loc[idx, "translation_error_truth"] = tra
        out.loc[idx, "center_error_truth"] = cen
    return out


def truth_comparison(df: pd.DataFrame, sel: pd.DataFrame, thresholds: dict, protocol: str = "paper") -> pd.DataFrame:
    """Per (estimator at its selected setting, final stage, category): failure rates and median errors against the
    SfM ground truth (the benchmark's) next to the same against the renderer's truth."""
    if "rotation_error_truth_deg" not in df.columns or df["rotation_error_truth_deg"].isna().all():
        return pd.DataFrame(columns=["features", "estimator", "category", "n"])
    d = selected_rows(df[df["split"] == "test"], sel, protocol, final_only=True)
    d = d[d["rotation_error_truth_deg"].notna()]
    d = pd.concat([d, d.assign(category="all")])
    rows = []
    for (feat, est, cat), g in d.groupby(["features", "estimator", "category"], sort=True):
        row = {"features": feat, "estimator": est, "category": cat, "n": len(g)}
        for name, err, t in metric_columns(thresholds):
            terr = {"rotation_error_deg": "rotation_error_truth_deg", "translation_error": "translation_error_truth"}
            row[f"{name} sfm"] = float(np.mean(g[err].to_numpy() > t))
            row[f"{name} truth"] = float(np.mean(g[terr[err]].to_numpy(dtype=float) > t))
        row["median R sfm"] = float(np.median(g["rotation_error_deg"]))
        row["median R truth"] = float(np.median(g["rotation_error_truth_deg"].astype(float)))
        row["median t sfm"] = float(np.median(g["translation_error"]))
        row["median t truth"] = float(np.median(g["translation_error_truth"].astype(float)))
        rows.append(row)
    return pd.DataFrame(rows)


def read_rates(path) -> pd.DataFrame:
    """A failure_rates / selection CSV back as written (empty stage / features are "", not NaN)."""
    df = pd.read_csv(path, dtype={"params": str, "paper": str, "fair": str})
    for c in ("stage", "features"):
        if c in df.columns:
            df[c] = ["" if pd.isna(v) else str(v) for v in df[c]]
    return df
