"""Are two runs' results identical, timing aside? Compares two evaluation folders (compare_eval_dirs).

Usage: python scripts/compare_runs.py work/quick/eval work/quick_slurm/eval
Prints one line per difference and exits 1 if there is any, else prints what was compared and exits 0.
"""

from __future__ import annotations

import argparse
import sys

from nre.reference.compare import compare_eval_dirs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="first evaluation folder (<out>/eval)")
    p.add_argument("b", help="second evaluation folder")
    args = p.parse_args(argv)
    diffs = compare_eval_dirs(args.a, args.b)
    for d in diffs:
        print(d)
    if not diffs:
        print(f"identical (timing aside): {args.a} and {args.b}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
