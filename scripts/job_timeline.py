"""Where a workflow run's wall time went, from Snakemake's own logs (``.snakemake/log/*.snakemake.log``).

For every job: start, end (Snakemake's timestamps, 1 s resolution), rule and wildcards; then per rule the number of
jobs, their summed duration and the share of the run's wall time, and the idle share of the cores (wall x cores minus
the summed job time, counting every job as one core except those given with ``--wide RULE=THREADS``).

Usage: python scripts/job_timeline.py LOG [LOG ...] [--cores 2] [--jobs] [--wide maps=2 timing_stages=2 ...]
Several logs (a run stopped and restarted) are merged; wall time is then the sum of each log's span.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from datetime import datetime

STAMP = re.compile(r"\[(\w{3} \w{3}\s+\d+ [\d:]+ \d{4})\]")
RULE = re.compile(r"(?:local)?rule (\w+):")
JOBID = re.compile(r"\s+jobid: (\d+)")
WILDCARDS = re.compile(r"\s+wildcards: (.*)")
FINISHED = re.compile(r"Finished jobid: (\d+)")


def parse(path: str) -> tuple[list[dict], float]:
    """Jobs of one log (finished ones only) and the log's wall span in seconds."""
    start, rule, wild, end = {}, {}, {}, {}
    ts = cur = last = None
    first = latest = None
    for line in open(path, encoding="utf-8", errors="replace"):
        m = STAMP.match(line)
        if m:
            ts = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            first = first or ts
            latest = ts
            continue
        m = RULE.match(line)
        if m:
            cur = m.group(1)
            continue
        m = JOBID.match(line)
        if m and cur:
            start[m.group(1)], rule[m.group(1)], last, cur = ts, cur, m.group(1), None
            continue
        m = WILDCARDS.match(line)
        if m and last:
            wild[last] = m.group(1)
            continue
        m = FINISHED.match(line)
        if m:
            end[m.group(1)] = ts
    jobs = [
        {"rule": rule[j], "wildcards": wild.get(j, ""), "start": start[j], "end": end[j]}
        for j in start
        if j in end and rule[j] != "all"
    ]
    span = (latest - first).total_seconds() if first else 0.0
    return jobs, span


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--jobs", action="store_true", help="list every job too")
    ap.add_argument("--wide", nargs="*", default=[], help="RULE=THREADS for rules that use several cores")
    args = ap.parse_args()
    wide = {k: int(v) for k, v in (w.split("=") for w in args.wide)}
    jobs, wall = [], 0.0
    for path in args.logs:
        j, span = parse(path)
        jobs += j
        wall += span
    if not jobs:
        raise SystemExit("no finished job in these logs")
    t0 = min(j["start"] for j in jobs)
    if args.jobs:
        for j in sorted(jobs, key=lambda j: j["start"]):
            s, e = (j["start"] - t0).total_seconds(), (j["end"] - t0).total_seconds()
            print(f"{s:8.0f} {e:8.0f} {e - s:7.0f}  {j['rule']} {j['wildcards']}")
    per = defaultdict(lambda: [0, 0.0, 0.0])
    for j in jobs:
        d = (j["end"] - j["start"]).total_seconds()
        per[j["rule"]][0] += 1
        per[j["rule"]][1] += d
        per[j["rule"]][2] += d * wide.get(j["rule"], 1)
    busy = sum(v[2] for v in per.values())
    print(f"wall {wall:.0f} s ({wall / 60:.1f} min) on {args.cores} cores, {len(jobs)} finished jobs")
    print(f"{'rule':20s} {'jobs':>5s} {'job-s':>9s} {'core-s':>9s} {'share of core time':>20s}")
    for r, (n, d, c) in sorted(per.items(), key=lambda kv: -kv[1][2]):
        print(f"{r:20s} {n:5d} {d:9.0f} {c:9.0f} {100 * c / max(wall * args.cores, 1):19.1f}%")
    idle = wall * args.cores - busy
    print(f"{'(idle cores)':20s} {'':5s} {'':9s} {idle:9.0f} {100 * idle / max(wall * args.cores, 1):19.1f}%")


if __name__ == "__main__":
    main()
