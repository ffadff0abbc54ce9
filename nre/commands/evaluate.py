"""``nre evaluate``: result rows -> evaluated rows (with renderer-truth errors where available) and failure rates;
``nre evaluate --select``: failure rates -> the selected hyperparameters under both protocols."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HELP = "evaluate result rows (failure rates per setting) or select hyperparameters (--select)"


def add_arguments(p):
    p.add_argument("--rows", nargs="+", help="result row files (parquet, from nre estimate)")
    p.add_argument("--out-dir", required=True, help="evaluation folder (rows.parquet, failure_rates.*, selection.*)")
    p.add_argument("--thresholds", default=None, help='JSON {"rotation_deg": [...], "translation": [...]}')
    p.add_argument("--pairs", default=None, help="pair table: with --root, errors against the renderer truth too")
    p.add_argument("--root", default=None, help="scene root (scenes with a truth/ model get renderer-truth errors)")
    p.add_argument("--select", action="store_true", help="select hyperparameters from OUT_DIR/failure_rates.csv")
    p.add_argument("--metric", default="mean_failure", help="selection metric: mean_failure or a rate column")


def run(args) -> int:
    import pandas as pd

    from nre.estimators.rows import read
    from nre.eval import metrics as E
    from nre.eval.tables import write_table

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.select:
        rates = E.read_rates(out / "failure_rates.csv")
        try:
            sel = E.select(rates, args.metric)
        except ValueError as e:
            print(f"nre evaluate --select: {e}", file=sys.stderr)
            return 2
        write_table(sel, out / "selection")
        print(sel[["features", "estimator", "stage", "paper", "fair"]].to_string(index=False))
        return 0
    if not args.rows:
        print("nre evaluate: --rows is required (or --select)", file=sys.stderr)
        return 2
    thr = json.loads(args.thresholds) if args.thresholds else E.DEFAULT_THRESHOLDS
    df = E.prepare(read(args.rows))
    if args.pairs and args.root:
        df = E.truth_errors(df, pd.read_csv(args.pairs, dtype={"pair_id": str}), args.root)
    df.to_parquet(out / "rows.parquet", index=False)
    (out / "thresholds.json").write_text(json.dumps(thr, sort_keys=True))
    rates = E.failure_rates(df, thr)
    write_table(rates, out / "failure_rates")
    print(f"{len(df)} rows, {len(rates)} rate cells -> {out}")
    return 0
