"""``nre tables``: the paper's tables, curves, sweep plots and diagnostics from an evaluation folder (``nre
evaluate`` then ``nre evaluate --select``); optionally Fig. 4-style map pictures of a few pairs
(``nre.eval.outputs.write_outputs`` decides what is written)."""

from __future__ import annotations

from nre.commands._args import features_args, info_option, json_option, pairs_args, recall_option

HELP = "write Tables 1-2, summary, diagnostics, Fig. 5 curves, sweep plots (and Fig. 4 map pictures)"


def add_arguments(p):
    p.add_argument("--eval-dir", required=True, help="folder with rows.parquet, failure_rates.csv, selection.csv")
    p.add_argument("--out-dir", default=None, help="default: the evaluation folder")
    p.add_argument("--thresholds", default=None, help="JSON; default: EVAL_DIR/thresholds.json")
    p.add_argument(
        "--info",
        default=None,
        help="study information: JSON or a JSON file (the plan's: display names, units, order, stages, Table 2, seeds,"
        " reference, Table 1 backends); default: derived from the rows",
    )
    p.add_argument(
        "--table1-features", default=None, help="backend(s) of Table 1, comma-separated, when --info does not name them"
    )
    p.add_argument("--reference", default=None, help="Table 1 reference estimator (default: --info's, else the first)")
    p.add_argument(
        "--recall-thresholds",
        default=None,
        help="JSON [[translation, rotation deg], ...] of the recalls (default [[0.25, 2], [0.5, 5], [5, 10]])",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the 95%% intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--map-pictures", type=int, default=0, help="Fig. 4 pictures for this many test pairs")
    p.add_argument(
        "--no-tables",
        action="store_true",
        help="only the map pictures (they need no results: the workflow draws them while the estimators run)",
    )
    pairs_args(p, required=False, chunk=False)
    features_args(p, default=None)
    p.add_argument("--max-points", type=int, default=1000, help="query point cap of the map pictures")


def run(args) -> int:
    from nre.eval.outputs import write_outputs

    write_outputs(
        eval_dir=args.eval_dir,
        out_dir=args.out_dir,
        thresholds=json_option(args.thresholds, "--thresholds"),
        table1_features=args.table1_features.split(",") if args.table1_features else None,
        reference=args.reference,
        bootstrap=args.bootstrap,
        seed=args.seed,
        tables=not args.no_tables,
        map_pictures=args.map_pictures,
        pairs=args.pairs,
        root=args.root,
        features=args.features,
        features_options=json_option(args.features_options, "--features-options"),
        max_points=args.max_points,
        info=info_option(args.info),
        recall_thresholds=recall_option(args.recall_thresholds),
    )
    return 0
