"""``nre evaluate``: result rows -> the paper's tables, selection, curves, sweep plots and diagnostics."""

from __future__ import annotations

import json
from pathlib import Path

HELP = "compute the tables, figures and diagnostics from result rows"


def add_arguments(p):
    p.add_argument("--rows", nargs="+", required=True, help="result row files (parquet)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--thresholds", default=None, help='JSON {"rotation_deg": [...], "translation": [...]}')
    p.add_argument("--table1-features", default=None, help="backend of Table 1 (default: the first one found)")
    p.add_argument("--reference", default="nre_single", help="Table 1 reference estimator")
    p.add_argument("--metric", default="mean_failure")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from nre import evaluate as E
    from nre import figures as F
    from nre.results import read

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    thr = json.loads(args.thresholds) if args.thresholds else E.DEFAULT_THRESHOLDS
    df = E.prepare(read(args.rows))
    df.to_parquet(out / "rows.parquet", index=False)
    rates = E.failure_rates(df, thr)
    E.write_table(rates, out / "failure_rates")
    sel = E.select(rates, args.metric)
    E.write_table(sel, out / "selection")
    feats = args.table1_features or (sorted(df["features"].unique())[0] if len(df) else "")
    for proto in ("paper", "fair"):
        E.write_table(
            E.table1(df, sel, thr, feats, args.reference, proto, args.bootstrap, args.seed), out / f"table1_{proto}"
        )
    E.write_table(E.table2(df, thr), out / "table2")
    E.write_table(E.summary_stats(df, sel, thr), out / "summary")
    E.write_table(E.failure_reasons(df), out / "failure_reasons")
    E.write_table(E.cost_diagnostics(df), out / "cost_diagnostics")
    E.write_table(E.inlier_ratios(df), out / "inlier_ratios")
    # Fig. 5: coarse-to-fine ablation on hard, and one curve per estimator (selected setting)
    test = df[df["split"] == "test"]
    d = E.selected_rows(test, sel, "paper")
    c2f = d[(d["estimator"] == "nre_c2f") & (d["category"] == "hard")]
    curves = {f"{f} {F.STAGE_LABELS.get(s, s)}": g for (f, s), g in c2f.groupby(["features", "stage"], sort=False)}
    F.cumulative_curves(curves, "Coarse-to-fine NRE ablation (hard)", out / "fig5_ablation_hard")
    for cat in ("easy", "medium", "hard"):
        dc = d[(d["category"] == cat) & d["stage"].isin(["", "fine_gnc"])]
        curves = {f"{e} ({f})": g for (e, f), g in dc.groupby(["estimator", "features"])}
        F.cumulative_curves(curves, f"All estimators ({cat})", out / f"fig5_estimators_{cat}")
    F.sweep_plot(rates[rates["split"].isin(["test", "tuning"])], sel, args.metric, out / "sweeps")
    print(f"wrote tables and figures to {out}")
    print(
        E.to_markdown(
            E.table1(df, sel, thr, feats, args.reference, "paper", 0, args.seed).loc[
                lambda t: t["category"] == "hard",
                ["estimator", "params", "n"] + [c for c, _, _ in E.metric_columns(thr)],
            ]
        )
    )
    return 0
