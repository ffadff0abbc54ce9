"""``nre report``: the HTML report of an evaluation folder (``nre.eval.report.build``)."""

from __future__ import annotations

HELP = "write the self-contained HTML report"


def add_arguments(p):
    p.add_argument("--eval-dir", required=True, help="evaluation folder (nre evaluate, nre tables)")
    p.add_argument("--pairs", required=True, help="pair table (CSV, from nre pairs)")
    p.add_argument("--config-name", default="", help="title of the report")
    p.add_argument("--out", required=True, help="the HTML file")
    p.add_argument("--info", default=None, help="study information (JSON or file); default: EVAL_DIR/study.json")


def run(args) -> int:
    from nre.commands._args import info_option
    from nre.eval.report import build

    build(args.eval_dir, args.pairs, args.config_name, args.out, info=info_option(args.info))
    return 0
