"""Failure rates, selection protocols, Table 1 statistics and the regression check on hand-made rows."""

import json

import numpy as np
import pandas as pd
import pytest

from nre import evaluate as E
from nre.regress import compare

THR = E.DEFAULT_THRESHOLDS


def make_rows(rng, estimators, n=30, splits=("test", "tuning")):
    rows = []
    for split in splits:
        for i in range(n):
            cat = E.CATEGORIES[i % 3]
            for est, params_err in estimators.items():
                for params, (rot, ok) in params_err.items():
                    r = rot(rng, cat) if callable(rot) else rot
                    rows.append(
                        {
                            "pair_id": f"{split}{i}",
                            "scene": "s",
                            "category": cat,
                            "split": split,
                            "features": "dsift",
                            "estimator": est,
                            "params": json.dumps(params, sort_keys=True),
                            "stage": "",
                            "success": ok,
                            "failure_reason": "" if ok else "boom",
                            "rotation_error_deg": r,
                            "translation_error": r / 10,
                            "center_error": r / 10,
                            "runtime_s": 0.1,
                            "inliers": 10,
                            "low_support": False,
                            "diagnostics": "{}",
                        }
                    )
    return pd.DataFrame(rows)


def test_failure_rates_count_failures_as_infinite():
    df = E.prepare(make_rows(np.random.default_rng(0), {"a": {(): (1.0, True)}, "b": {(): (0.1, False)}}))
    rates = E.failure_rates(df, THR)
    r = rates[(rates.split == "test") & (rates.category == "all")].set_index("estimator")
    assert r.loc["a", "R>2deg"] == 0.0 and r.loc["a", "t>0.25"] == 0.0
    assert r.loc["b", "R>10deg"] == 1.0  # a failure with a tiny recorded error is still a failure
    assert r.loc["a", "n"] == 30


def test_selection_protocols_differ_when_tuning_disagrees():
    rng = np.random.default_rng(0)
    base = make_rows(rng, {"x": {("t", 1): (1.0, True), ("t", 2): (20.0, True)}})
    base["params"] = base["params"].map(lambda p: json.dumps({"threshold": json.loads(p)[1]}))
    # on tuning, threshold 2 is the good one
    tun = base["split"] == "tuning"
    base.loc[tun & base["params"].str.contains("1"), "rotation_error_deg"] = 20.0
    base.loc[tun & base["params"].str.contains("2"), "rotation_error_deg"] = 1.0
    df = E.prepare(base)
    sel = E.select(E.failure_rates(df, THR)).set_index("estimator")
    assert json.loads(sel.loc["x", "paper"]) == {"threshold": 1}
    assert json.loads(sel.loc["x", "fair"]) == {"threshold": 2}


def test_table1_relative_deterioration_ci_and_mcnemar():
    rng = np.random.default_rng(1)
    df = E.prepare(
        make_rows(
            rng,
            {
                "nre_single": {(): (lambda rng, c: 1.0 if c != "hard" else 20.0, True)},
                "worse": {(): (lambda rng, c: 20.0, True)},
            },
            n=60,
        )
    )
    sel = E.select(E.failure_rates(df, THR))
    t = E.table1(df, sel, THR, "dsift", n_boot=200).set_index(["category", "estimator"])
    assert t.loc[("easy", "worse"), "R>10deg"] == 1.0
    assert t.loc[("easy", "worse"), "R>10deg vs NRE %"] == "n/a"  # NRE's rate is 0
    assert t.loc[("hard", "worse"), "R>10deg vs NRE %"] == "+0"
    assert t.loc[("easy", "worse"), "R>10deg p"] < 1e-4  # 20 discordant pairs, all one way
    assert t.loc[("hard", "worse"), "R>10deg p"] == 1.0
    lo, hi = json.loads(t.loc[("all", "worse"), "R>10deg ci"])
    assert lo <= 1.0 <= hi + 1e-12


def test_bootstrap_ci_is_seeded_and_covers():
    fail = np.r_[np.ones(30), np.zeros(70)].astype(bool)
    a = E.bootstrap_ci(fail, 500, 3)
    assert a == E.bootstrap_ci(fail, 500, 3)
    assert a[0] < 0.3 < a[1]


def test_auc():
    assert E.auc(np.zeros(10), 5.0) == pytest.approx(1.0, abs=0.01)
    assert E.auc(np.full(10, np.inf), 5.0) == 0.0


def test_regression_compare_catches_a_degraded_estimator():
    rng = np.random.default_rng(2)
    ref = E.failure_rates(E.prepare(make_rows(rng, {"a": {(): (1.0, True)}})), THR)
    cur = ref.copy()
    assert compare(ref, cur).empty
    # one pair flipping per cell is within tolerance, a degraded estimator is not
    cur.loc[cur.index[0], "R>2deg"] += 1.0 / cur.loc[cur.index[0], "n"]
    assert compare(ref, cur).empty
    bad = E.failure_rates(E.prepare(make_rows(rng, {"a": {(): (3.0, True)}})), THR)
    moved = compare(ref, bad)
    assert not moved.empty and set(moved["metric"]) >= {"R>2deg"}
    assert not compare(ref, cur[cur["category"] != "hard"]).empty  # a missing variant is a regression


def test_markdown_and_latex_writers(tmp_path):
    df = pd.DataFrame({"a_b": [1.0, np.nan], "c": ["x", "y%"]})
    files = E.write_table(df, tmp_path / "t")
    assert len(files) == 3
    assert "n/a" in (tmp_path / "t.md").read_text()
    assert r"a\_b" in (tmp_path / "t.tex").read_text() and r"y\%" in (tmp_path / "t.tex").read_text()
