"""A self-contained HTML report (tables inline, figures embedded) from an evaluation folder."""

from __future__ import annotations

import base64
import errno
import html
import json
import logging
from pathlib import Path

import pandas as pd

log = logging.getLogger("nre.report")

SECTIONS = [
    ("Table 1: estimators on the same maps (paper protocol: best setting on test)", "table1_paper"),
    ("Table 1, fair protocol (setting chosen on the tuning split)", "table1_fair"),
    ("Table 2: coarse-to-fine NRE per feature backend", "table2"),
    ("Table 3: time and memory per stage and per estimator (jobs running alone)", "table3"),
    ("Median errors, AUC and run time", "summary"),
    ("Hyperparameter selection (both protocols)", "selection"),
    ("Errors against the SfM ground truth vs the renderer's truth", "truth_comparison"),
    ("Failure reasons", "failure_reasons"),
    ("NRE cost at truth vs estimate: optimiser vs objective failures among wrong estimates", "cost_summary"),
    ("Inlier ratio of the argmax matches (oracle radius) per category", "inlier_ratios"),
]
FIGURES = [
    ("Fig. 5: coarse-to-fine ablation on hard pairs", "fig5_ablation_hard"),
    ("All estimators, hard", "fig5_estimators_hard"),
    ("All estimators, medium", "fig5_estimators_medium"),
    ("All estimators, easy", "fig5_estimators_easy"),
    ("Hyperparameter sweeps", "sweeps"),
    ("Inlier ratio of the argmax matches per pair", "inlier_ratios"),
]


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%">'


def build(eval_dir, pairs_csv, title: str, out) -> None:
    """The self-contained HTML report ``out`` of evaluation folder ``eval_dir`` (tables, figures, pair counts)."""
    from nre.data.pairs import read_pair_table

    ev = Path(eval_dir)
    if not ev.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such evaluation folder", str(ev))
    parts = [f"<h1>NRE benchmark: {html.escape(title)}</h1>"]
    pairs = read_pair_table(pairs_csv, ("pair_id", "split", "category"))
    counts = pairs.groupby(["split", "category"]).size().unstack(fill_value=0)
    parts.append("<h2>Pairs</h2>" + counts.to_html())
    skipped = Path(pairs_csv).with_suffix(".skipped.csv")
    if skipped.exists() and skipped.stat().st_size:
        sk = pd.read_csv(skipped, dtype=str)
        if len(sk):
            per = html.escape(", ".join(f"{s}: {n}" for s, n in sk.groupby("scene").size().items()))
            parts.append(f"<p>{len(sk)} candidate pairs or scenes skipped (reasons in {skipped.name}; {per}).</p>")
    summ = Path(pairs_csv).with_suffix(".summary.json")
    if summ.exists():
        text = html.escape(json.dumps(json.loads(summ.read_text()), indent=1))
        parts.append(f"<details><summary>pair summary</summary><pre>{text}</pre></details>")
    parts.append(
        "<p>Failure rates are the fraction of pairs whose error is above each threshold (lower is better); "
        "a failed estimate counts as an infinite error.</p>"
    )
    thr_file = ev / "thresholds.json"
    for name, stem in SECTIONS:
        f = ev / f"{stem}.csv"
        if f.exists():
            try:
                df = pd.read_csv(f)
            except pd.errors.EmptyDataError:
                df = pd.DataFrame()
            if stem.startswith("table1") and thr_file.exists() and len(df):
                from nre.eval.tables import table1_display

                df = table1_display(df, json.loads(thr_file.read_text()))
            parts.append(
                f"<h2>{html.escape(name)}</h2>"
                + df.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a")
            )
    for name, stem in FIGURES:
        f = ev / f"{stem}.png"
        if f.exists():
            parts.append(f"<h2>{html.escape(name)}</h2>{_img(f)}")
    pics = sorted(ev.glob("fig4_maps_*.png"))
    if pics:
        parts.append("<h2>Fig. 4-style correspondence maps of sample test pairs</h2>" + "".join(_img(p) for p in pics))
    style = (
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"{style}</head><body>{''.join(parts)}</body></html>"
    )
    log.info("wrote %s", out)
