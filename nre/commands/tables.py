"""``nre tables``: the paper's tables, curves, sweep plots and diagnostics from an evaluation folder
(``nre evaluate`` then ``nre evaluate --select``); optionally Fig. 4-style map pictures of a few pairs."""

from __future__ import annotations

import json
from pathlib import Path

from nre.commands._args import json_arg

HELP = "write Tables 1-2, summary, diagnostics, Fig. 5 curves, sweep plots (and Fig. 4 map pictures)"


def add_arguments(p):
    p.add_argument("--eval-dir", required=True, help="folder with rows.parquet, failure_rates.csv, selection.csv")
    p.add_argument("--out-dir", default=None, help="default: the evaluation folder")
    p.add_argument("--thresholds", default=None, help="JSON; default: EVAL_DIR/thresholds.json")
    p.add_argument("--table1-features", default=None, help="backend of Table 1 (default: the first one found)")
    p.add_argument("--reference", default="nre_single", help="Table 1 reference estimator")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the 95%% intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--map-pictures", type=int, default=0, help="Fig. 4 pictures for this many test pairs")
    p.add_argument(
        "--no-tables",
        action="store_true",
        help="only the map pictures (they need no results: the workflow draws them while the estimators run)",
    )
    p.add_argument("--pairs", default=None, help="pair table (for --map-pictures)")
    p.add_argument("--root", default=None, help="scene root (for --map-pictures)")
    p.add_argument("--features", default=None, help="backend of the map pictures (default: --table1-features)")
    p.add_argument("--features-options", default="{}")
    p.add_argument("--max-points", type=int, default=1000)


def write_all(ev: Path, out: Path, thr: dict, feats: str | None, reference: str, n_boot: int, seed: int) -> None:
    import pandas as pd

    from nre.eval import figures as F
    from nre.eval import metrics as E
    from nre.eval import tables as T

    df = pd.read_parquet(ev / "rows.parquet")
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


def run(args) -> int:
    from nre.eval import metrics as E

    ev = Path(args.eval_dir)
    out = Path(args.out_dir) if args.out_dir else ev
    out.mkdir(parents=True, exist_ok=True)
    if args.thresholds:
        thr = json.loads(args.thresholds)
    elif (ev / "thresholds.json").exists():
        thr = json.loads((ev / "thresholds.json").read_text())
    else:
        thr = E.DEFAULT_THRESHOLDS
    if not args.no_tables:
        write_all(ev, out, thr, args.table1_features, args.reference, args.bootstrap, args.seed)
    if args.map_pictures:
        map_pictures(args, out)
    print(f"wrote {'map pictures' if args.no_tables else 'tables and figures'} to {out}")
    return 0


def map_pictures(args, out: Path) -> None:
    """Fig. 4 for the first test pair of each category (then the next ones), whatever the estimators did."""
    import pandas as pd

    from nre.data.pairs import load_pair
    from nre.eval import figures as F
    from nre.features import get_backend

    if not (args.pairs and args.root):
        raise SystemExit("nre tables: --map-pictures needs --pairs and --root")
    options = json_arg(args.features_options, "--features-options", "nre tables")
    backend = get_backend(args.features or args.table1_features or "dsift", **options)
    pairs = pd.read_csv(args.pairs, dtype={"pair_id": str})
    test = pairs[pairs["split"] == "test"].copy()
    test["rank"] = test.groupby("category").cumcount()
    chosen = test.sort_values(["rank", "category"], kind="stable").head(args.map_pictures)
    rows = [r for _, r in chosen.iterrows()]
    for i in range(args.map_pictures):
        stem = out / f"fig4_maps_{i}"
        if i >= len(rows):
            F.placeholder(stem, "fewer test pairs than map pictures asked for")
            continue
        try:
            pair = load_pair(args.root, rows[i]).capped(args.max_points, args.seed)
            F.map_pictures(pair, backend, stem, seed=args.seed)
        except Exception as e:  # a picture is a diagnostic: never fail the tables for it
            msg = f"map pictures of {rows[i]['pair_id']}: {type(e).__name__}: {e}"
            print(msg)
            F.placeholder(stem, msg)
