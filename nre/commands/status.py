"""``nre status RUN``: where a run stands, from its record, logs and outputs (``nre.workflow.status``)."""

from __future__ import annotations

HELP = "where a run stands: jobs done / running / failed / pending per stage, pairs, ETAs, the report"
DESCRIPTION = (
    "Reads the run folder (a config's `out`, e.g. work/quick): logs/run.json and logs/run_events.jsonl written by the "
    "workflow, each job's log (its last progress line: counts and ETA; a failed job's error line) and the outputs. "
    "Prints per stage the jobs done / running / failed / pending and the pairs done / total, a line per running job "
    "(ETA) and per failed job (its error, its log), the overall progress and where the report is. Run it from the "
    "folder Snakemake runs in, while the run goes or after it."
)


def add_arguments(p):
    p.add_argument("run", help="the run folder (the config's out, e.g. work/quick)")
    p.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=10.0,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (default 10) until the run ends; Ctrl-C stops watching, not the run",
    )


def run(args) -> int:
    from nre.workflow.status import format_status, read_status, watch

    if args.watch is None:
        print(format_status(read_status(args.run)))
        return 0
    try:
        watch(args.run, max(1.0, args.watch))
    except KeyboardInterrupt:
        pass
    return 0
