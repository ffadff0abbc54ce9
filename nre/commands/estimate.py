"""``nre estimate``: run one estimator (all its sweep settings) over the pairs of a chunk; one row per result
(``nre.estimators.runner.estimate_pairs``: failures recorded, a worker process with a real time-out, resume after
a crash from ``<out>.part``)."""

from __future__ import annotations

from nre.commands._args import features_args, json_option, pairs_args, run_args

HELP = "run an estimator over pairs and write the per-pair result rows (parquet)"


def add_arguments(p):
    pairs_args(p)
    p.add_argument("--maps-dir", required=True, help="directory of the per-pair map caches <pair_id>.npz (nre maps)")
    features_args(p)
    p.add_argument("--estimator", required=True, help="registered name or package.module:Class (nre estimators)")
    p.add_argument("--name", default=None, help="label of the estimator column (default: the registered name)")
    p.add_argument("--grid", default=None, help="JSON: hyperparameter -> list of values (default: the estimator's)")
    p.add_argument("--options", default="{}", help="JSON: fixed estimator options")
    p.add_argument("--repeat", type=int, default=0, help="K > 0: the K-th repeat of a randomised estimator (seeds)")
    run_args(p, threads=1)
    p.add_argument("--out", required=True, help="result rows (parquet); <out>.part holds the finished pairs meanwhile")
    p.add_argument(
        "--no-worker",
        action="store_true",
        help="run the pairs in this process (debugging): no real time-out, a crash of the estimator ends the job",
    )


def run(args) -> int:
    from nre.estimators.runner import estimate_pairs

    estimate_pairs(
        pairs=args.pairs,
        root=args.root,
        maps_dir=args.maps_dir,
        out=args.out,
        estimator=args.estimator,
        label=args.name,
        options=json_option(args.options, "--options", None),
        grid=json_option(args.grid, "--grid", None),
        features=args.features,
        features_options=json_option(args.features_options, "--features-options"),
        chunk=args.chunk,
        max_points=args.max_points,
        seed=args.seed,
        threads=args.threads,
        worker=not args.no_worker,
        repeat=args.repeat,
    )
    return 0
