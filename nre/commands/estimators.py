"""``nre estimators``: the registered estimators with their inputs, stages, default sweep grids and options
(``nre.estimators.listing.list_estimators``); exit status 1 when a plug-in under baselines/ failed to import."""

from __future__ import annotations

HELP = "list the registered estimators (baselines/) with their hyperparameter grids and options"


def add_arguments(p):
    p.add_argument("names", nargs="*", help="only these (registered names or package.module:Class)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from nre.estimators.listing import list_estimators

    listing = list_estimators(names=args.names, as_json=args.json)
    print(listing.text)
    return 1 if listing.import_errors and not args.json else 0
