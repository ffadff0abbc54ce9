"""``nre regress``: compare a run with its committed reference (or update the reference on purpose, or measure
run-to-run variation): ``nre.reference.regress.regress`` / ``update`` / ``measure``."""

from __future__ import annotations

from nre.commands._args import json_option

HELP = "check results against the committed reference within tolerance (--update: replace it on purpose)"


def add_arguments(p):
    p.add_argument("--reference", help="reference folder, e.g. results/quick")
    p.add_argument("--current", help="evaluation folder of the run, e.g. work/quick/eval")
    p.add_argument(
        "--config", nargs="+", help="the config file(s) of the run, layered in order (their study digest must match)"
    )
    p.add_argument(
        "--overrides",
        default=None,
        help="JSON of the run's Snakemake --config key=value settings, layered over the config files (the workflow "
        "passes them)",
    )
    p.add_argument("--pairs", help="pair table of the run (checked against the reference's; needed by --update)")
    p.add_argument("--abs-tol", type=float, default=None, help="absolute tolerance of a failure rate")
    p.add_argument("--pairs-tol", type=float, default=None, help="pairs allowed to flip per rate cell (default 1)")
    p.add_argument("--tolerances", default=None, help="JSON overriding nre.reference.regress.TOLERANCES")
    p.add_argument("--update", action="store_true", help="replace the reference with this run")
    p.add_argument(
        "--rows",
        choices=["auto", "full", "errors"],
        default="auto",
        help="with --update: copy every result row (full), only the per-pair errors (errors.parquet), or full up "
        "to 5 MB (auto, default)",
    )
    p.add_argument("--measure", nargs="+", default=None, help="evaluation folders of repeated runs: print variation")
    p.add_argument("--out", help="write the verdict (or the variation, CSV) to this file")


def run(args) -> int:
    from nre.errors import OptionError
    from nre.reference.regress import measure, regress, update

    if args.measure:
        print(measure(eval_dirs=args.measure, out=args.out).to_string(index=False))
        return 0
    if not (args.reference and args.current and args.config):
        raise OptionError("--reference, --current and --config are required")
    overrides = json_option(args.overrides, "--overrides")
    if args.update:
        if not args.pairs:
            raise OptionError("--update needs --pairs")
        update(args.reference, args.current, args.config, args.pairs, rows=args.rows, overrides=overrides)
        print(f"reference {args.reference} updated from {args.current}")
        return 0
    ok, text = regress(
        reference=args.reference,
        current=args.current,
        config=args.config,
        pairs=args.pairs,
        abs_tol=args.abs_tol,
        pairs_tol=args.pairs_tol,
        tolerances=json_option(args.tolerances, "--tolerances"),
        out=args.out,
        overrides=overrides,
    )
    print(text)
    return 0 if ok else 1
