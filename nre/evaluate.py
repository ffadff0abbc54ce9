"""From per-pair result rows to the paper's tables.

Failure rates: for each threshold, the fraction of pairs whose error is above it (lower is better), as in the paper.
A failed estimate has infinite error, never a dropped row. A "variant" is one (features, estimator, params, stage).

Selection of each estimator's hyperparameter: one metric (default ``mean_failure``: the mean of the six failure
rates over all categories), two protocols side by side:
- ``paper``: the best setting on the test pairs (what the paper did);
- ``fair``: the best setting on the tuning split, applied once to the test pairs.

Table 1 (per category): every estimator at its selected setting vs single-level NRE on the same maps, with the
relative deterioration w.r.t. NRE in percent (n/a where NRE's rate is 0), a seeded bootstrap 95% interval of each
rate, and an exact McNemar test against NRE on the per-pair failure indicators.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

CATEGORIES = ("easy", "medium", "hard")
DEFAULT_THRESHOLDS = {"rotation_deg": [2.0, 5.0, 10.0], "translation": [0.25, 1.0, 5.0]}
KEYS = ["features", "estimator", "params", "stage"]


def metric_columns(thresholds: dict) -> list[tuple[str, str, float]]:
    """(column name, error column, threshold) for each threshold, translation first as in the paper."""
    cols = [(f"t>{t:g}", "translation_error", float(t)) for t in thresholds["translation"]]
    cols += [(f"R>{r:g}deg", "rotation_error_deg", float(r)) for r in thresholds["rotation_deg"]]
    return cols


def prepare(rows: pd.DataFrame) -> pd.DataFrame:
    df = rows.copy()
    for c in ("rotation_error_deg", "translation_error", "center_error"):
        df[c] = df[c].astype(float).fillna(np.inf)
        df.loc[~df["success"].astype(bool), c] = np.inf
    df["stage"] = df["stage"].fillna("")
    df["features"] = df.get("features", pd.Series("", index=df.index)).fillna("")
    return df


def failure_rates(df: pd.DataFrame, thresholds: dict, by=("split", "category")) -> pd.DataFrame:
    """Rates per variant and group; ``category`` 'all' pools the categories."""
    cols = metric_columns(thresholds)
    out = []
    pooled = df.assign(category="all")
    for src in (df, pooled):
        g = src.groupby(KEYS + list(by), sort=True)
        agg = {name: (err, lambda s, t=t: float(np.mean(s.to_numpy() > t))) for name, err, t in cols}
        r = g.agg(n=("pair_id", "size"), **agg).reset_index()
        out.append(r)
    res = pd.concat(out, ignore_index=True)
    res["mean_failure"] = res[[c for c, _, _ in cols]].mean(axis=1)
    return res


def select(rates: pd.DataFrame, metric: str = "mean_failure") -> pd.DataFrame:
    """The chosen params per (features, estimator, stage) under both protocols."""
    allc = rates[rates["category"] == "all"]
    rows = []
    for (feat, est, stage), g in allc.groupby(["features", "estimator", "stage"], sort=True):
        test = g[g["split"] == "test"].sort_values([metric, "params"])
        tun = g[g["split"] == "tuning"].sort_values([metric, "params"])
        if test.empty:
            continue
        paper = test.iloc[0]["params"]
        fair = tun.iloc[0]["params"] if not tun.empty else paper
        rows.append(
            {
                "features": feat,
                "estimator": est,
                "stage": stage,
                "paper": paper,
                "fair": fair,
                "fair_from_tuning": not tun.empty,
                "n_settings": int(test["params"].nunique()),
            }
        )
    return pd.DataFrame(rows)


def bootstrap_ci(fail: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of a failure rate by resampling pairs."""
    if len(fail) == 0 or n_boot <= 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(fail), size=(n_boot, len(fail)))
    means = fail[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided McNemar test on paired binary outcomes (failure indicators)."""
    from scipy.stats import binomtest

    n01 = int(np.sum(a & ~b))
    n10 = int(np.sum(~a & b))
    if n01 + n10 == 0:
        return 1.0
    return float(binomtest(n01, n01 + n10, 0.5).pvalue)


def selected_rows(df: pd.DataFrame, sel: pd.DataFrame, protocol: str) -> pd.DataFrame:
    keep = sel[["features", "estimator", "stage", protocol]].rename(columns={protocol: "params"})
    return df.merge(keep, on=["features", "estimator", "stage", "params"])


def table1(
    df: pd.DataFrame,
    sel: pd.DataFrame,
    thresholds: dict,
    features: str,
    reference: str = "nre_single",
    protocol: str = "paper",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per category: each estimator (selected setting) vs the reference on the same maps, test split."""
    cols = metric_columns(thresholds)
    d = selected_rows(df[(df["split"] == "test") & (df["features"] == features)], sel, protocol)
    d = d[d["stage"].isin(["", "fine_gnc"])]
    out = []
    for cat in CATEGORIES + ("all",):
        dc = d if cat == "all" else d[d["category"] == cat]
        ref = dc[dc["estimator"] == reference].set_index("pair_id")
        for est, g in dc.groupby("estimator", sort=True):
            g = g.set_index("pair_id")
            row = {"category": cat, "estimator": est, "params": g["params"].iloc[0], "n": len(g)}
            for name, err, t in cols:
                fail = g[err].to_numpy() > t
                rate = float(fail.mean()) if len(fail) else np.nan
                lo, hi = bootstrap_ci(fail, n_boot, seed)
                row[name] = rate
                row[f"{name} ci"] = f"[{lo:.3f}, {hi:.3f}]"
                if not ref.empty:
                    common = g.index.intersection(ref.index)
                    rref = float((ref.loc[common, err].to_numpy() > t).mean()) if len(common) else np.nan
                    row[f"{name} vs NRE %"] = (
                        "n/a" if not rref or np.isnan(rref) else f"{100 * (rate - rref) / rref:+.0f}"
                    )
                    row[f"{name} p"] = mcnemar_p(g.loc[common, err].to_numpy() > t, ref.loc[common, err].to_numpy() > t)
            out.append(row)
    return pd.DataFrame(out)


def table2(df: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    """Per category: coarse-to-fine NRE (fine stage) per feature backend, test split."""
    cols = metric_columns(thresholds)
    d = df[(df["split"] == "test") & (df["estimator"] == "nre_c2f") & (df["stage"] == "fine_gnc")]
    out = []
    for cat in CATEGORIES + ("all",):
        dc = d if cat == "all" else d[d["category"] == cat]
        for feat, g in dc.groupby("features", sort=True):
            row = {"category": cat, "features": feat, "n": len(g)}
            for name, err, t in cols:
                row[name] = float((g[err].to_numpy() > t).mean())
            out.append(row)
    return pd.DataFrame(out)


def auc(errors: np.ndarray, threshold: float) -> float:
    """Area under the cumulative error curve up to ``threshold``, normalised to [0, 1]."""
    e = np.sort(np.asarray(errors, dtype=float))
    if len(e) == 0:
        return np.nan
    xs = np.linspace(0, threshold, 201)
    cdf = np.searchsorted(e, xs, side="right") / len(e)
    return float(np.trapezoid(cdf, xs) / threshold)


def summary_stats(df: pd.DataFrame, sel: pd.DataFrame, thresholds: dict, protocol: str = "paper") -> pd.DataFrame:
    """Median errors and AUC at the paper's thresholds per (variant, category), test split."""
    d = selected_rows(df[df["split"] == "test"], sel, protocol)
    out = []
    for (feat, est, stage, cat), g in d.groupby(["features", "estimator", "stage", "category"], sort=True):
        row = {
            "features": feat,
            "estimator": est,
            "stage": stage,
            "category": cat,
            "n": len(g),
            "median_rot_deg": float(np.median(g["rotation_error_deg"])),
            "median_trans": float(np.median(g["translation_error"])),
            "median_runtime_s": float(np.median(g["runtime_s"])),
            "failures": int((~g["success"].astype(bool)).sum()),
        }
        for r in thresholds["rotation_deg"]:
            row[f"AUC R@{r:g}"] = auc(g["rotation_error_deg"], r)
        for t in thresholds["translation"]:
            row[f"AUC t@{t:g}"] = auc(g["translation_error"], t)
        out.append(row)
    return pd.DataFrame(out)


def failure_reasons(df: pd.DataFrame) -> pd.DataFrame:
    f = df[~df["success"].astype(bool)]
    if f.empty:
        return pd.DataFrame(columns=["estimator", "category", "failure_reason", "count"])
    return (
        f.groupby(["estimator", "category", "failure_reason"])
        .size()
        .rename("count")
        .reset_index()
        .sort_values("count", ascending=False)
    )


def inlier_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Per category: the fraction of argmax matches within the oracle radius of the true reprojection (from the
    oracle's per-pair diagnostics): how hard the maps make each category, independently of any estimator."""
    d = df[(df["estimator"] == "oracle") & (df["stage"] == "")]
    rows = []
    for _, r in d.iterrows():
        diag = json.loads(r["diagnostics"]) if isinstance(r["diagnostics"], str) else {}
        if "inlier_ratio" in diag:
            rows.append({"split": r["split"], "category": r["category"], "inlier_ratio": diag["inlier_ratio"]})
    if not rows:
        return pd.DataFrame(columns=["split", "category", "n", "median", "q25", "q75"])
    t = pd.DataFrame(rows)
    g = t.groupby(["split", "category"])["inlier_ratio"]
    return pd.DataFrame(
        {"n": g.size(), "median": g.median(), "q25": g.quantile(0.25), "q75": g.quantile(0.75)}
    ).reset_index()


def cost_diagnostics(df: pd.DataFrame) -> pd.DataFrame:
    """NRE cost at the estimate vs at the ground truth: an optimiser failure has truth cheaper than the estimate."""
    d = df[df["estimator"].isin(["nre_c2f", "nre_single", "re_gauss"]) & df["success"].astype(bool)]
    rows = []
    for _, r in d.iterrows():
        diag = json.loads(r["diagnostics"]) if isinstance(r["diagnostics"], str) else {}
        if diag.get("cost") is None or diag.get("cost_at_truth") is None:
            continue
        rows.append(
            {
                "pair_id": r["pair_id"],
                "estimator": r["estimator"],
                "stage": r["stage"],
                "params": r["params"],
                "category": r["category"],
                "cost": diag["cost"],
                "cost_at_truth": diag["cost_at_truth"],
                "rotation_error_deg": r["rotation_error_deg"],
            }
        )
    out = pd.DataFrame(rows)
    if not out.empty:
        out["optimiser_failure"] = out["cost_at_truth"] < out["cost"] - 1e-6
    return out


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    def fmt(v):
        if isinstance(v, float):
            return "n/a" if np.isnan(v) else format(v, floatfmt)
        return str(v)

    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    def esc(s):
        return str(s).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")

    def fmt(v):
        if isinstance(v, float):
            return "n/a" if np.isnan(v) else format(v, floatfmt)
        return esc(v)

    cols = list(df.columns)
    lines = [
        r"\begin{tabular}{" + "l" * len(cols) + "}",
        r"\toprule",
        " & ".join(esc(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(fmt(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, stem) -> list[str]:
    from pathlib import Path

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.6g")
    stem.with_suffix(".md").write_text(to_markdown(df))
    stem.with_suffix(".tex").write_text(to_latex(df))
    return [str(stem.with_suffix(s)) for s in (".csv", ".md", ".tex")]
