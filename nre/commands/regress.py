"""``nre regress``: compare a run with its committed reference (or update the reference on purpose)."""

from __future__ import annotations

import sys

HELP = "check results against the committed reference within tolerance"


def add_arguments(p):
    p.add_argument("--reference", required=True, help="reference folder, e.g. results/quick")
    p.add_argument("--current", required=True, help="evaluation folder of the run, e.g. work/quick/eval")
    p.add_argument("--config", required=True, help="the config file the reference was made from")
    p.add_argument("--pairs", help="pair table of the run (for --update)")
    p.add_argument("--abs-tol", type=float, default=0.0)
    p.add_argument("--pairs-tol", type=float, default=1.0, help="pairs allowed to flip per cell")
    p.add_argument("--update", action="store_true", help="replace the reference with this run")
    p.add_argument("--out", help="write the verdict to this file (also on success)")


def run(args) -> int:
    from nre.regress import check, update

    if args.update:
        if not args.pairs:
            print("--update needs --pairs", file=sys.stderr)
            return 2
        update(args.reference, args.current, args.config, args.pairs)
        print(f"reference {args.reference} updated from {args.current}")
        return 0
    ok, msg = check(args.reference, args.current, args.config, args.abs_tol, args.pairs_tol)
    print(("OK: " if ok else "REGRESSION: ") + msg)
    if args.out:
        with open(args.out, "w") as f:
            f.write(("OK: " if ok else "REGRESSION: ") + msg + "\n")
    return 0 if ok else 1
