"""Failure rates, selection protocols, statistics, diagnostics and renderer-truth errors on hand-made result rows
in the documented schema (nre.estimators.rows.COLUMNS)."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import THR, make_rows

from nre.estimators.rows import COLUMNS
from nre.eval import metrics as E
from nre.geometry import R_to_quat_wxyz, so3_exp


def test_failure_rates_count_failures_as_infinite():
    df = E.prepare(make_rows(np.random.default_rng(0), {"a": {(): (1.0, True)}, "b": {(): (0.1, False)}}))
    rates = E.failure_rates(df, THR)
    r = rates[(rates.split == "test") & (rates.category == "all")].set_index("estimator")
    assert r.loc["a", "R>2deg"] == 0.0 and r.loc["a", "t>0.25"] == 0.0
    assert r.loc["b", "R>10deg"] == 1.0  # a failure with a tiny recorded error is still a failure
    assert r.loc["a", "n"] == 30


def test_failure_rates_match_a_naive_count():
    rng = np.random.default_rng(5)
    df = E.prepare(
        make_rows(rng, {"a": {("t", 1): (lambda r, c: r.exponential(4), True), ("t", 2): (lambda r, c: 3.0, True)}})
    )
    df.loc[rng.random(len(df)) < 0.1, "success"] = False
    df = E.prepare(df)
    rates = E.failure_rates(df, THR).set_index(["params", "split", "category"])
    for (params, split, cat), r in rates.iterrows():
        sub = df[(df.params == params) & (df.split == split) & ((df.category == cat) | (cat == "all"))]
        for name, err, t in E.metric_columns(THR):
            fails = sum(1 for e, ok in zip(sub[err], sub["success"]) if (not ok) or e > t)
            assert r[name] == pytest.approx(fails / len(sub))
        assert r["n"] == len(sub)


def test_selection_protocols_differ_when_tuning_disagrees():
    base = make_rows(np.random.default_rng(0), {"x": {("threshold", 1): (1.0, True), ("threshold", 2): (20.0, True)}})
    tun = base["split"] == "tuning"
    base.loc[tun & base["params"].str.contains("1"), "rotation_error_deg"] = 20.0
    base.loc[tun & base["params"].str.contains("2"), "rotation_error_deg"] = 1.0
    sel = E.select(E.failure_rates(E.prepare(base), THR)).set_index("estimator")
    assert json.loads(sel.loc["x", "paper"]) == {"threshold": 1}
    assert json.loads(sel.loc["x", "fair"]) == {"threshold": 2}
    assert sel.loc["x", "paper_test_value"] < sel.loc["x", "fair_test_value"]
    assert sel.loc["x", "fair_basis"] == "tuning"


def test_fair_protocol_never_falls_back_to_test_pairs():
    """Without tuning rows the fair choice of a swept estimator is an explicit n/a (it used to be the test pairs'
    choice, the paper protocol under the fair label); a one-setting estimator keeps its setting (nothing chosen).
    The fair Table 1 then shows labelled n/a rows, the paper Table 1 is unchanged."""
    from nre.eval import tables as T

    spec = {
        "x": {("threshold", 1): (1.0, True), ("threshold", 2): (20.0, True)},
        "nre_single": {(): (0.5, True)},
    }
    df = E.prepare(make_rows(np.random.default_rng(0), spec, splits=("test",)))
    sel = E.select(E.failure_rates(df, THR)).set_index("estimator")
    assert sel.loc["x", "fair"] == E.FAIR_NA and np.isnan(sel.loc["x", "fair_test_value"])
    assert json.loads(sel.loc["x", "paper"]) == {"threshold": 1}
    assert sel.loc["nre_single", "fair"] == "{}" and sel.loc["nre_single", "fair_basis"] == "single setting"
    assert not sel["fair_from_tuning"].any()
    sel = sel.reset_index()
    fair = T.table1(df, sel, THR, "dsift", protocol="fair", n_boot=0).set_index(["category", "estimator"])
    assert fair.loc[("hard", "x"), "params"] == E.FAIR_NA and fair.loc[("hard", "x"), "n"] == 0
    assert np.isnan(fair.loc[("all", "x"), "R>2deg"]) and fair.loc[("all", "nre_single"), "R>2deg"] == 0.0
    shown = T.table1_display(fair.reset_index(), THR).set_index(["category", "estimator"])
    assert shown.loc[("all", "x"), "R>2deg"] == "n/a: no tuning pairs"
    paper = T.table1(df, sel, THR, "dsift", protocol="paper", n_boot=0).set_index(["category", "estimator"])
    assert paper.loc[("all", "x"), "R>2deg"] == 0.0 and paper.loc[("all", "x"), "n"] == 30


def test_selection_on_the_final_stage_applies_to_every_stage():
    # setting a is best at p3p, setting b at the final stage: b must be chosen, for all three stages
    spec = {
        (("k", "a"), "p3p"): (1.0, True),
        (("k", "a"), "coarse_gnc"): (30.0, True),
        (("k", "a"), "fine_gnc"): (30.0, True),
        (("k", "b"), "p3p"): (30.0, True),
        (("k", "b"), "coarse_gnc"): (3.0, True),
        (("k", "b"), "fine_gnc"): (1.0, True),
    }
    df = E.prepare(make_rows(np.random.default_rng(0), {"nre_c2f": spec}))
    with pytest.raises(ValueError, match="no final stage"):  # the rates alone do not tell the stages' order
        E.select(E.failure_rates(df, THR))
    sel = E.select(E.failure_rates(df, THR), final=E.final_stages(df))  # from the rows: the declared order
    assert len(sel) == 1 and sel.iloc[0]["stage"] == "fine_gnc" and json.loads(sel.iloc[0]["paper"]) == {"k": "b"}
    chosen = E.selected_rows(df[df.split == "test"], sel, "paper")
    assert set(chosen["stage"]) == {"p3p", "coarse_gnc", "fine_gnc"} and len(chosen) == 90


def test_selection_metric_choice_and_bad_metric():
    df = E.prepare(
        make_rows(np.random.default_rng(0), {"x": {("s", 1): (lambda r, c: 6.0, True), ("s", 2): (3.0, True)}})
    )
    rates = E.failure_rates(df, THR)
    assert json.loads(E.select(rates, "R>5deg").iloc[0]["paper"]) == {"s": 2}
    assert json.loads(E.select(rates, "R>10deg").iloc[0]["paper"]) == {"s": 1}  # tie at 0: first sorted params
    with pytest.raises(ValueError, match="not a rate column"):
        E.select(rates, "median")


def test_bootstrap_ci_is_seeded_and_covers():
    fail = np.r_[np.ones(30), np.zeros(70)].astype(bool)
    a = E.bootstrap_ci(fail, 500, 3)
    assert a == E.bootstrap_ci(fail, 500, 3)
    assert a[0] < 0.3 < a[1]
    # the normal approximation of the interval of a proportion: +- 1.96 sqrt(p(1-p)/n) = +-0.09
    assert a[1] - a[0] == pytest.approx(2 * 1.96 * np.sqrt(0.21 / 100), rel=0.2)


def test_mcnemar_exact_values():
    a = np.r_[np.ones(10), np.zeros(20)].astype(bool)
    b = np.zeros(30, bool)
    assert E.mcnemar_p(a, b) == pytest.approx(2 * 0.5**10)
    assert E.mcnemar_p(a, a) == 1.0
    c = np.r_[np.ones(5), np.zeros(25)].astype(bool)
    d = np.r_[np.zeros(5), np.ones(5), np.zeros(20)].astype(bool)
    assert E.mcnemar_p(c, d) == 1.0  # 5 vs 5 discordant pairs


def test_mcnemar_matches_scipy_binomtest():
    from scipy.stats import binomtest

    rng = np.random.default_rng(1)
    for n01, n10 in [(0, 1), (1, 0), (3, 9), (9, 3), (7, 7), (40, 61), (0, 300), (150, 151)]:
        k = 20  # concordant pairs of both kinds around them
        a = np.r_[np.ones(n01), np.zeros(n10), np.ones(k), np.zeros(k)].astype(bool)
        b = np.r_[np.zeros(n01), np.ones(n10), np.ones(k), np.zeros(k)].astype(bool)
        perm = rng.permutation(len(a))
        want = binomtest(n01, n01 + n10, 0.5).pvalue
        assert E.mcnemar_p(a[perm], b[perm]) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_auc_is_the_exact_area_under_the_curve():
    assert E.auc(np.zeros(10), 5.0) == pytest.approx(1.0)
    assert E.auc(np.full(10, np.inf), 5.0) == 0.0
    assert E.auc(np.array([1.0, 3.0]), 4.0) == pytest.approx(0.5)
    e = np.random.default_rng(0).exponential(2.0, 200)
    xs = np.linspace(0, 5, 200001)
    cdf = np.searchsorted(np.sort(e), xs, side="right") / len(e)
    assert E.auc(e, 5.0) == pytest.approx(np.trapezoid(cdf, xs) / 5, abs=1e-4)


def test_diagnostics_from_rows():
    rng = np.random.default_rng(0)
    df = make_rows(rng, {"oracle": {("radius", 4): (1.0, True)}, "nre_single": {(): (20.0, True)}}, n=6)
    df.loc[df.estimator == "oracle", "diagnostics"] = [json.dumps({"inlier_ratio": 0.1 * i}) for i in range(12)]
    df.loc[df.estimator == "nre_single", "diagnostics"] = [
        json.dumps({"cost": 5.0, "cost_at_truth": 4.0 if i % 2 else 6.0}) for i in range(12)
    ]
    df.loc[0, ["success", "failure_reason"]] = [False, "EstimatorError: boom"]
    df = E.prepare(df)
    ir = E.inlier_ratios(df).set_index(["split", "category"])
    assert ir.loc[("test", "all"), "n"] == 6
    assert ir.loc[("test", "easy"), "median"] == pytest.approx(np.median([0.0, 0.3]))
    cost = E.cost_diagnostics(df)
    assert len(cost) == 12 and cost["optimiser_failure"].sum() == 6
    cs = E.cost_summary(cost).set_index(["category"])
    assert cs.loc["all", "wrong"] == 12 and cs.loc["all", "optimiser"] == 6 and cs.loc["all", "objective"] == 6
    fr = E.failure_reasons(df)
    assert fr.iloc[0]["failure_reason"] == "EstimatorError" and fr["count"].sum() == 1


def test_truth_errors_undo_the_sim3_between_sfm_and_truth(monkeypatch):
    """An estimate equal to the SfM pose of an image that the sim3 maps exactly onto the truth has zero truth error;
    a 3 deg / 0.5 unit perturbation in the truth frame shows up as exactly that."""
    rng = np.random.default_rng(1)
    s, Rs, ts = 2.5, so3_exp(rng.normal(size=3)), rng.normal(size=3)
    truth = {f"im{i}.jpg": (so3_exp(rng.normal(size=3) * 0.5), rng.normal(size=3)) for i in range(4)}
    M = np.c_[s * Rs, ts]
    monkeypatch.setattr(E, "scene_alignment", lambda d: (M, s, truth) if d.endswith("synth") else None)
    rows, pairs = [], []
    for i, (name, (Rg, tg)) in enumerate(truth.items()):
        # SfM pose of the same camera: X_truth = s Rs X + ts  =>  R = Rg Rs, t = (Rg ts + tg) / s
        R, t = Rg @ Rs, (Rg @ ts + tg) / s
        if i == 1:  # perturb in the truth frame: rotate by 3 deg, shift t by 0.5
            dR = so3_exp(np.radians(3.0) * np.array([0, 0, 1.0]))
            R, t = (dR @ Rg) @ Rs, (dR @ Rg @ ts + tg + np.array([0.5, 0, 0])) / s
        q = R_to_quat_wxyz(R)
        row = dict.fromkeys(COLUMNS, np.nan)
        row.update(pair_id=f"p{i}", scene="synth", success=i != 3, qw=q[0], qx=q[1], qy=q[2], qz=q[3])
        row.update(tx=t[0], ty=t[1], tz=t[2])
        rows.append(row)
        pairs.append({"pair_id": f"p{i}", "scene": "synth", "source": "x", "target": name})
    rows.append({**rows[0], "pair_id": "p9", "scene": "real"})
    pairs.append({"pair_id": "p9", "scene": "real", "source": "x", "target": "im0.jpg"})
    out = E.truth_errors(pd.DataFrame(rows), pd.DataFrame(pairs), "/root").set_index("pair_id")
    assert out.loc["p0", "rotation_error_truth_deg"] == pytest.approx(0, abs=1e-5)
    assert out.loc["p0", "translation_error_truth"] == pytest.approx(0, abs=1e-9)
    assert out.loc["p1", "rotation_error_truth_deg"] == pytest.approx(3.0, abs=1e-6)
    assert out.loc["p1", "translation_error_truth"] == pytest.approx(0.5, abs=1e-9)
    assert np.isinf(out.loc["p3", "rotation_error_truth_deg"])  # a failure stays infinite
    assert np.isnan(out.loc["p9", "rotation_error_truth_deg"])  # no truth model: NaN, not a failure


def test_scene_alignment_without_truth_is_none(tmp_path):
    assert E.scene_alignment(str(tmp_path)) is None
