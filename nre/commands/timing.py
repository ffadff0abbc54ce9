"""``nre timing``: Table 3, time and memory per stage and per estimator on a few test pairs
(``nre.eval.timing.timing_job``; ``--merge``: ``nre.eval.timing.merge_timings``)."""

from __future__ import annotations

from nre.commands._args import features_args, info_option, json_option, pairs_args, run_args

HELP = "measure time and memory per stage and per estimator on a few test pairs (Table 3)"


def add_arguments(p):
    pairs_args(p, required=False, chunk=False)
    features_args(p)
    p.add_argument(
        "--estimators",
        default="{}",
        help='JSON {label: {"cls": registered name, "grid": {...} or null, "options": {...}}}: timed at their default '
        "setting (the first of the grid if the default is not in it)",
    )
    p.add_argument("--n-pairs", type=int, default=10, help="time the first N test pairs of the table")
    run_args(p, threads=2)
    p.add_argument("--no-stages", action="store_true", help="time only the --estimators, not the pipeline stages")
    p.add_argument("--maps-dir", default=None, help="map caches <pair_id>.npz (nre maps); default: compute")
    p.add_argument("--merge", nargs="+", default=None, help="merge these timing CSVs into --out (no measurement)")
    p.add_argument("--out", required=True, help="per-pair timings (CSV); Table 3 (table3.*) goes next to it")
    p.add_argument("--info", default=None, help="with --merge: study information (JSON or file) for display names")


def run(args) -> int:
    from nre.errors import OptionError
    from nre.eval.timing import merge_timings, timing_job

    if args.merge:
        merge_timings(args.merge, args.out, info_option(args.info))
        return 0
    if not (args.pairs and args.root):
        raise OptionError("--pairs and --root are required (unless --merge)")
    timing_job(
        pairs=args.pairs,
        root=args.root,
        out=args.out,
        features=args.features,
        features_options=json_option(args.features_options, "--features-options"),
        estimators=json_option(args.estimators, "--estimators"),
        stages=not args.no_stages,
        n_pairs=args.n_pairs,
        max_points=args.max_points,
        seed=args.seed,
        threads=args.threads,
        maps_dir=args.maps_dir,
    )
    return 0
