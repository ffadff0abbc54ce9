"""Tables 1-2 and the summary on hand-made rows with known answers; evaluate -> select -> tables -> report
(``nre.eval.outputs``, ``nre.eval.report``) end to end on rows written in the documented parquet schema."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import THR, make_rows

from nre.eval import metrics as E
from nre.eval import tables as T
from nre.eval.outputs import evaluate_rows, select_settings, write_outputs
from nre.eval.report import build


def _nre_vs_worse(n=60):
    return E.prepare(
        make_rows(
            np.random.default_rng(1),
            {
                "nre_single": {(): (lambda rng, c: 1.0 if c != "hard" else 20.0, True)},
                "worse": {(): (lambda rng, c: 20.0, True)},
            },
            n=n,
        )
    )


def test_table1_relative_deterioration_ci_and_mcnemar():
    df = _nre_vs_worse()
    sel = E.select(E.failure_rates(df, THR))
    t = T.table1(df, sel, THR, "dsift", n_boot=200).set_index(["category", "estimator"])
    assert t.loc[("easy", "worse"), "R>10deg"] == 1.0
    assert t.loc[("easy", "worse"), "R>10deg vs ref %"] == "n/a"  # NRE's rate is 0
    assert t.loc[("hard", "worse"), "R>10deg vs ref %"] == "+0"
    assert t.loc[("all", "worse"), "R>2deg vs ref %"] == "+200"  # 1/3 -> 1
    assert t.loc[("easy", "worse"), "R>10deg p"] == pytest.approx(2 * 0.5**20)  # 20 discordant pairs, one way
    assert t.loc[("hard", "worse"), "R>10deg p"] == 1.0
    assert t.loc[("all", "worse"), "R>10deg lo"] <= 1.0 <= t.loc[("all", "worse"), "R>10deg hi"]
    r = t.loc[("all", "nre_single")]
    assert r["R>10deg lo"] < r["R>10deg"] < r["R>10deg hi"]
    disp = T.table1_display(t.reset_index(), THR).set_index(["category", "estimator"])
    assert disp.loc[("all", "worse"), "R>2deg"].startswith("1.000 [1.00, 1.00] +200% (p")
    assert "%" not in disp.loc[("all", "nre_single"), "R>2deg"]


def test_table1_uses_only_the_table1_backend_and_final_stage():
    df = _nre_vs_worse(n=9)
    other = df.assign(features="other", rotation_error_deg=0.0, translation_error=0.0)
    stage = df[df.estimator == "worse"].assign(stage="p3p", estimator="worse")
    df2 = pd.concat([df, other, stage], ignore_index=True)
    df2.loc[df2.stage == "p3p", "rotation_error_deg"] = 0.0
    sel = E.select(E.failure_rates(df2, THR))
    t = T.table1(df2, sel, THR, "dsift", n_boot=0).set_index(["category", "estimator"])
    assert t.loc[("all", "worse"), "R>10deg"] == 1.0 and t.loc[("all", "worse"), "n"] == 9


def test_table2_per_backend_fine_stage():
    rows = []
    for feat, err in (("dsift", 20.0), ("nre_compact", 1.0)):
        spec = {("stage", "p3p"): (30.0, True), ("stage", "fine_gnc"): (err, True)}
        rows.append(make_rows(np.random.default_rng(0), {"nre_c2f": spec}, n=6, features=feat))
    t = T.table2(E.prepare(pd.concat(rows)), THR, n_boot=50).set_index(["category", "features"])
    assert t.loc[("all", "dsift"), "R>10deg"] == 1.0 and t.loc[("all", "nre_compact"), "R>10deg"] == 0.0
    assert t.loc[("hard", "dsift"), "n"] == 2 and "R>10deg ci" in t.columns


def test_summary_medians_and_auc():
    df = E.prepare(
        make_rows(
            np.random.default_rng(0), {"a": {(): (lambda r, c: {"easy": 1, "medium": 3, "hard": 9}[c], True)}}, n=30
        )
    )
    sel = E.select(E.failure_rates(df, THR))
    s = T.summary_stats(df, sel, THR).set_index("category")
    assert s.loc["easy", "median_rot_deg"] == 1 and s.loc["all", "median_rot_deg"] == 3
    assert s.loc["easy", "AUC R@2"] == pytest.approx(0.5) and s.loc["hard", "AUC R@10"] == pytest.approx(0.1)


def test_markdown_latex_and_html_writers(tmp_path):
    df = pd.DataFrame({"a_b": [1.0, np.nan], "c": ["x", "y%|"], "d": [np.inf, 2.0], "e": [None, "z"]})
    files = T.write_table(df, tmp_path / "t")
    assert len(files) == 4
    md = (tmp_path / "t.md").read_text()
    assert "—" in md and "inf" in md and "y%\\|" in md
    assert "nan" not in md.lower() and "None" not in md  # an empty cell is a dash, never nan / None
    tex = (tmp_path / "t.tex").read_text()
    assert r"a\_b" in tex and r"y\%" in tex and "nan" not in tex.lower()
    page = (tmp_path / "t.html").read_text()  # what Snakemake's --report previews
    assert page.startswith("<!doctype html>") and "<table>" in page and "y%|" in page and "None" not in page
    assert pd.read_csv(tmp_path / "t.csv").shape == (2, 4)


def test_evaluate_select_tables_report(tmp_path):
    df = make_rows(
        np.random.default_rng(3),
        {
            "nre_single": {(): (lambda rng, c: rng.exponential(3), True)},
            "lo_ransac_poselib": {
                ("threshold", 4): (lambda rng, c: rng.exponential(6), True),
                ("threshold", 8): (lambda rng, c: rng.exponential(4), True),
            },
            "oracle": {("radius", 4): (0.5, True)},
        },
        n=12,
    )
    paths = []
    for k, (_est, g) in enumerate(df.groupby("estimator")):
        paths.append(str(tmp_path / f"rows{k}.parquet"))
        g.to_parquet(paths[-1], index=False)
    pd.DataFrame(
        {
            "pair_id": df["pair_id"].unique(),
            "scene": "s",
            "source": "a",
            "target": "b",
            "category": "easy",
            "split": "test",
        }
    ).to_csv(tmp_path / "pairs.csv", index=False)
    ev = tmp_path / "eval"
    evaluate_rows(rows=paths, out_dir=ev, thresholds=THR)
    assert json.loads((ev / "thresholds.json").read_text()) == THR
    select_settings(eval_dir=ev, metric="R>10deg")
    write_outputs(eval_dir=ev, bootstrap=50)
    for f in (
        "table1_paper.md",
        "table1_fair.tex",
        "table2.csv",
        "summary.csv",
        "sweeps.png",
        "sweeps.pdf",
        "fig5_ablation_hard.png",
        "fig5_estimators_hard.pdf",
        "failure_reasons.csv",
        "inlier_ratios.png",
    ):
        assert (ev / f).exists(), f
    sel = E.read_rates(ev / "selection.csv").set_index("estimator")
    assert sel.loc["lo_ransac_poselib", "metric"] == "R>10deg"
    t1 = pd.read_csv(ev / "table1_paper.csv").set_index(["category", "estimator"])
    chosen = sel.loc["lo_ransac_poselib", "paper"]
    d = E.prepare(df)
    want = (
        d[(d.split == "test") & (d.estimator == "lo_ransac_poselib") & (d.params == chosen)]["rotation_error_deg"] > 10
    ).mean()
    assert t1.loc[("all", "lo_ransac_poselib"), "R>10deg"] == pytest.approx(want)
    build(ev, tmp_path / "pairs.csv", "t", tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "Table 1" in html and "data:image/png;base64" in html and "lo_ransac_poselib" in html
