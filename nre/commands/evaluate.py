"""``nre evaluate``: result rows -> evaluated rows (with renderer-truth errors where available) and failure rates;
``nre evaluate --select``: failure rates -> the selected hyperparameters under both protocols
(``nre.eval.outputs.evaluate_rows`` / ``select_settings``)."""

from __future__ import annotations

from nre.commands._args import info_option, json_option

HELP = "evaluate result rows (failure rates per setting) or select hyperparameters (--select)"


def add_arguments(p):
    p.add_argument("--rows", nargs="+", help="result row files (parquet, from nre estimate)")
    p.add_argument("--out-dir", required=True, help="evaluation folder (rows.parquet, failure_rates.*, selection.*)")
    p.add_argument("--thresholds", default=None, help='JSON {"rotation_deg": [...], "translation": [...]}')
    p.add_argument("--pairs", default=None, help="pair table: with --root, errors against the renderer truth too")
    p.add_argument("--root", default=None, help="scene root (scenes with a truth/ model get renderer-truth errors)")
    p.add_argument("--select", action="store_true", help="select hyperparameters from OUT_DIR/failure_rates.csv")
    p.add_argument("--metric", default="mean_failure", help="selection metric: mean_failure or a rate column")
    p.add_argument("--info", default=None, help="study information (JSON or file): display names, order, final stages")


def run(args) -> int:
    from nre.eval.outputs import evaluate_rows, select_settings

    if args.select:
        select_settings(eval_dir=args.out_dir, metric=args.metric, info=info_option(args.info))
        return 0
    evaluate_rows(
        rows=args.rows,
        out_dir=args.out_dir,
        thresholds=json_option(args.thresholds, "--thresholds"),
        pairs=args.pairs,
        root=args.root,
        info=info_option(args.info),
    )
    return 0
