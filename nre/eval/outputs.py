"""What an evaluation writes, and in which steps (``nre evaluate``, ``nre evaluate --select``, ``nre tables``):

1. ``evaluate_rows``: result rows -> evaluated rows (``rows.parquet``, with renderer-truth errors where the scenes
   have them), ``thresholds.json`` and the failure rates per setting (``failure_rates.*``);
2. ``select_settings``: failure rates -> the selected hyperparameters under both protocols (``selection.*``), on
   each estimator's final stage (from the study info, else from the rows);
3. ``write_outputs``: Tables 1 (both protocols, one per Table 1 backend) and 2, the summary (recalls, share with an
   estimate, medians, AUCs), the headline comparison with the reference, the spread over seeds, the diagnostics
   (failure reasons, cost and inlier diagnostics, renderer-truth comparison), Fig. 5's curves, the sweep and inlier
   plots, and ``study.json`` (the study information the report reads); and, with ``map_pictures``, Fig. 4-style
   pictures of the maps of a few test pairs (they need no results: the workflow draws them while the estimators
   run).

The study information (``info``: ``nre.workflow.plan.Plan.info``, e.g. ``nre tables --info``) gives display names,
units, order, final stages and Table 2 membership (``nre.eval.study``); without it they are derived from the rows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from nre.errors import FileFormatError, OptionError

log = logging.getLogger("nre.eval")


def evaluate_rows(
    *,
    rows: list[str | Path],
    out_dir: str | Path,
    thresholds: dict | None = None,
    pairs: str | Path | None = None,
    root: str | Path | None = None,
    info=None,
) -> pd.DataFrame:
    """Evaluate result-row files (``nre estimate``'s parquet) into ``out_dir``; with ``pairs`` and ``root``, errors
    against the renderer truth too; ``info``: the study information (display names and order of failure_rates.md).
    Returns the failure rates."""
    from nre.data.pairs import read_pair_table
    from nre.estimators.rows import read
    from nre.eval import metrics as E
    from nre.eval.study import Study
    from nre.eval.tables import write_table

    if not rows:
        raise OptionError("no result-row files given (--rows)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    thr = thresholds or E.DEFAULT_THRESHOLDS
    df = E.prepare(read(rows))
    if pairs and root:
        df = E.truth_errors(df, read_pair_table(pairs), root)
    df.to_parquet(out / "rows.parquet", index=False)
    (out / "thresholds.json").write_text(json.dumps(thr, sort_keys=True))
    rates = E.failure_rates(df, thr)
    write_table(rates, out / "failure_rates", study=Study.load(info).with_rows(df), title="Failure rates")
    log.info("%d rows, %d rate cells -> %s", len(df), len(rates), out)
    return rates


def _study_of(ev: Path, info):
    """The study (``info``, completed from the estimator / stage / features columns of ``ev``/rows.parquet) and
    each estimator's final stage (declared, else the last of the stages its rows give)."""
    from nre.eval import metrics as E
    from nre.eval.study import Study

    rows = ev / "rows.parquet"
    df = pd.read_parquet(rows, columns=["estimator", "stage", "features"]) if rows.exists() else None
    study = Study.load(info)
    if df is None:
        return study, study.final_stages()
    df["stage"] = df["stage"].fillna("")
    study = study.with_rows(df)
    return study, E.final_stages(df, study)


def select_settings(*, eval_dir: str | Path, metric: str = "mean_failure", info=None) -> pd.DataFrame:
    """The hyperparameters selected from ``eval_dir``/failure_rates.csv by ``metric`` (mean_failure or a rate
    column), under both protocols, on each estimator's final stage (``info``: the study information, else the rows'
    stage order), written to ``selection.*``."""
    from nre.eval import metrics as E
    from nre.eval.tables import write_table

    out = Path(eval_dir)
    rates = E.read_rates(out / "failure_rates.csv")
    study, final = _study_of(out, info)
    try:
        sel = E.select(rates, metric, final)
    except ValueError as e:
        raise OptionError(str(e)) from None
    write_table(study.sort(sel), out / "selection", study=study, title="Hyperparameter selection")
    log.info("selection:\n%s", sel[["features", "estimator", "stage", "paper", "fair"]].to_string(index=False))
    return sel


def thresholds_of(eval_dir: Path, thresholds: dict | None) -> dict:
    """``thresholds`` if given, else the evaluation's (thresholds.json), else the defaults."""
    from nre.eval import metrics as E

    if thresholds:
        return thresholds
    f = eval_dir / "thresholds.json"
    return json.loads(f.read_text()) if f.exists() else E.DEFAULT_THRESHOLDS


def write_tables(
    ev: Path,
    out: Path,
    thr: dict,
    feats,
    reference: str | None,
    n_boot: int,
    seed: int,
    info=None,
    recall_thresholds=None,
) -> None:
    """Tables 1-2, summary, headline, seeds, diagnostics, Fig. 5 curves, sweep and inlier plots of evaluation folder
    ``ev``; ``feats``: the Table 1 backend(s) when the info does not give them (default: the first one found)."""
    from nre.eval import figures as F
    from nre.eval import metrics as E
    from nre.eval import tables as T
    from nre.eval.study import Study

    for name in ("rows.parquet", "failure_rates.csv", "selection.csv"):
        if not (ev / name).exists():
            raise FileNotFoundError(2, "missing (run nre evaluate and nre evaluate --select first)", str(ev / name))
    try:
        df = pd.read_parquet(ev / "rows.parquet")
    except (ValueError, OSError) as e:
        raise FileFormatError(f"{ev / 'rows.parquet'}: not an evaluated-rows file ({type(e).__name__})") from None
    rates = E.read_rates(ev / "failure_rates.csv")
    sel = E.read_rates(ev / "selection.csv")
    study = Study.load(info, reference=reference, table1_features=feats).with_rows(df)
    recall_thresholds = E.DEFAULT_RECALL if recall_thresholds is None else recall_thresholds
    (out / "study.json").write_text(
        json.dumps({**study.to_dict(), "recall_thresholds": recall_thresholds}, indent=1, sort_keys=True)
    )
    t1_feats = [f for f in study.table1_features if f in set(df["features"])] or study.table1_features[:1]
    for i, f in enumerate(t1_feats):
        suffix = "" if i == 0 else f"_{f}"
        for proto in ("paper", "fair"):
            t1 = T.table1(df, sel, thr, f, study.reference, proto, n_boot, seed, study=study)
            title = f"Table 1, {proto} protocol ({f})"
            shown = T.table1_display(t1, thr, study.reference, study)
            T.write_table(t1, out / f"table1_{proto}{suffix}", display=shown, title=title)
    if t1_feats and recall_thresholds:
        mid = recall_thresholds[len(recall_thresholds) // 2]
        head = T.headline(df, sel, t1_feats[0], mid, study.reference, "paper", n_boot, seed, study=study)
        T.write_table(
            head,
            out / "headline",
            study=study,
            title=f"Wrong poses: translation error above {mid[0]:g} or rotation error above {mid[1]:g} deg",
        )
    t2 = T.table2(df, thr, n_boot, seed, study=study, sel=sel)
    T.write_table(t2, out / "table2", study=study, title="Table 2: features compared with one estimator")
    summ = T.summary_stats(df, sel, thr, "paper", recall_thresholds, study)
    T.write_table(summ, out / "summary", study=study, title="Recall, share with an estimate, median errors, AUC")
    spread = T.seed_spread(df, sel, thr, recall_thresholds, study)
    T.write_table(spread, out / "seeds", display=T.seed_display(spread, study), title="Spread over seeds")
    T.write_table(study.sort(E.failure_reasons(df)), out / "failure_reasons", study=study, title="Failure reasons")
    cost = E.cost_diagnostics(df)
    T.write_table(cost, out / "cost_diagnostics", text=False)  # per pair: CSV only
    title = "Cost at the truth vs at the estimate: optimiser vs objective failures among wrong estimates"
    T.write_table(study.sort(E.cost_summary(cost)), out / "cost_summary", study=study, title=title)
    title = "Inlier ratio of the argmax matches per category"
    T.write_table(study.sort(E.inlier_ratios(df)), out / "inlier_ratios", study=study, title=title)
    title = "Errors against the SfM ground truth vs the renderer's truth"
    T.write_table(study.sort(E.truth_comparison(df, sel, thr)), out / "truth_comparison", study=study, title=title)
    # Fig. 5: the stage ablation of every multi-stage estimator on hard, and one curve per estimator (selected
    # setting, final stage) per category
    test = df[df["split"] == "test"]
    d = E.selected_rows(test, sel, "paper")
    staged = [k for k in study.ordered(study.estimators) if len(study.estimators[k].get("stages") or []) > 1]
    abl = study.sort(d[d["estimator"].isin(staged) & (d["category"] == "hard")][["estimator", "features", "stage"]])
    curves = {}
    for (e, f, s), _ in abl.groupby(["estimator", "features", "stage"], sort=False):
        g = d[(d["estimator"] == e) & (d["features"] == f) & (d["stage"] == s) & (d["category"] == "hard")]
        curves[(e, f, s)] = g
    F.cumulative_curves(curves, "Stage ablation, hard pairs", out / "fig5_ablation_hard", study=study)
    fin = E.selected_rows(test, sel, "paper", final_only=True)
    for cat in E.CATEGORIES:
        dc = study.sort(fin[fin["category"] == cat][["estimator", "features"]].drop_duplicates())
        curves = {}
        for e, f in dc.itertuples(index=False):
            curves[(e, f, "")] = fin[(fin["category"] == cat) & (fin["estimator"] == e) & (fin["features"] == f)]
        F.cumulative_curves(curves, f"All estimators, {cat} pairs", out / f"fig5_estimators_{cat}", study=study)
    metric = sel["metric"].iloc[0] if len(sel) and "metric" in sel else "mean_failure"
    F.sweep_plot(rates[rates["split"].isin(["test", "tuning"])], sel, metric, out / "sweeps", study=study)
    F.inlier_plot(E.per_pair_inliers(df), out / "inlier_ratios")


def draw_map_pictures(
    out: Path, n: int, *, pairs, root, features: str, features_options: dict, max_points: int, seed: int
) -> None:
    """Fig. 4 for the first test pair of each category (then the next ones), whatever the estimators did; a pair
    that cannot be drawn gets a placeholder saying why."""
    from nre.data.pairs import load_pair, read_pair_table
    from nre.eval import figures as F
    from nre.features import get_backend

    backend = get_backend(features, **features_options)
    table = read_pair_table(pairs, ("pair_id", "split", "category"))
    test = table[table["split"] == "test"].copy()
    test["rank"] = test.groupby("category").cumcount()
    chosen = test.sort_values(["rank", "category"], kind="stable").head(n)
    rows = [r for _, r in chosen.iterrows()]
    for i in range(n):
        stem = out / f"fig4_maps_{i}"
        if i >= len(rows):
            F.placeholder(stem, "fewer test pairs than map pictures asked for")
            continue
        try:
            pair = load_pair(root, rows[i]).capped(max_points, seed)
            F.map_pictures(pair, backend, stem, seed=seed)
        except Exception as e:  # a picture is a diagnostic: never fail the tables for it
            msg = f"map pictures of {rows[i]['pair_id']}: {type(e).__name__}: {e}"
            log.warning(msg)
            F.placeholder(stem, msg)


def write_outputs(
    *,
    eval_dir: str | Path,
    out_dir: str | Path | None = None,
    thresholds: dict | None = None,
    table1_features: str | list[str] | None = None,
    reference: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    tables: bool = True,
    map_pictures: int = 0,
    pairs: str | Path | None = None,
    root: str | Path | None = None,
    features: str | None = None,
    features_options: dict | None = None,
    max_points: int = 1000,
    info=None,
    recall_thresholds=None,
) -> Path:
    """The tables and figures of evaluation folder ``eval_dir`` (``tables``) and ``map_pictures`` Fig. 4 pictures
    (which need ``pairs`` and ``root``; backend ``features``, default the first Table 1 backend, else dsift) into
    ``out_dir`` (default: ``eval_dir``). ``info``: the study information (``Plan.info``: a dict, its JSON or a JSON
    file); ``reference`` / ``table1_features`` apply when it does not name them. ``recall_thresholds``: the
    combined (translation, rotation deg) thresholds of the recalls (default ``metrics.DEFAULT_RECALL``). Returns the
    output folder."""
    ev = Path(eval_dir)
    out = Path(out_dir) if out_dir else ev
    if map_pictures and not (pairs and root):
        raise OptionError("map pictures need the pair table and the scene root (--pairs, --root)")
    out.mkdir(parents=True, exist_ok=True)
    t1 = [table1_features] if isinstance(table1_features, str) else list(table1_features or [])
    if tables:
        write_tables(
            ev, out, thresholds_of(ev, thresholds), t1, reference, bootstrap, seed, info, recall_thresholds
        )  # fmt: skip
    if map_pictures:
        from nre.eval.study import Study

        first = (Study.load(info).table1_features or t1 or ["dsift"])[0]
        draw_map_pictures(
            out, map_pictures, pairs=pairs, root=root, features=features or first,
            features_options=features_options or {}, max_points=max_points, seed=seed,
        )  # fmt: skip
    log.info("wrote %s to %s", "tables and figures" if tables else "map pictures", out)
    return out
