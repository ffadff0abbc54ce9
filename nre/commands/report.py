"""``nre report``: the HTML report of an evaluation folder."""

from __future__ import annotations

HELP = "write the self-contained HTML report"


def add_arguments(p):
    p.add_argument("--eval-dir", required=True)
    p.add_argument("--pairs", required=True)
    p.add_argument("--config-name", default="")
    p.add_argument("--out", required=True)


def run(args) -> int:
    from nre.eval.report import build

    build(args.eval_dir, args.pairs, args.config_name, args.out)
    print(f"wrote {args.out}")
    return 0
