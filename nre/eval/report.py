"""A self-contained HTML report (tables inline, figures embedded) from an evaluation folder, laid out like the paper.

1. Summary, one screen: per category, the reference (single-level NRE in the configs) against each estimator at its
   selected setting: failure rate at one combined threshold with its 95% interval, the difference to the reference
   and McNemar's p (``headline.csv``); then the hard category at the paper's six thresholds next to the paper's own
   Table 1 (``paper_table1.csv``; MegaDepth with S2DNet maps, so a comparison of trends, not of numbers).
2. Details: Table 1 under both protocols (per Table 1 backend), Table 2, Table 3, recall / success / median errors /
   AUC, the spread over seeds, the hyperparameter selection with the sweep plot, diagnostics.
3. Figures: Fig. 5-style cumulative curves, the inlier histogram, Fig. 4-style map pictures, the pairs.

Display names, settings as text and the order come from the study (``study.json`` written by ``nre tables``, or
``info``). Empty cells read ``—``, never ``nan`` or ``None``.
"""

from __future__ import annotations

import base64
import errno
import html
import json
import logging
from pathlib import Path

import pandas as pd

from nre.eval.study import NONE, Study, category_rank

log = logging.getLogger("nre.report")

STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;max-width:1360px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:2px solid #dde;padding-bottom:2px;margin-top:1.6em}
h3{margin-bottom:.3em}p.note,p.lead{max-width:1100px}p.note{color:#555;font-size:.9em}
table{border-collapse:collapse;font-size:12.5px;margin:.4em 0 1em}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
thead th{background:#f3f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}td.nw{white-space:nowrap}
tr.group th{background:#eef2f7}tr.ref td{background:#fbfaf0}
.sub{display:block;color:#555;font-size:11px}.paper{display:block;color:#7a4b00;font-size:11px}
.better{color:#1a7f37;font-weight:600}.worse{color:#b42318;font-weight:600}
nav{font-size:.9em;margin:.5em 0 1em}nav a{margin-right:1em}img{max-width:100%;margin:.3em 0 1em}
details{margin:.3em 0 1em}
"""

DETAILS = [  # (heading, file stem, what it shows)
    (
        "Table 2: features compared with one estimator",
        "table2",
        "Every estimator of a Table 2 class (coarse-to-fine NRE) at its final stage on every feature backend; failure "
        "rates with bootstrap 95% intervals.",
    ),
    (
        "Table 3: time and memory",
        "table3",
        "Median wall and CPU time, memory and threads per pipeline stage and per estimator (its first setting), "
        "measured on a few test pairs by jobs that take every core, so they run alone.",
    ),
    (
        "Recall, share with an estimate, median errors and AUC",
        "summary",
        "Per estimator at its selected setting (every stage), test split: share of queries with an estimate, recall at "
        "the combined (translation, rotation) thresholds, median errors (inf: more than half failed), AUC of the "
        "cumulative curves up to each threshold, median run time, failures.",
    ),
    (
        "Spread over seeds",
        "seeds",
        "Estimators run with several seeds (config seeds: N): mean ± std [min, max] over the N runs of each failure "
        "rate, recall and AUC, at the setting selected for the first run, final stage. Identical runs: every seed "
        "gave the same errors on every pair (the estimator's randomness does not follow the seed it is given).",
    ),
    (
        "Hyperparameter selection",
        "selection",
        "The setting chosen per estimator by the selection metric on its final stage: paper protocol (best on the test "
        "pairs) and fair protocol (best on the tuning split, applied once to the test pairs).",
    ),
    (
        "Errors against the SfM ground truth vs the renderer's truth",
        "truth_comparison",
        "Synthetic scenes only: the difference is the benchmark's ground-truth noise floor.",
    ),
    ("Failure reasons", "failure_reasons", "Failed estimates per estimator and category, by reason."),
    (
        "Cost at the truth vs at the estimate",
        "cost_summary",
        "Estimators whose diagnostics carry their cost at the estimate and at the truth: among wrong estimates "
        "(rotation error > 10 deg), optimiser failures (the truth is cheaper) vs objective failures.",
    ),
    (
        "Inlier ratio of the argmax matches per category",
        "inlier_ratios",
        "Fraction of argmax matches within the oracle radius of the true reprojection: how hard the maps make each "
        "category, independently of any estimator.",
    ),
]
FIGURES = [
    ("Stage ablation on hard pairs (Fig. 5)", "fig5_ablation_hard"),
    ("All estimators, hard pairs", "fig5_estimators_hard"),
    ("All estimators, medium pairs", "fig5_estimators_medium"),
    ("All estimators, easy pairs", "fig5_estimators_easy"),
    ("Inlier ratio of the argmax matches per pair", "inlier_ratios"),
]
ALPHA = 0.05  # McNemar p below this: the difference is called significant


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _read(f: Path) -> pd.DataFrame:
    """A table CSV as written: settings and relative changes (``+12``, ``n/a``) as text."""
    try:
        cols = pd.read_csv(f, nrows=0).columns
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    dtype = {c: str for c in cols if c in ("params", "paper", "fair") or str(c).endswith("%")}
    return pd.read_csv(f, dtype=dtype)


def _study(ev: Path, info) -> tuple[Study, list]:
    """The study (``info`` if given, else ``study.json`` of the evaluation) and the recall thresholds."""
    from nre.eval.metrics import DEFAULT_RECALL

    f = ev / "study.json"
    saved = json.loads(f.read_text()) if f.exists() else {}
    recall = saved.get("recall_thresholds", DEFAULT_RECALL)
    if info:
        return Study.load(info), recall
    if saved:
        st = Study.load(saved)
        st.order = saved.get("order") or st.order  # the resolved study: its order is complete
        return st, recall
    return Study(), recall


def _e(text) -> str:
    return html.escape(str(text))


def _cell_interval(rate, lo, hi) -> str:
    if pd.isna(rate):
        return NONE
    iv = "" if pd.isna(lo) or pd.isna(hi) else f" [{lo:.2f}, {hi:.2f}]"
    return f"{rate:.3f}{iv}"


def _signif(diff, p) -> str:
    """``Δ +0.052 (p=0.003)``, coloured when significant (better: lower failure rate)."""
    if pd.isna(diff) or pd.isna(p):
        return ""
    cls = ("better" if diff < 0 else "worse") if p < ALPHA else ""
    ptxt = f"p={p:.2g}" if p >= 1e-4 else "p&lt;1e-4"
    return f'<span class="sub {cls}">Δ {diff:+.3f} ({ptxt}){" *" if cls else ""}</span>'


def _maps_note(study: Study) -> str:
    """Which maps a summary table is on, when a study has several Table 1 backends (the first one's)."""
    t1 = list(study.table1_features)
    return f", {_e(t1[0])} maps" if len(t1) > 1 else ""


def _headline(ev: Path, study: Study, recall: list) -> str:
    f = ev / "headline.csv"
    if not f.exists():
        return ""
    h = _read(f)
    if h.empty:
        return ""
    mid = recall[len(recall) // 2] if recall else ("?", "?")
    cats = sorted(h["category"].unique(), key=category_rank)
    head = "<th>estimator</th><th>setting</th>" + "".join(
        f"<th>{_e(c)} (n={int(h.loc[h.category == c, 'n'].max())})</th>" for c in cats
    )
    body = []
    for est in study.ordered(h["estimator"].unique()):
        he = h[h["estimator"] == est].set_index("category")
        ref = est == study.reference
        cells = [f"<td>{_e(study.label(est))}{' (reference)' if ref else ''}</td>"]
        cells.append(f"<td>{_e(study.setting(est, he['params'].iloc[0]))}</td>")
        for c in cats:
            if c not in he.index:
                cells.append(f"<td>{NONE}</td>")
                continue
            r = he.loc[c]
            sig = "" if ref else _signif(r["diff"], r["p"])
            cells.append(f'<td class="num">{_e(_cell_interval(r["rate"], r["lo"], r["hi"]))}{sig}</td>')
        body.append(f"<tr{' class=ref' if ref else ''}>{''.join(cells)}</tr>")
    return (
        f"<h3>Wrong poses per category: translation error above {mid[0]:g} (scene units) or rotation error above "
        f"{mid[1]:g} deg (lower is better){_maps_note(study)}</h3>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        '<p class="note">Test pairs, each estimator at the setting chosen on the test pairs (paper protocol) and its '
        "final stage, on the Table 1 maps. Cell: rate [bootstrap 95% interval]; Δ: difference to the reference on the "
        "pairs both have, with the exact McNemar p-value (* and green / red: significantly better / worse, "
        f"p &lt; {ALPHA})."
        "</p>"
    )


def _paper(ev: Path, study: Study, thr: dict) -> str:
    from nre.eval.metrics import metric_columns
    from nre.eval.tables import paper_comparison

    f = ev / "table1_paper.csv"
    if not f.exists():
        return ""
    t1 = _read(f)
    if t1.empty or "hard" not in set(t1["category"]):
        return ""
    t1 = t1.rename(columns={c: c.replace(" vs NRE %", " vs ref %") for c in t1.columns})
    cmp = paper_comparison(t1, thr, study)
    names = [n for n, _, _ in metric_columns(thr)]
    head = "<th>estimator</th><th>setting</th><th>paper's row</th>" + "".join(
        f"<th>{_e(n.replace('deg', ' deg').replace('>', ' > '))}</th>" for n in names
    )
    body = []
    for _, r in cmp.iterrows():
        ref = r["estimator"] == study.reference
        cells = [
            f"<td>{_e(study.label(r['estimator']))}</td>",
            f"<td>{_e(study.setting(r['estimator'], r['params']))}</td>",
        ]
        cells.append(f"<td>{_e(r['paper row'])}</td>")
        for n in names:
            ours = _cell_interval(r[n], r[f"{n} lo"], r[f"{n} hi"])
            rel = r[f"{n} vs ref %"]
            if not ref and isinstance(rel, str) and rel != "n/a":
                ours += f" {rel}%"
            elif not ref and not pd.isna(r[f"{n} p"]):
                ours += " (ref. 0)"
            if not pd.isna(r[f"{n} p"]) and r[f"{n} p"] < ALPHA:
                ours += " *"
            paper = (
                ""
                if pd.isna(r[f"{n} paper"])
                else (f'<span class="paper">paper {r[f"{n} paper"]:.2f} ({r[f"{n} paper %"]:+.0f}%)</span>')
            )
            cells.append(f'<td class="num">{_e(ours)}{paper}</td>')
        body.append(f"<tr{' class=ref' if ref else ''}>{''.join(cells)}</tr>")
    return (
        f"<h3>Hard pairs at the paper's thresholds, next to the paper's Table 1{_maps_note(study)}</h3>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        '<p class="note">Ours: failure rate [95% interval] and relative deterioration w.r.t. the reference '
        "(* McNemar p &lt; 0.05). Brown: the paper's Table 1, whose numbers are its Hard category (its NRE row equals "
        "the Hard S2DNet row of its Table 2). The paper's row column names the row of the paper's Table 1 that each "
        "of ours corresponds to, by estimator class (the paper does not say which LO-RANSAC it ran: every LO-RANSAC "
        "implementation maps to its LO-RANSAC row; — : no counterpart in the paper). The paper ran on 3000 MegaDepth "
        "pairs with S2DNet maps, translations in metres; ours run on this configuration's pairs and maps, "
        "translations in scene units: compare the ordering and the gaps to the reference, not the numbers.</p>"
    )


def _table(df: pd.DataFrame, study: Study, stem: str, thr: dict | None) -> str:
    """A details table for people: display names, settings as text, category groups."""
    from nre.eval.tables import for_people, table1_display, to_html

    if df.empty:
        return '<p class="note">empty: nothing of this kind in this run.</p>'
    if stem.startswith("table1") and thr:
        df = df.rename(columns={c: c.replace(" vs NRE %", " vs ref %") for c in df.columns})
        shown = for_people(table1_display(df, thr, study.reference, study))
    elif stem == "seeds":
        from nre.eval.tables import seed_display

        shown = for_people(seed_display(df, study))
    elif stem == "table3" and "stage" in df:
        df = df.assign(stage=[_timing_stage(s, study) for s in df["stage"]])
        shown = for_people(df)
    else:
        if "category" in df:
            df = df.assign(category=df["category"].astype(str))
        shown = for_people(df, study)
    group = "category" if len(shown.columns) and shown.columns[0] == "category" else None
    if stem == "seeds":
        group = "estimator"
    return to_html(shown, group=group)


def _timing_stage(s, study: Study) -> str:
    s = str(s)
    return f"estimator {study.label(s[len('estimator ') :])}" if s.startswith("estimator ") else s


def build(eval_dir, pairs_csv, title: str, out, info=None) -> None:
    """The self-contained HTML report ``out`` of evaluation folder ``eval_dir`` (summary, details, figures, pair
    counts). ``info``: the study information (``Plan.info``), default the evaluation's ``study.json``."""
    from nre.data.pairs import read_pair_table

    ev = Path(eval_dir)
    if not ev.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such evaluation folder", str(ev))
    study, recall = _study(ev, info)
    thr_file = ev / "thresholds.json"
    thr = json.loads(thr_file.read_text()) if thr_file.exists() else None
    pairs = read_pair_table(pairs_csv, ("pair_id", "split", "category"))
    test = pairs[pairs["split"] == "test"]
    per_cat = ", ".join(
        f"{c} {n}" for c, n in sorted(test.groupby("category").size().items(), key=lambda x: category_rank(x[0]))
    )
    n_tun = int((pairs["split"] == "tuning").sum())
    t1 = ", ".join(study.table1_features) or NONE
    parts = [f"<h1>NRE benchmark: {_e(title)}</h1>"]
    parts.append(
        f'<p class="lead">{len(test)} test pairs ({_e(per_cat)}), {n_tun} tuning pairs. Table 1 maps: {_e(t1)}; '
        f"reference: {_e(study.label(study.reference) if study.reference else NONE)}. A failure rate is the "
        "fraction of pairs whose error is above a threshold (lower is better); a failed estimate counts as an "
        "infinite error, never as a dropped pair.</p>"
    )
    toc = [("summary", "Summary"), ("table1", "Table 1"), ("details", "Details"), ("figures", "Figures"),
           ("pairs", "Pairs")]  # fmt: skip
    parts.append("<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in toc) + "</nav>")
    # 1. summary
    parts.append('<h2 id="summary">Summary</h2>')
    parts.append(_headline(ev, study, recall))
    if thr:
        parts.append(_paper(ev, study, thr))
    # 2. Table 1, every backend and protocol
    parts.append('<h2 id="table1">Table 1: estimators on the same maps</h2>')
    parts.append(
        '<p class="note">Per category, each estimator at its selected setting and final stage vs the reference on the '
        "same maps, test split. Cell: failure rate [bootstrap 95% interval], relative deterioration w.r.t. the "
        "reference (ref. 0: the reference's rate is 0) and the exact McNemar p-value on the per-pair failures. Paper "
        "protocol: the setting that is best on the test pairs (what the paper did); fair protocol: the setting best "
        "on the tuning split, applied once to the test pairs.</p>"
    )
    for f in sorted(ev.glob("table1_*.csv"), key=lambda p: (p.stem.count("_") > 1, "fair" in p.stem, p.stem)):
        proto = "paper protocol" if "paper" in f.stem else "fair protocol"
        backend = f.stem.split("_", 2)[2] if f.stem.count("_") > 1 else (study.table1_features or [""])[0]
        parts.append(f"<h3>{_e(proto)}, {_e(backend)} maps</h3>" + _table(_read(f), study, f.stem, thr))
    # 3. details
    parts.append('<h2 id="details">Details</h2>')
    for name, stem, what in DETAILS:
        f = ev / f"{stem}.csv"
        if not f.exists():
            continue
        df = _read(f)
        if stem == "seeds" and df.empty:
            continue
        parts.append(f"<h3>{_e(name)}</h3><p class='note'>{_e(what)}</p>" + _table(df, study, stem, thr))
        if stem == "selection" and (ev / "sweeps.png").exists():
            parts.append(
                "<p class='note'>Sweeps: the selection metric (lower is better) vs each swept hyperparameter, on the "
                "test pairs and the tuning split; dotted lines: the paper protocol's (red) and fair protocol's (green) "
                "choices.</p>" + _img(ev / "sweeps.png")
            )
    # 4. figures
    parts.append('<h2 id="figures">Figures</h2>')
    for name, stem in FIGURES:
        f = ev / f"{stem}.png"
        if f.exists():
            parts.append(f"<h3>{_e(name)}</h3>{_img(f)}")
    pics = sorted(ev.glob("fig4_maps_*.png"))
    if pics:
        parts.append("<h3>Fig. 4-style correspondence maps of sample test pairs</h3>" + "".join(_img(p) for p in pics))
    # 5. pairs
    parts.append('<h2 id="pairs">Pairs</h2>')
    counts = pairs.groupby(["split", "category"]).size().unstack(fill_value=0)
    counts = counts[sorted(counts.columns, key=category_rank)]
    counts.columns.name = None
    parts.append(counts.reset_index().to_html(index=False, border=0))
    hist = Path(pairs_csv).with_suffix(".hist.png")
    if hist.exists():
        parts.append(_img(hist))
    skipped = Path(pairs_csv).with_suffix(".skipped.csv")
    if skipped.exists() and skipped.stat().st_size:
        sk = pd.read_csv(skipped, dtype=str)
        if len(sk):
            per = _e(", ".join(f"{s}: {n}" for s, n in sk.groupby("scene").size().items()))
            parts.append(f"<p>{len(sk)} candidate pairs or scenes skipped (reasons in {skipped.name}; {per}).</p>")
    summ = Path(pairs_csv).with_suffix(".summary.json")
    if summ.exists():
        text = _e(json.dumps(json.loads(summ.read_text()), indent=1))
        parts.append(f"<details><summary>pair summary</summary><pre>{text}</pre></details>")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(p for p in parts if p)}</body></html>"
    )
    log.info("wrote %s", out)
