"""What an evaluation writes, and in which steps (``nre evaluate``, ``nre evaluate --select``, ``nre tables``):

1. ``evaluate_rows``: result rows -> evaluated rows (``rows.parquet``, with renderer-truth errors where the scenes
   have them), ``thresholds.json`` and the failure rates per setting (``failure_rates.*``);
2. ``select_settings``: failure rates -> the selected hyperparameters under both protocols (``selection.*``);
3. ``write_outputs``: Tables 1 (both protocols) and 2, the summary, the diagnostics (failure reasons, cost and
   inlier diagnostics, renderer-truth comparison), Fig. 5's curves, the sweep and inlier plots; and, with
   ``map_pictures``, Fig. 4-style pictures of the maps of a few test pairs (they need no results: the workflow
   draws them while the estimators run).
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
) -> pd.DataFrame:
    """Evaluate result-row files (``nre estimate``'s parquet) into ``out_dir``; with ``pairs`` and ``root``, errors
    against the renderer truth too. Returns the failure rates."""
    from nre.data.pairs import read_pair_table
    from nre.estimators.rows import read
    from nre.eval import metrics as E
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
    write_table(rates, out / "failure_rates")
    log.info("%d rows, %d rate cells -> %s", len(df), len(rates), out)
    return rates


def select_settings(*, eval_dir: str | Path, metric: str = "mean_failure") -> pd.DataFrame:
    """The hyperparameters selected from ``eval_dir``/failure_rates.csv by ``metric`` (mean_failure or a rate
    column), under both protocols, written to ``selection.*``."""
    from nre.eval import metrics as E
    from nre.eval.tables import write_table

    out = Path(eval_dir)
    rates = E.read_rates(out / "failure_rates.csv")
    try:
        sel = E.select(rates, metric)
    except ValueError as e:
        raise OptionError(str(e)) from None
    write_table(sel, out / "selection")
    log.info("selection:\n%s", sel[["features", "estimator", "stage", "paper", "fair"]].to_string(index=False))
    return sel


def thresholds_of(eval_dir: Path, thresholds: dict | None) -> dict:
    """``thresholds`` if given, else the evaluation's (thresholds.json), else the defaults."""
    from nre.eval import metrics as E

    if thresholds:
        return thresholds
    f = eval_dir / "thresholds.json"
    return json.loads(f.read_text()) if f.exists() else E.DEFAULT_THRESHOLDS


def write_tables(ev: Path, out: Path, thr: dict, feats: str | None, reference: str, n_boot: int, seed: int) -> None:
    """Tables 1-2, summary, diagnostics, Fig. 5 curves, sweep and inlier plots of evaluation folder ``ev``."""
    from nre.eval import figures as F
    from nre.eval import metrics as E
    from nre.eval import tables as T

    for name in ("rows.parquet", "failure_rates.csv", "selection.csv"):
        if not (ev / name).exists():
            raise FileNotFoundError(2, "missing (run nre evaluate and nre evaluate --select first)", str(ev / name))
    try:
        df = pd.read_parquet(ev / "rows.parquet")
    except (ValueError, OSError) as e:
        raise FileFormatError(f"{ev / 'rows.parquet'}: not an evaluated-rows file ({type(e).__name__})") from None
    rates = E.read_rates(ev / "failure_rates.csv")
    sel = E.read_rates(ev / "selection.csv")
    feats = feats or (sorted(df["features"].unique())[0] if len(df) else "")
    for proto in ("paper", "fair"):
        t1 = T.table1(df, sel, thr, feats, reference, proto, n_boot, seed)
        T.write_table(t1, out / f"table1_{proto}", display=T.table1_display(t1, thr, reference))
    T.write_table(T.table2(df, thr, n_boot, seed), out / "table2")
    T.write_table(T.summary_stats(df, sel, thr), out / "summary")
    T.write_table(E.failure_reasons(df), out / "failure_reasons")
    cost = E.cost_diagnostics(df)
    T.write_table(cost, out / "cost_diagnostics", text=False)  # per pair: CSV only
    T.write_table(E.cost_summary(cost), out / "cost_summary")
    T.write_table(E.inlier_ratios(df), out / "inlier_ratios")
    T.write_table(E.truth_comparison(df, sel, thr), out / "truth_comparison")
    # Fig. 5: coarse-to-fine ablation on hard, and one curve per estimator (selected setting, final stage)
    d = E.selected_rows(df[df["split"] == "test"], sel, "paper")
    c2f = d[(d["estimator"] == "nre_c2f") & (d["category"] == "hard")].copy()
    c2f["order"] = c2f["stage"].map(E.STAGE_ORDER).fillna(9)
    c2f = c2f.sort_values(["features", "order"], kind="stable")
    curves = {f"{f} {F.STAGE_LABELS.get(s, s)}": g for (f, s), g in c2f.groupby(["features", "stage"], sort=False)}
    F.cumulative_curves(curves, "Coarse-to-fine NRE ablation (hard)", out / "fig5_ablation_hard")
    for cat in E.CATEGORIES:
        dc = d[(d["category"] == cat) & d["stage"].isin(E.FINAL_STAGES)]
        curves = {f"{e} ({f})": g for (e, f), g in dc.groupby(["estimator", "features"])}
        F.cumulative_curves(curves, f"All estimators ({cat})", out / f"fig5_estimators_{cat}")
    metric = sel["metric"].iloc[0] if len(sel) and "metric" in sel else "mean_failure"
    F.sweep_plot(rates[rates["split"].isin(["test", "tuning"])], sel, metric, out / "sweeps")
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
    table1_features: str | None = None,
    reference: str = "nre_single",
    bootstrap: int = 1000,
    seed: int = 0,
    tables: bool = True,
    map_pictures: int = 0,
    pairs: str | Path | None = None,
    root: str | Path | None = None,
    features: str | None = None,
    features_options: dict | None = None,
    max_points: int = 1000,
) -> Path:
    """The tables and figures of evaluation folder ``eval_dir`` (``tables``) and ``map_pictures`` Fig. 4 pictures
    (which need ``pairs`` and ``root``; backend ``features``, default ``table1_features``, else dsift) into
    ``out_dir`` (default: ``eval_dir``). Returns the output folder."""
    ev = Path(eval_dir)
    out = Path(out_dir) if out_dir else ev
    if map_pictures and not (pairs and root):
        raise OptionError("map pictures need the pair table and the scene root (--pairs, --root)")
    out.mkdir(parents=True, exist_ok=True)
    if tables:
        write_tables(ev, out, thresholds_of(ev, thresholds), table1_features, reference, bootstrap, seed)
    if map_pictures:
        draw_map_pictures(
            out, map_pictures, pairs=pairs, root=root, features=features or table1_features or "dsift",
            features_options=features_options or {}, max_points=max_points, seed=seed,
        )  # fmt: skip
    log.info("wrote %s to %s", "tables and figures" if tables else "map pictures", out)
    return out
