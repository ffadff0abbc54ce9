"""The paper's tables from evaluated rows, and their writers (CSV + Markdown + LaTeX + HTML).

Every table takes the study (``nre.eval.study.Study``: display names, order, final stages, Table 2 membership);
without one it is derived from the rows. The CSVs keep the estimator keys and the settings as JSON (machine-readable:
``nre regress`` aligns on them); Markdown, LaTeX and HTML show display names and settings as text.

- Table 1 (``table1``): per category (easy, medium, hard, all), every estimator at its selected setting and final
  stage vs the reference (the study's, single-level NRE in the configs) on the same maps (one feature backend),
  test split: the failure rate at each threshold, its seeded bootstrap 95% interval, the relative deterioration
  w.r.t. the reference in percent (n/a where the reference's rate is 0) and the p-value of an exact McNemar test
  against the reference on the per-pair failure indicators (pairs both have). ``table1_display`` packs each cell as
  ``rate [lo, hi] +d% (p)`` for Markdown / LaTeX / HTML.
- Table 2 (``table2``): per category, every estimator of a Table 2 class (coarse-to-fine NRE in the configs) at its
  final stage on every feature backend, with the same intervals.
- ``summary_stats``: per variant (selected setting, every stage) and category: the share of queries with an
  estimate, recall at combined (translation, rotation) thresholds, median errors, AUC at the thresholds, median run
  time and failures.
- ``headline``: per category, each estimator (selected setting, final stage) against the reference at one combined
  threshold: failure rate, 95% interval, difference to the reference and McNemar p (the report's first table).
- ``seed_spread``: for an estimator run with several seeds, mean, std and range over the seeds of its failure
  rates, recalls and AUCs at its selected setting.
- ``paper_comparison``: our hard-category Table 1 next to the paper's Table 1 (``paper_table1.csv``).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from nre.eval.metrics import (
    CATEGORIES,
    DEFAULT_RECALL,
    FAIR_NA,
    auc,
    bootstrap_ci,
    mcnemar_p,
    metric_columns,
    recall,
    recall_columns,
    selected_rows,
    success,
)
from nre.eval.study import NONE, Study, category_rank, split_repeat
from nre.seeding import derive_seed

PAPER_TABLE1 = Path(__file__).with_name("paper_table1.csv")


def _cell_seed(seed: int, *keys) -> int:
    return derive_seed(seed, *[str(k) for k in keys]) % (2**32)


def _study(df: pd.DataFrame, study: Study | None, reference: str | None = None) -> Study:
    return study if study is not None else Study.fallback(df, reference=reference)


def _cats(d: pd.DataFrame):
    for cat in CATEGORIES + ("all",):
        yield cat, (d if cat == "all" else d[d["category"] == cat])


def table1(
    df: pd.DataFrame,
    sel: pd.DataFrame,
    thresholds: dict,
    features: str,
    reference: str | None = None,
    protocol: str = "paper",
    n_boot: int = 1000,
    seed: int = 0,
    study: Study | None = None,
) -> pd.DataFrame:
    """Per category: each estimator (selected setting, final stage) vs the reference on the same maps, test split.
    ``reference``: default the study's."""
    study = _study(df, study, reference)
    reference = reference or study.reference
    cols = metric_columns(thresholds)
    d = selected_rows(df[(df["split"] == "test") & (df["features"] == features)], sel, protocol, final_only=True)
    out = []
    for cat, dc in _cats(d):
        ref = dc[dc["estimator"] == reference].set_index("pair_id")
        for est in study.ordered(dc["estimator"].unique()):
            g = dc[dc["estimator"] == est].set_index("pair_id")
            row = {"category": cat, "estimator": est, "params": g["params"].iloc[0], "n": len(g)}
            for name, err, t in cols:
                fail = g[err].to_numpy() > t
                rate = float(fail.mean()) if len(fail) else np.nan
                lo, hi = bootstrap_ci(fail, n_boot, _cell_seed(seed, cat, est, name))
                row[name] = rate
                row[f"{name} lo"] = lo
                row[f"{name} hi"] = hi
                rel, p = "n/a", np.nan
                if not ref.empty and est != reference:
                    common = g.index.intersection(ref.index)
                    if len(common):
                        rfail = ref.loc[common, err].to_numpy() > t
                        efail = g.loc[common, err].to_numpy() > t
                        rref = float(rfail.mean())
                        rel = "n/a" if rref == 0 else f"{round(100 * (float(efail.mean()) - rref) / rref):+d}"
                        p = mcnemar_p(efail, rfail)
                row[f"{name} vs ref %"] = rel
                row[f"{name} p"] = p
            out.append(row)
        if protocol == "fair":  # swept estimators without a tuning choice: labelled rows, never test-chosen ones
            na = sel[(sel["features"] == features) & (sel["fair"] == FAIR_NA)]
            for est in study.ordered(set(na["estimator"]) - set(dc["estimator"])):
                row = {"category": cat, "estimator": est, "params": FAIR_NA, "n": 0}
                for name, _, _ in cols:
                    row.update({name: np.nan, f"{name} lo": np.nan, f"{name} hi": np.nan})
                    row.update({f"{name} vs ref %": "n/a", f"{name} p": np.nan})
                out.append(row)
    return study.sort(pd.DataFrame(out)) if out else pd.DataFrame(columns=["category", "estimator", "params", "n"])


def _p_text(p: float) -> str:
    return f"p={p:.2g}" if p >= 1e-4 else "p<1e-4"


def rate_cell(rate, lo=np.nan, hi=np.nan, rel=None, p=np.nan) -> str:
    """``rate [lo, hi] +d% (p=..)``: the interval when there is one, the comparison with the reference when made;
    a relative change against a reference rate of 0 is shown as ``ref. 0``."""
    if rate is None or pd.isna(rate):
        return NONE
    cell = f"{rate:.3f}"
    if not (pd.isna(lo) or pd.isna(hi)):
        cell += f" [{lo:.2f}, {hi:.2f}]"
    if not pd.isna(p):
        rel_text = "ref. 0" if rel in (None, "n/a") or pd.isna(rel) else f"{rel}%"
        cell += f" {rel_text} ({_p_text(p)})"
    return cell


def table1_display(
    t1: pd.DataFrame, thresholds: dict, reference: str | None = None, study: Study | None = None
) -> pd.DataFrame:
    """One string per cell: ``rate [lo, hi]`` plus ``+d% (p=..)`` against the reference; display names and
    settings as text with a study."""
    rows = []
    for _, r in t1.iterrows():
        row = {"category": r["category"], "estimator": r["estimator"], "params": r["params"], "n": r["n"]}
        for name, _, _ in metric_columns(thresholds):
            if r["params"] == FAIR_NA:
                row[name] = "n/a: no tuning pairs"
                continue
            rel = r.get(f"{name} vs ref %")
            row[name] = rate_cell(r[name], r[f"{name} lo"], r[f"{name} hi"], rel, r.get(f"{name} p", np.nan))
        rows.append(row)
    out = pd.DataFrame(
        rows, columns=["category", "estimator", "params", "n"] + [c for c, _, _ in metric_columns(thresholds)]
    )
    return study.display(out) if study is not None else out


def table2(
    df: pd.DataFrame,
    thresholds: dict,
    n_boot: int = 0,
    seed: int = 0,
    study: Study | None = None,
    sel: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per category: every estimator of a Table 2 class at its final stage on every feature backend, test split;
    with ``sel`` at its selected setting (paper protocol) on each backend, else every setting."""
    study = _study(df, study)
    cols = metric_columns(thresholds)
    keys = study.table2_keys()
    d = df[(df["split"] == "test") & df["estimator"].isin(keys)]
    d = d[d["stage"] == d["estimator"].map(study.final_stage)] if len(d) else d
    if sel is not None and len(d):
        d = selected_rows(d, sel, "paper", final_only=True)
    out = []
    for cat, dc in _cats(d):
        for (est, feat, params), g in dc.groupby(["estimator", "features", "params"], sort=False):
            row = {"category": cat, "estimator": est, "features": feat, "params": params, "n": len(g)}
            for name, err, t in cols:
                fail = g[err].to_numpy() > t
                row[name] = float(fail.mean())
                if n_boot:
                    lo, hi = bootstrap_ci(fail, n_boot, _cell_seed(seed, "t2", cat, feat, name))
                    row[f"{name} ci"] = f"[{lo:.3f}, {hi:.3f}]"
            out.append(row)
    if not out:
        return pd.DataFrame(columns=["category", "estimator", "features", "params", "n"] + [c for c, _, _ in cols])
    return study.sort(pd.DataFrame(out))


def _variant_metrics(g: pd.DataFrame, thresholds: dict, recall_thresholds) -> dict:
    """Success, recalls, medians and AUCs of one group of rows."""
    row = {"success_rate": success(g)}
    for name, t, r in recall_columns(recall_thresholds):
        row[name] = recall(g, t, r)
    row["median_rot_deg"] = float(np.median(g["rotation_error_deg"]))
    row["median_trans"] = float(np.median(g["translation_error"]))
    for r in thresholds["rotation_deg"]:
        row[f"AUC R@{r:g}"] = auc(g["rotation_error_deg"], r)
    for t in thresholds["translation"]:
        row[f"AUC t@{t:g}"] = auc(g["translation_error"], t)
    return row


def summary_stats(
    df: pd.DataFrame,
    sel: pd.DataFrame,
    thresholds: dict,
    protocol: str = "paper",
    recall_thresholds=None,
    study: Study | None = None,
) -> pd.DataFrame:
    """Per (variant at its selected setting, every stage; category), test split, 'all' pooling the categories: the
    share of queries with an estimate, recall at the combined thresholds, median errors, AUC at the paper's
    thresholds, median run time and failures."""
    study = _study(df, study)
    recall_thresholds = DEFAULT_RECALL if recall_thresholds is None else recall_thresholds
    d = selected_rows(df[df["split"] == "test"], sel, protocol)
    d = pd.concat([d, d.assign(category="all")])
    out = []
    for (feat, est, stage, cat), g in d.groupby(["features", "estimator", "stage", "category"], sort=True):
        row = {"features": feat, "estimator": est, "stage": stage, "category": cat}
        row.update({"params": g["params"].iloc[0], "n": len(g)})
        row.update(_variant_metrics(g, thresholds, recall_thresholds))
        rt = g["runtime_s"].astype(float)
        row["median_runtime_s"] = float(np.nanmedian(rt)) if rt.notna().any() else np.nan
        row["failures"] = int((~g["success"].astype(bool)).sum())
        out.append(row)
    return (
        study.sort(pd.DataFrame(out)) if out else pd.DataFrame(columns=["features", "estimator", "stage", "category"])
    )


def headline(
    df: pd.DataFrame,
    sel: pd.DataFrame,
    features: str,
    threshold: tuple[float, float],
    reference: str | None = None,
    protocol: str = "paper",
    n_boot: int = 1000,
    seed: int = 0,
    study: Study | None = None,
) -> pd.DataFrame:
    """Per category and estimator (selected setting, final stage, backend ``features``, test split): the failure rate
    at the combined ``threshold`` (translation, rotation deg: a pose is wrong when either error is above it), its 95%
    interval, the difference to the reference's rate on the pairs both have and the McNemar p-value."""
    study = _study(df, study, reference)
    reference = reference or study.reference
    t_max, r_max = float(threshold[0]), float(threshold[1])
    d = selected_rows(df[(df["split"] == "test") & (df["features"] == features)], sel, protocol, final_only=True)
    d = d.assign(wrong=(d["translation_error"].astype(float) > t_max) | (d["rotation_error_deg"].astype(float) > r_max))
    out = []
    for cat, dc in _cats(d):
        ref = dc[dc["estimator"] == reference].set_index("pair_id")["wrong"]
        for est in study.ordered(dc["estimator"].unique()):
            g = dc[dc["estimator"] == est].set_index("pair_id")
            fail = g["wrong"].to_numpy(dtype=bool)
            lo, hi = bootstrap_ci(fail, n_boot, _cell_seed(seed, "headline", cat, est))
            row = {"category": cat, "estimator": est, "params": g["params"].iloc[0], "n": len(g)}
            row.update({"rate": float(fail.mean()), "lo": lo, "hi": hi, "diff": np.nan, "p": np.nan})
            common = g.index.intersection(ref.index)
            if est != reference and len(common):
                a, b = g.loc[common, "wrong"].to_numpy(dtype=bool), ref.loc[common].to_numpy(dtype=bool)
                row.update({"diff": float(a.mean() - b.mean()), "p": mcnemar_p(a, b)})
            out.append(row)
    cols = ["category", "estimator", "params", "n", "rate", "lo", "hi", "diff", "p"]
    return study.sort(pd.DataFrame(out, columns=cols))


def seed_spread(
    df: pd.DataFrame,
    sel: pd.DataFrame,
    thresholds: dict,
    recall_thresholds=None,
    study: Study | None = None,
    protocol: str = "paper",
) -> pd.DataFrame:
    """For every estimator with repeats (rows ``<key>@1`` ... ``<key>@<N-1>``): per backend and category, at the base
    key's selected setting and final stage (test split), the mean, std (ddof 1) and range over the N seeds of each
    failure rate, recall and AUC. Columns ``<metric> mean|std|min|max``; ``seeds``: how many were found;
    ``identical``: whether every seed gave the same errors on every pair (an estimator that ignores its seed)."""
    study = _study(df, study)
    recall_thresholds = DEFAULT_RECALL if recall_thresholds is None else recall_thresholds
    labels = df["estimator"].astype(str)
    base = labels.map(lambda e: split_repeat(e)[0])
    repeated = sorted(set(base[labels != base]))
    if not repeated:
        return pd.DataFrame(columns=["features", "estimator", "category", "params", "seeds", "identical", "n"])
    d = df[(df["split"] == "test") & base.isin(repeated)]
    d = d.assign(base=base[d.index], repeat=labels[d.index].map(lambda e: split_repeat(e)[1]))
    keep = sel[sel["estimator"].isin(repeated)][["features", "estimator", "stage", protocol]]
    keep = keep.rename(columns={"estimator": "base", protocol: "params"})
    d = d.merge(keep, on=["features", "base", "stage", "params"])
    d = pd.concat([d, d.assign(category="all")])
    out = []
    for (feat, est, cat), g in d.groupby(["features", "base", "category"], sort=False):
        per_seed = []
        for _, gs in g.groupby("repeat", sort=True):
            m = {name: float((gs[err].to_numpy() > t).mean()) for name, err, t in metric_columns(thresholds)}
            m.update(
                {k: v for k, v in _variant_metrics(gs, thresholds, recall_thresholds).items() if k != "success_rate"}
            )
            per_seed.append(m)
        ps = pd.DataFrame(per_seed).drop(columns=["median_rot_deg", "median_trans"])
        errs = g.pivot_table(index="pair_id", columns="repeat", values="rotation_error_deg", aggfunc="first")
        same = bool(errs.nunique(axis=1, dropna=False).le(1).all())
        row = {"features": feat, "estimator": est, "category": cat, "params": g["params"].iloc[0]}
        row.update({"seeds": len(ps), "identical": same, "n": int(len(g) / max(len(ps), 1))})
        for c in ps.columns:
            v = ps[c].to_numpy(dtype=float)
            row.update({f"{c} mean": v.mean(), f"{c} std": v.std(ddof=1) if len(v) > 1 else np.nan})
            row.update({f"{c} min": v.min(), f"{c} max": v.max()})
        out.append(row)
    return study.sort(pd.DataFrame(out))


def seed_display(spread: pd.DataFrame, study: Study | None = None) -> pd.DataFrame:
    """One row per (estimator, backend, metric), one column per category: ``mean ± std [min, max]`` over the seeds."""
    if spread.empty:
        return pd.DataFrame(columns=["estimator", "features", "params", "seeds", "metric", *CATEGORIES, "all"])
    metrics = [c[: -len(" mean")] for c in spread.columns if c.endswith(" mean")]
    cats = sorted(spread["category"].unique(), key=category_rank)
    rows = []
    for (feat, est), g in spread.groupby(["features", "estimator"], sort=False):
        g = g.set_index("category")
        first = g.iloc[0]
        for m in metrics:
            row = {"estimator": est, "features": feat, "params": first["params"], "seeds": int(first["seeds"])}
            row["identical runs"] = "yes" if bool(g["identical"].all()) else "no"
            row["metric"] = pretty_column(m)
            for c in cats:
                a, sd, lo, hi = (g.loc[c, f"{m} {k}"] for k in ("mean", "std", "min", "max"))
                row[c] = f"{a:.3f} ± {sd:.3f} [{lo:.3f}, {hi:.3f}]" if not pd.isna(sd) else f"{a:.3f}"
            rows.append(row)
    out = pd.DataFrame(rows)
    return study.display(out) if study is not None else out


# ----------------------------------------------------------------------------------------------- the paper
def paper_table1() -> pd.DataFrame:
    """The paper's Table 1 (MegaDepth, S2DNet maps; its numbers equal the Hard rows of its Table 2): one row per
    estimator, ``classes``: our estimator classes that implement it (``;``-separated)."""
    return pd.read_csv(PAPER_TABLE1, comment="#", dtype={"classes": str, "hyperparameter": str}, keep_default_na=False)


def paper_comparison(t1: pd.DataFrame, thresholds: dict, study: Study, category: str = "hard") -> pd.DataFrame:
    """Our Table 1 rows of ``category`` (each estimator, in the study order) with the paper's rate and relative
    deterioration of the paper row its class implements, per threshold (``<rate> paper`` / ``<rate> paper %``;
    NaN where the paper has no such row or threshold)."""
    paper = paper_table1()
    by_class = {c: r for _, r in paper.iterrows() for c in str(r["classes"]).split(";")}
    d = t1[t1["category"] == category]
    rows = []
    for _, r in d.iterrows():
        pr = by_class.get(study.cls(r["estimator"]))
        row = {"estimator": r["estimator"], "params": r["params"], "n": r["n"]}
        hp = "" if pr is None or pr["hyperparameter"] == "N/A" else f", {pr['hyperparameter']}"
        row["paper row"] = f"{pr['estimator']}{hp}" if pr is not None else NONE
        for name, _, _ in metric_columns(thresholds):
            row[name] = r.get(name)
            for k in ("lo", "hi", "vs ref %", "p"):
                row[f"{name} {k}"] = r.get(f"{name} {k}", np.nan)
            has = pr is not None and name in paper.columns
            row[f"{name} paper"] = float(pr[name]) if has else np.nan
            row[f"{name} paper %"] = float(pr[f"{name} vs NRE %"]) if has else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- writers
PRETTY_COLUMNS = {
    "success_rate": "with estimate",
    "median_rot_deg": "median R (deg)",
    "median_trans": "median t",
    "median_runtime_s": "median time (s)",
    "features": "backend",
    "n_settings": "settings",
    "paper_test_value": "paper: test value",
    "fair_test_value": "fair: test value",
    "fair_from_tuning": "fair from tuning",
    "fair_basis": "fair basis",
    # headline
    "rate": "wrong poses",
    "lo": "95% interval lo",
    "hi": "95% interval hi",
    "diff": "difference to the reference",
    "p": "McNemar p",
}


def pretty_column(c: str) -> str:
    if c in PRETTY_COLUMNS:
        return PRETTY_COLUMNS[c]
    if c.startswith("recall@"):
        t, r = c[len("recall@") :].removesuffix("deg").split("/")
        return f"recall ({t}, {r} deg)"
    if c.startswith("AUC R@"):
        return f"{c} deg"
    return c.replace("R>", "R > ").replace("t>", "t > ").replace("deg", " deg").replace("  ", " ")


def _fmt(v, floatfmt: str, esc=str) -> str:
    if v is None:
        return NONE
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if np.isnan(v):
            return NONE
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        return format(v, floatfmt)
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    text = str(v)
    return esc(text) if text.lower() not in ("nan", "none", "") else NONE


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
    "±": r"$\pm$",
    "—": "---",
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


def to_html(df: pd.DataFrame, floatfmt: str = ".3f", group: str | None = None) -> str:
    """An HTML table; ``group``: a column shown as a heading row whenever its value changes (e.g. the category)."""
    cols = [c for c in df.columns if c != group]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body, last = [], object()
    for _, r in df.iterrows():
        if group is not None and r[group] != last:
            last = r[group]
            body.append(f'<tr class="group"><th colspan="{len(cols)}">{html.escape(_fmt(last, floatfmt))}</th></tr>')
        cells = []
        for c in cols:
            v = r[c]
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            text = "∞" if num and np.isinf(v) and v > 0 else _fmt(v, floatfmt)
            label = len(text) <= 28 and not text[:1].isdigit()
            cls = " class=num" if num else (" class=nw" if label else "")  # short labels on one line
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1400px;color:#222}"
    "table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.2em}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}td.nw{white-space:nowrap}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}td.nw{white-space:nowrap}"
    "tr.group th{background:#eef2f7;text-align:left}thead th{background:#f6f6f6}"
)


def html_page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{HTML_STYLE}</style></head><body>{body}</body></html>\n"
    )


def for_people(df: pd.DataFrame, study: Study | None = None) -> pd.DataFrame:
    """Display names, settings as text and readable column names (Markdown, LaTeX, HTML); with a study, the
    category first (easy, medium, hard, all) and the rows in the study's order."""
    if study is not None and "category" in df.columns and df.columns[0] != "category":
        df = study.sort(df[["category"] + [c for c in df.columns if c != "category"]])
    shown = study.display(df) if study is not None and ("estimator" in df or "params" in df) else df
    return shown.rename(columns={c: pretty_column(str(c)) for c in shown.columns})


def write_table(
    df: pd.DataFrame,
    stem,
    display: pd.DataFrame | None = None,
    text: bool = True,
    study: Study | None = None,
    title: str | None = None,
) -> list[str]:
    """STEM.csv (full precision, machine-readable) and, with ``text``, STEM.md / STEM.tex / STEM.html (``display``
    if given, else ``df`` with display names and settings as text from ``study``); per-pair tables pass
    ``text=False``: tens of thousands of rows are unreadable as Markdown / LaTeX. The HTML page is what Snakemake's
    ``--report`` shows (it previews HTML, not Markdown)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.6g")
    if not text:
        return [str(stem.with_suffix(".csv"))]
    shown = for_people(df, study) if display is None else for_people(display)
    stem.with_suffix(".md").write_text(to_markdown(shown))
    stem.with_suffix(".tex").write_text(to_latex(shown))
    group = "category" if len(shown.columns) and shown.columns[0] == "category" else None
    name = title or stem.name.replace("_", " ")
    stem.with_suffix(".html").write_text(html_page(name, f"<h3>{html.escape(name)}</h3>" + to_html(shown, group=group)))
    return [str(stem.with_suffix(s)) for s in (".csv", ".md", ".tex", ".html")]
