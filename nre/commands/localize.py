"""``nre localize``: estimate the target pose of one pair (official NRE sample npz) with several estimators
(``nre.estimators.localize.localize``)."""

from __future__ import annotations

from nre.commands._args import json_option, named_json, run_args

HELP = "estimate the target pose of one pair (official NRE sample npz) with one or more estimators"
DESCRIPTION = (
    "Computes the pair's maps in memory, then runs each estimator on them: at its default setting, or over every "
    "setting of its grid when one is given (--grid, or a --config entry), and prints the rotation and translation "
    "errors against the pair's target pose. The pair file is an npz with the keys source_image, target_image "
    "(image paths, relative to the npz's folder), p3D (N x 3 world points seen in the source), source_P, target_P "
    "(4 x 4 world-to-camera), source_K, target_K (3 x 3) and optionally source_dist, target_dist (OpenCV k1 k2 p1 "
    "p2)."
)


def add_arguments(p):
    p.add_argument(
        "pair",
        help="pair file (npz: source_image, target_image, p3D, source_P, target_P, source_K, target_K, source_dist, "
        "target_dist)",
    )
    p.add_argument(
        "--estimator",
        nargs="+",
        default=None,
        help="estimator names or config labels, or 'all' for every registered one the inputs allow "
        "(default: the --config's estimators, else nre_c2f)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="workflow config (e.g. config/config.yaml): its estimators: entries {class, grid, options} and its "
        "features: (the table1_features backend unless --features)",
    )
    p.add_argument("--options", nargs="+", metavar="NAME=JSON", help="options, e.g. fpr='{\"timeout_s\": 60}'")
    p.add_argument("--grid", nargs="+", metavar="NAME=JSON", help="a sweep, e.g. re_gauss='{\"sigma\": [2, 5]}'")
    p.add_argument("--features", default=None, help="feature backend (default: the config's table1_features, dsift)")
    p.add_argument("--features-options", default=None, help="JSON options of the backend (default: the config's)")
    run_args(p)
    p.add_argument("--json", help="write the results as JSON")


def run(args) -> int:
    from nre.estimators.localize import localize

    result = localize(
        pair=args.pair,
        estimators=args.estimator,
        config=args.config,
        options=named_json(args.options, "--options"),
        grid=named_json(args.grid, "--grid"),
        features=args.features,
        features_options=json_option(args.features_options, "--features-options"),
        max_points=args.max_points,
        seed=args.seed,
        threads=args.threads,
        json_out=args.json,
    )
    print(result.table())
    return 0
