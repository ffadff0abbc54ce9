"""The study information in the evaluation (display names, units, order, final stages, Table 2 by class, seeds), the
new metrics against hand-computed values (recall at combined thresholds, share with an estimate, the headline
comparison, the spread over seeds), and the HTML report rendered from a small evaluation of synthetic rows: no
nan / None cells, no raw JSON settings, categories easy, medium, hard, all, the reference first, the paper's
Table 1 beside ours."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, THR, make_rows

from nre.eval import metrics as E
from nre.eval import tables as T
from nre.eval.outputs import evaluate_rows, select_settings, write_outputs
from nre.eval.report import build
from nre.eval.study import CATEGORY_ORDER, Study, setting_text, split_repeat


def _info(**over):
    """A study as ``Plan.info`` gives it, with keys that are not the class names (nothing may rely on them)."""
    est = {
        "nre": {"label": "NRE", "class": "nre_single", "units": {}, "stages": [], "final_stage": "", "table2": False},
        "c2f": {
            "label": "NRE coarse-to-fine",
            "class": "nre_c2f",
            "units": {},
            "stages": ["p3p", "coarse_gnc", "fine_gnc"],
            "final_stage": "fine_gnc",
            "table2": True,
        },
        "ransac": {
            "label": "LO-RANSAC (test)",
            "class": "lo_ransac_poselib",
            "units": {"threshold": "px"},
            "stages": [],
            "final_stage": "",
            "table2": False,
            "seeds": 3,
        },
        "fpr": {
            "label": "FPR (Eq. 12)",
            "class": "fpr",
            "units": {"scale": "descriptor distance"},
            "stages": [],
            "final_stage": "",
            "table2": False,
        },
    }
    for e in est.values():
        e.setdefault("seeds", 1)
    info = {
        "reference": "nre",
        "table1_features": ["dsift", "other"],
        "features": ["dsift", "other"],
        "order": ["ransac", "c2f", "nre", "fpr"],  # the config's order: the reference still comes first
        "estimators": est,
    }
    info.update(over)
    return info


def _rows(n=12):
    """Rows of the study above: test and tuning pairs, both Table 1 backends, repeats of ransac."""
    rng = np.random.default_rng(0)
    c2f = {
        ("stage", "p3p"): (lambda r, c: r.exponential(8), True),
        ("stage", "coarse_gnc"): (lambda r, c: r.exponential(4), True),
        ("stage", "fine_gnc"): (lambda r, c: r.exponential(2), True),
    }
    spec = {
        "nre": {(): (lambda r, c: r.exponential(2), True)},
        "c2f": c2f,
        "ransac": {
            ("threshold", 4): (lambda r, c: r.exponential(3), True),
            ("threshold", 8): (lambda r, c: r.exponential(2.5), True),
        },
        "ransac@1": {("threshold", 4): (lambda r, c: r.exponential(3), True), ("threshold", 8): (4.0, True)},
        "ransac@2": {("threshold", 4): (lambda r, c: r.exponential(3), True), ("threshold", 8): (0.5, True)},
        "fpr": {
            (("loss", "cauchy"), ""): (lambda r, c: r.exponential(3), True),
        },
    }
    frames = [make_rows(rng, spec, n=n, features=f) for f in ("dsift", "other")]
    df = pd.concat(frames, ignore_index=True)
    # fpr's setting has two hyperparameters: loss and scale
    m = df["estimator"] == "fpr"
    df.loc[m, "params"] = json.dumps({"loss": "cauchy", "scale": 0.4}, sort_keys=True)
    # a third backend where only the Table 2 estimator runs
    third = make_rows(rng, {"c2f": c2f}, n=n, features="learned")
    df = pd.concat([df, third], ignore_index=True)
    # the NRE estimators carry their cost at the estimate and at the truth
    nre_like = df["estimator"].isin(["nre", "c2f"])
    df.loc[nre_like, "diagnostics"] = [
        json.dumps({"cost": 5.0, "cost_at_truth": 4.0 + i % 3}) for i in range(nre_like.sum())
    ]
    df.loc[df.index[3], ["success", "failure_reason"]] = [False, "EstimatorError: boom"]
    return df


def _evaluation(tmp_path, info=None, n=12):
    df = _rows(n)
    paths = []
    for k, (_e, g) in enumerate(df.groupby("estimator", sort=False)):
        paths.append(str(tmp_path / f"rows{k}.parquet"))
        g.to_parquet(paths[-1], index=False)
    ids = df[["pair_id", "split", "category"]].drop_duplicates()
    pairs = ids.assign(scene="s", source="a", target="b")
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    ev = tmp_path / "eval"
    evaluate_rows(rows=paths, out_dir=ev, thresholds=THR, info=info)
    select_settings(eval_dir=ev, info=info)
    write_outputs(eval_dir=ev, bootstrap=50, info=info)
    return ev, tmp_path / "pairs.csv"


class _Cells(HTMLParser):
    """Every table of an HTML page: its header cells and its rows of cell texts (group rows as one cell)."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._row = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"head": [], "rows": []})
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1]["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _tables(page: str) -> list[dict]:
    p = _Cells()
    p.feed(page)
    return p.tables


def _assert_clean(cells: list[str], where: str):
    for c in cells:
        assert not re.search(r"\bnan\b|\bNone\b|nan%", c, re.IGNORECASE), (where, c)
        assert not re.search(r'\{\s*"|"\s*:\s*', c), (where, "raw JSON setting", c)


def _assert_category_order(cells: list[str], where: str):
    cats = [c for c in cells if c in CATEGORY_ORDER]
    firsts = list(dict.fromkeys(cats))
    assert firsts == sorted(firsts, key=CATEGORY_ORDER.index), (where, firsts)


# ----------------------------------------------------------------------------------------------- the study
def test_settings_as_people_write_them():
    assert setting_text('{"threshold": 8}', {"threshold": "px"}) == "threshold 8 px"
    assert setting_text('{"threshold": 8.0}', {"threshold": "px"}) == "threshold 8 px"
    units = {"scale": "descriptor distance"}
    assert setting_text('{"loss": "cauchy", "scale": 0.4}', units) == "loss cauchy, scale 0.4 (descriptor distance)"
    assert setting_text("{}") == "—" and setting_text(E.FAIR_NA) == E.FAIR_NA
    assert setting_text({"prosac": True, "min_inliers": 6}) == "min inliers 6, prosac on"
    assert split_repeat("ransac@2") == ("ransac", 2) and split_repeat("ransac") == ("ransac", 0)


def test_split_repeat_follows_the_plan():
    from nre.workflow.plan import Plan

    for key in ("magsac_pp", "magsac_pp@1", "x@12"):
        assert split_repeat(key) == Plan.split_job_key(key)


def test_plan_info_gives_the_order_and_backends():
    import yaml

    from nre.workflow.config import with_defaults
    from nre.workflow.plan import Plan

    cfg = with_defaults(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    info = json.loads(Plan(cfg).info_json())
    assert info["order"] == list(cfg["estimators"]) and info["features"] == list(cfg["features"])
    st = Study.load(info)
    assert st.ordered(["fpr", "oracle", "nre_c2f", "nre_single"]) == ["nre_single", "nre_c2f", "fpr", "oracle"]
    assert st.table2_keys() == ["nre_c2f"] and st.final_stage("nre_c2f") == "fine_gnc"
    assert (
        st.label("re_gauss") == "RE, Gaussian loss (Eq. 11)" and st.setting("re_gauss", '{"sigma": 5}') == "sigma 5 px"
    )


def test_fallback_study_from_the_rows():
    df = E.prepare(_rows(6))
    st = Study.fallback(df, reference="nre")
    assert st.reference == "nre" and st.ordered(["c2f", "nre"]) == ["nre", "c2f"]
    assert st.table1_features == ["dsift", "other"]  # every estimator ran there; only c2f on "learned"
    assert st.final_stage("c2f") == "fine_gnc" and st.final_stage("ransac") == ""  # the rows' declared order
    assert st.table2_keys() == ["c2f"]  # the only one with rows off the Table 1 backend
    assert st.estimators["ransac"]["seeds"] == 3 and "ransac@1" not in st.estimators
    assert E.final_stages(df)["c2f"] == "fine_gnc"


# ----------------------------------------------------------------------------------------------- metrics
def _hand_rows():
    rows = make_rows(np.random.default_rng(0), {"a": {(): (1.0, True)}}, n=4, splits=("test",))
    rows["rotation_error_deg"] = [1.0, 3.0, 6.0, 2.0]
    rows["translation_error"] = [0.1, 0.3, 0.6, 0.25]
    rows.loc[2, "success"] = True
    rows["success"] = [True, True, True, False]  # the last pair's small recorded errors do not count
    return E.prepare(rows)


def test_recall_and_success_by_hand():
    df = _hand_rows()
    assert E.recall(df, 0.25, 2) == pytest.approx(1 / 4)  # (0.1, 1 deg); a failure is never recalled
    assert E.recall(df, 0.5, 5) == pytest.approx(2 / 4)
    assert E.recall(df, 5, 10) == pytest.approx(3 / 4)
    ok = df.iloc[:2].assign(translation_error=[0.25, 0.26], rotation_error_deg=[2.0, 1.0])
    assert E.recall(ok, 0.25, 2) == 0.5  # at most the thresholds: the boundary counts
    assert E.success(df) == 0.75
    sel = E.select(E.failure_rates(df, THR))
    s = T.summary_stats(df, sel, THR, recall_thresholds=[[0.25, 2], [0.5, 5], [5, 10]]).set_index("category")
    assert list(s.index) == ["easy", "medium", "hard", "all"]
    assert s.loc["all", "recall@0.25/2deg"] == pytest.approx(0.25)
    assert s.loc["all", "recall@0.5/5deg"] == pytest.approx(0.5)
    assert s.loc["all", "recall@5/10deg"] == pytest.approx(0.75)
    assert s.loc["all", "success_rate"] == 0.75 and s.loc["all", "failures"] == 1
    assert s.loc["all", "median_rot_deg"] == pytest.approx(4.5)  # 1, 3, 6, inf
    assert s.loc["all", "median_trans"] == pytest.approx(0.45)


def test_headline_by_hand():
    spec = {
        "nre_single": {(): (lambda rng, c: 1.0 if c != "hard" else 20.0, True)},
        "worse": {(): (20.0, True)},
    }
    df = E.prepare(make_rows(np.random.default_rng(1), spec, n=60))
    sel = E.select(E.failure_rates(df, THR))
    h = T.headline(df, sel, "dsift", (0.5, 5), n_boot=100).set_index(["category", "estimator"])
    assert h.loc[("easy", "nre_single"), "rate"] == 0 and np.isnan(h.loc[("easy", "nre_single"), "p"])
    assert h.loc[("easy", "worse"), "rate"] == 1 and h.loc[("easy", "worse"), "diff"] == 1
    assert h.loc[("easy", "worse"), "p"] == pytest.approx(2 * 0.5**20)  # 20 discordant pairs, one way
    assert h.loc[("hard", "worse"), "diff"] == 0 and h.loc[("hard", "worse"), "p"] == 1
    assert h.loc[("all", "worse"), "diff"] == pytest.approx(2 / 3)
    assert h.loc[("all", "nre_single"), "lo"] <= 1 / 3 <= h.loc[("all", "nre_single"), "hi"]
    assert list(dict.fromkeys(h.index.get_level_values(0))) == list(CATEGORY_ORDER)


def test_seed_spread_by_hand_at_the_base_setting():
    """x is best at threshold 2 (the repeats would be best at 1): mean / std / range over the three seeds at 2."""
    spec = {
        "x": {("threshold", 1): (30.0, True), ("threshold", 2): (1.0, True)},
        "x@1": {("threshold", 1): (0.0, True), ("threshold", 2): (3.0, True)},
        "x@2": {("threshold", 1): (0.0, True), ("threshold", 2): (20.0, True)},
        "y": {(): (1.0, True)},
    }
    df = E.prepare(make_rows(np.random.default_rng(0), spec, n=30))
    sel = E.select(E.failure_rates(df, THR))
    assert set(sel["estimator"]) == {"x", "y"}  # repeats take no part in the selection
    assert json.loads(sel.set_index("estimator").loc["x", "paper"]) == {"threshold": 2}
    sp = T.seed_spread(df, sel, THR, [[0.25, 2]]).set_index(["estimator", "category"])
    r = sp.loc[("x", "all")]
    assert r["seeds"] == 3 and r["n"] == 30
    assert r["R>2deg mean"] == pytest.approx(2 / 3) and r["R>2deg std"] == pytest.approx(np.sqrt(1 / 3))
    assert (r["R>2deg min"], r["R>2deg max"]) == (0, 1)
    assert r["R>5deg mean"] == pytest.approx(1 / 3)
    assert r["recall@0.25/2deg mean"] == pytest.approx(1 / 3)  # only seed 0: (0.1, 1 deg)
    assert r["AUC R@2 mean"] == pytest.approx(0.5 / 3)  # (2 - 1) / 2 for seed 0, 0 for the others
    assert list(sp.loc["x"].index) == list(CATEGORY_ORDER) and "y" not in sp.index.get_level_values(0)
    assert not r["identical"]
    shown = T.seed_display(sp.reset_index()).set_index("metric")
    assert shown.loc["R > 2 deg", "all"] == "0.667 ± 0.577 [0.000, 1.000]" and list(shown.columns)[-4:] == list(
        CATEGORY_ORDER
    )
    assert shown.loc["R > 2 deg", "identical runs"] == "no" and "recall (0.25, 2 deg)" in shown.index
    # repeats stay out of Table 1 and the summary
    assert "x@1" not in set(T.table1(df, sel, THR, "dsift", n_boot=0)["estimator"])
    assert "x@1" not in set(T.summary_stats(df, sel, THR)["estimator"])


def test_cost_diagnostics_for_any_estimator_that_carries_costs():
    df = make_rows(np.random.default_rng(0), {"mine": {(): (20.0, True)}, "other": {(): (20.0, True)}}, n=6)
    df.loc[df.estimator == "mine", "diagnostics"] = json.dumps({"cost": 2.0, "cost_at_truth": 1.0})
    df.loc[df.estimator == "other", "diagnostics"] = json.dumps({"cost": 2.0})  # no cost at truth: left out
    cost = E.cost_diagnostics(E.prepare(df))
    assert set(cost["estimator"]) == {"mine"} and cost["optimiser_failure"].all()


# ----------------------------------------------------------------------------------------------- outputs
def test_tables_follow_the_study(tmp_path):
    info = _info()
    ev, _ = _evaluation(tmp_path, info)
    sel = E.read_rates(ev / "selection.csv")
    assert "ransac@1" not in set(sel["estimator"])
    assert (sel.loc[sel["estimator"] == "c2f", "stage"] == "fine_gnc").all() and len(sel) == 4 + 4 + 1
    # Table 1 per Table 1 backend, reference first, then the config's order
    for stem in ("table1_paper", "table1_fair", "table1_paper_other", "table1_fair_other"):
        assert (ev / f"{stem}.csv").exists() and (ev / f"{stem}.html").exists(), stem
    t1 = pd.read_csv(ev / "table1_paper.csv")
    assert list(dict.fromkeys(t1["category"])) == list(CATEGORY_ORDER)
    assert list(dict.fromkeys(t1["estimator"])) == ["nre", "ransac", "c2f", "fpr"]
    md = (ev / "table1_paper.md").read_text()
    assert "LO-RANSAC (test)" in md and "threshold 8 px" in md and '{"' not in md and "nan" not in md.lower()
    # Table 2: the Table 2 class on every backend, at its final stage
    t2 = pd.read_csv(ev / "table2.csv")
    assert set(t2["estimator"]) == {"c2f"} and list(dict.fromkeys(t2["features"])) == ["dsift", "other", "learned"]
    s = pd.read_csv(ev / "summary.csv")
    assert {"success_rate", "recall@0.25/2deg", "recall@0.5/5deg", "recall@5/10deg"} <= set(s.columns)
    assert not s["estimator"].str.contains("@").any()
    seeds = pd.read_csv(ev / "seeds.csv")
    assert set(seeds["estimator"]) == {"ransac"} and (seeds["seeds"] == 3).all()
    assert set(pd.read_csv(ev / "cost_summary.csv")["estimator"]) == {"nre", "c2f"}
    assert json.loads((ev / "study.json").read_text())["reference"] == "nre"
    for md_file in ev.glob("*.md"):
        text = md_file.read_text()
        assert not re.search(r"\bnan\b|\bNone\b", text), md_file.name
        assert not re.search(r'\{"|"\s*:', text), md_file.name  # settings as text, not JSON
        cats = [c.strip() for c in re.findall(r"^\| (easy|medium|hard|all) \|", text, re.MULTILINE)]
        assert list(dict.fromkeys(cats)) == [c for c in CATEGORY_ORDER if c in cats], md_file.name
    from nre.eval.timing import table3_display

    t3 = pd.DataFrame({"stage": ["coarse maps", "estimator ransac"], "median wall (s)": [0.1, 0.2]})
    assert list(table3_display(t3, info)["stage"]) == ["coarse maps", "estimator LO-RANSAC (test)"]


def test_report_reads_like_the_paper(tmp_path):
    ev, pairs = _evaluation(tmp_path, _info())
    out = tmp_path / "report.html"
    build(ev, pairs, "test run", out)  # the study from the evaluation's study.json
    page = out.read_text()
    tables = _tables(page)
    assert len(tables) >= 12
    for i, t in enumerate(tables):
        cells = [c for row in t["rows"] for c in row]
        _assert_clean(cells, f"table {i}: {t['rows'][:1]}")
        _assert_category_order(cells, f"table {i}: {t['rows'][:2]}")
    # the summary opens the report: per category (columns in order), the reference first
    summary = page.index('id="summary"')
    assert summary < page.index('id="table1"') < page.index('id="details"') < page.index('id="figures"')
    head = tables[0]
    header = head["rows"][0]
    assert header[2:] == ["easy (n=4)", "medium (n=4)", "hard (n=4)", "all (n=12)"]
    assert head["rows"][1][0] == "NRE (reference)"
    assert [r[0] for r in head["rows"][1:]] == [
        "NRE (reference)",
        "LO-RANSAC (test)",
        "NRE coarse-to-fine",
        "FPR (Eq. 12)",
    ]
    assert "Δ" in head["rows"][2][2] and "p=" in head["rows"][2][2]
    # the paper's Table 1 beside ours, mapped by class
    paper = tables[1]
    rows = {r[0]: r for r in paper["rows"][1:]}
    assert rows["LO-RANSAC (test)"][2].startswith("RE LO-RANSAC") and "paper 0.54 (+23%)" in rows["LO-RANSAC (test)"][3]
    assert rows["NRE coarse-to-fine"][2] == "—" and "paper" not in rows["NRE coarse-to-fine"][3]
    assert "paper 0.44 (+0%)" in rows["NRE"][3] and "MegaDepth" in page and "S2DNet" in page
    # settings as text, units included; the seeds table; the second Table 1 backend
    assert "threshold 8 px" in page and "loss cauchy, scale 0.4 (descriptor distance)" in page
    assert "Spread over seeds" in page and "±" in page and "other maps" in page
    assert page.count("data:image/png;base64") >= 5


def test_report_without_info_falls_back_to_the_rows(tmp_path):
    ev, pairs = _evaluation(tmp_path, None, n=6)
    build(ev, pairs, "rows only", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    for i, t in enumerate(_tables(page)):
        cells = [c for row in t["rows"] for c in row]
        _assert_clean(cells, f"table {i}")
        _assert_category_order(cells, f"table {i}")
    sel = E.read_rates(ev / "selection.csv")
    assert (sel.loc[sel["estimator"] == "c2f", "stage"] == "fine_gnc").all()  # the rows' stage order


def test_cli_tables_and_report_take_the_info(tmp_path):
    from nre.cli import main

    ev, pairs = _evaluation(tmp_path, None, n=6)
    (tmp_path / "info.json").write_text(json.dumps(_info()))
    args = ["tables", "--eval-dir", str(ev), "--info", str(tmp_path / "info.json"), "--bootstrap", "20"]
    assert main([*args, "--recall-thresholds", "[[1, 10]]"]) == 0
    assert "recall@1/10deg" in pd.read_csv(ev / "summary.csv").columns
    assert main(["report", "--eval-dir", str(ev), "--pairs", str(pairs), "--out", str(tmp_path / "r.html"),
                 "--info", json.dumps(_info())]) == 0  # fmt: skip
    assert "LO-RANSAC (test)" in (tmp_path / "r.html").read_text()
    assert main([*args, "--recall-thresholds", "[1, 10]"]) == 2  # one line, exit 2


def test_no_estimator_names_in_the_generic_evaluation():
    """The evaluation takes final stages, Table 2 membership and costs from the study and the rows, never from the
    names of the paper's estimators."""
    for f in ("metrics.py", "tables.py", "outputs.py", "figures.py", "report.py", "study.py"):
        text = (REPO / "nre" / "eval" / f).read_text()
        for name in ("nre_c2f", "nre_single", "re_gauss", '"oracle"', '== "fine_gnc"'):
            assert name not in text, (f, name)


def test_paper_table1_transcription():
    p = T.paper_table1()
    assert len(p) == 6 and p.set_index("estimator").loc["NRE", "R>10deg"] == 0.34
    classes = {c for cs in p["classes"] for c in cs.split(";")}
    from nre.estimators import registry

    for c in classes:
        assert registry.get(c) is not None, c
    assert Path(T.PAPER_TABLE1).is_file()
