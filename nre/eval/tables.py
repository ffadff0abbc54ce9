"""The paper's tables from evaluated rows, and their writers (CSV + Markdown + LaTeX).

- Table 1 (``table1``): per category, every estimator at its selected setting vs the reference (single-level NRE)
  on the same maps (one feature backend), test split: the failure rate at each threshold, its seeded bootstrap 95%
  interval, the relative deterioration w.r.t. the reference in percent (n/a where the reference's rate is 0) and the
  p-value of an exact McNemar test against the reference on the per-pair failure indicators (pairs both have).
  ``table1_display`` packs each cell as ``rate [lo, hi] +d% (p)`` for Markdown / LaTeX.
- Table 2 (``table2``): per category, coarse-to-fine NRE (stage fine_gnc) per feature backend, with the same
  intervals.
- ``summary_stats``: median errors, AUC at the thresholds, median run time and failures per variant and category.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nre.eval.metrics import (
    CATEGORIES,
    FAIR_NA,
    FINAL_STAGES,
    auc,
    bootstrap_ci,
    mcnemar_p,
    metric_columns,
    selected_rows,
)
from nre.seeding import derive_seed


def _cell_seed(seed: int, *keys) -> int:
    return derive_seed(seed, *[str(k) for k in keys]) % (2**32)


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
    """Per category: each estimator (selected setting, final stage) vs the reference on the same maps, test split."""
    cols = metric_columns(thresholds)
    d = selected_rows(df[(df["split"] == "test") & (df["features"] == features)], sel, protocol)
    d = d[d["stage"].isin(FINAL_STAGES)]
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
                lo, hi = bootstrap_ci(fail, n_boot, _cell_seed(seed, cat, est, name))
                row[name] = rate
                row[f"{name} lo"] = lo
                row[f"{name} hi"] = hi
                rel, p = "n/a", np.nan
                if not ref.empty:
                    common = g.index.intersection(ref.index)
                    if len(common):
                        rfail = ref.loc[common, err].to_numpy() > t
                        efail = g.loc[common, err].to_numpy() > t
                        rref = float(rfail.mean())
                        rel = "n/a" if rref == 0 else f"{100 * (float(efail.mean()) - rref) / rref:+.0f}"
                        p = mcnemar_p(efail, rfail)
                row[f"{name} vs NRE %"] = rel
                row[f"{name} p"] = p
            out.append(row)
        if protocol == "fair":  # swept estimators without a tuning choice: labelled rows, never test-chosen ones
            na = sel[(sel["features"] == features) & (sel["fair"] == FAIR_NA)]
            for est in sorted(set(na["estimator"]) - set(dc["estimator"])):
                row = {"category": cat, "estimator": est, "params": FAIR_NA, "n": 0}
                for name, _, _ in cols:
                    row.update({name: np.nan, f"{name} lo": np.nan, f"{name} hi": np.nan})
                    row.update({f"{name} vs NRE %": "n/a", f"{name} p": np.nan})
                out.append(row)
    return pd.DataFrame(out)


def table1_display(t1: pd.DataFrame, thresholds: dict, reference: str = "nre_single") -> pd.DataFrame:
    """One string per cell: ``rate [lo, hi]`` plus ``+d% (p=..)`` against the reference."""
    rows = []
    for _, r in t1.iterrows():
        row = {"category": r["category"], "estimator": r["estimator"], "params": r["params"], "n": r["n"]}
        for name, _, _ in metric_columns(thresholds):
            if r["params"] == FAIR_NA:
                row[name] = "n/a"
                continue
            cell = f"{r[name]:.3f} [{r[f'{name} lo']:.2f}, {r[f'{name} hi']:.2f}]"
            if r["estimator"] != reference and f"{name} p" in r and not pd.isna(r[f"{name} p"]):
                cell += f" {r[f'{name} vs NRE %']}% (p={r[f'{name} p']:.2g})"
            row[name] = cell
        rows.append(row)
    return pd.DataFrame(rows)


def table2(df: pd.DataFrame, thresholds: dict, n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """Per category: coarse-to-fine NRE (fine stage) per feature backend, test split."""
    cols = metric_columns(thresholds)
    d = df[(df["split"] == "test") & (df["estimator"] == "nre_c2f") & (df["stage"] == "fine_gnc")]
    out = []
    for cat in CATEGORIES + ("all",):
        dc = d if cat == "all" else d[d["category"] == cat]
        for (feat, params), g in dc.groupby(["features", "params"], sort=True):
            row = {"category": cat, "features": feat, "params": params, "n": len(g)}
            for name, err, t in cols:
                fail = g[err].to_numpy() > t
                row[name] = float(fail.mean())
                if n_boot:
                    lo, hi = bootstrap_ci(fail, n_boot, _cell_seed(seed, "t2", cat, feat, name))
                    row[f"{name} ci"] = f"[{lo:.3f}, {hi:.3f}]"
            out.append(row)
    if not out:
        return pd.DataFrame(columns=["category", "features", "params", "n"] + [c for c, _, _ in cols])
    return pd.DataFrame(out)


def summary_stats(df: pd.DataFrame, sel: pd.DataFrame, thresholds: dict, protocol: str = "paper") -> pd.DataFrame:
    """Median errors and AUC at the paper's thresholds per (variant, category), test split; 'all' pools them."""
    d = selected_rows(df[df["split"] == "test"], sel, protocol)
    d = pd.concat([d, d.assign(category="all")])
    out = []
    for (feat, est, stage, cat), g in d.groupby(["features", "estimator", "stage", "category"], sort=True):
        row = {
            "features": feat,
            "estimator": est,
            "stage": stage,
            "category": cat,
            "params": g["params"].iloc[0],
            "n": len(g),
            "median_rot_deg": float(np.median(g["rotation_error_deg"])),
            "median_trans": float(np.median(g["translation_error"])),
            "median_runtime_s": float(np.nanmedian(g["runtime_s"].astype(float)))
            if g["runtime_s"].notna().any()
            else np.nan,
            "failures": int((~g["success"].astype(bool)).sum()),
        }
        for r in thresholds["rotation_deg"]:
            row[f"AUC R@{r:g}"] = auc(g["rotation_error_deg"], r)
        for t in thresholds["translation"]:
            row[f"AUC t@{t:g}"] = auc(g["translation_error"], t)
        out.append(row)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------- writers
def _fmt(v, floatfmt: str, esc=str) -> str:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if np.isnan(v):
            return "n/a"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        return format(v, floatfmt)
    return esc(v)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += [
        "| " + " | ".join(_fmt(v, floatfmt).replace("|", "\\|") for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "_": r"\_",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    ">": r"\textgreater{}",
    "<": r"\textless{}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
}


def _tex_escape(s) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(s))


def to_latex(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    cols = list(df.columns)
    lines = [
        r"\begin{tabular}{" + "l" * len(cols) + "}",
        r"\toprule",
        " & ".join(_tex_escape(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_fmt(v, floatfmt, _tex_escape) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, stem, display: pd.DataFrame | None = None, text: bool = True) -> list[str]:
    """STEM.csv (full precision, machine-readable) and, with ``text``, STEM.md / STEM.tex (``display`` if given,
    else ``df``); per-pair tables pass ``text=False``: tens of thousands of rows are unreadable as Markdown / LaTeX."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.6g")
    if not text:
        return [str(stem.with_suffix(".csv"))]
    shown = df if display is None else display
    stem.with_suffix(".md").write_text(to_markdown(shown))
    stem.with_suffix(".tex").write_text(to_latex(shown))
    return [str(stem.with_suffix(s)) for s in (".csv", ".md", ".tex")]
