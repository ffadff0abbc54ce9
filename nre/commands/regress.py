"""``nre regress``: compare a run with its committed reference (or update the reference on purpose, or measure
run-to-run variation)."""

from __future__ import annotations

import json
import sys

HELP = "check results against the committed reference within tolerance (--update: replace it on purpose)"


def add_arguments(p):
    p.add_argument("--reference", help="reference folder, e.g. results/quick")
    p.add_argument("--current", help="evaluation folder of the run, e.g. work/quick/eval")
    p.add_argument("--config", help="the config file the reference was made from (its hash must match)")
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
    p.add_argument("--out", help="write the verdict to this file (also on success)")


def run(args) -> int:
    from nre.reference.regress import check, update, variation

    if args.measure:
        v = variation(args.measure)
        print(v.to_string(index=False))
        if args.out:
            v.to_csv(args.out, index=False)
        return 0
    if not (args.reference and args.current and args.config):
        print("nre regress: --reference, --current and --config are required", file=sys.stderr)
        return 2
    if args.update:
        if not args.pairs:
            print("nre regress: --update needs --pairs", file=sys.stderr)
            return 2
        update(args.reference, args.current, args.config, args.pairs, rows=args.rows)
        print(f"reference {args.reference} updated from {args.current}")
        return 0
    tol = json.loads(args.tolerances) if args.tolerances else None
    ok, msg = check(args.reference, args.current, args.config, args.abs_tol, args.pairs_tol, args.pairs, tol)
    text = ("OK: " if ok else "REGRESSION: ") + msg
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    return 0 if ok else 1
