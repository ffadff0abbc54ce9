"""Where a run stands, in one place: ``nre status work/<run>``, and what the terminal says when a run starts and ends.

The record of a run, in its folder (OUT):

- ``logs/run.json``, written when the run starts (the Snakefile's ``onstart`` calls ``on_start``): the jobs of the
  run (rule, wildcards, outputs, logs, whether each had to run), the Snakemake process, the start time, the chunk
  count; ``on_success`` / ``on_error`` add the end and the result (finished / failed / interrupted).
- ``logs/run_events.jsonl``: a line per job started, finished or failed, as Snakemake's logger reports them.
- each job's log (``logs/**``): its progress lines (``nre.progress``: counts and ETA) or its error line.

``read_status(run)`` puts these together with the outputs on disk (a job of an earlier run is done when its outputs
are there) and ``format_status`` prints one table: per stage (rule) the jobs done / running / failed / pending and
the pairs done / total, then a line per running job (counts, ETA from its last progress line) and per failed job
(its error line, its log), the overall progress and where the report is. A folder without ``run.json`` (a run with
``--no-hooks``) is read from its logs alone.

The terminal (``on_start`` puts a filter on the stream handler of Snakemake's logger; its log file under
.snakemake/log keeps every message): a failed job is one line naming its log and its error, not Snakemake's block
with the shell command and the exception; Ctrl-C ends with one line (the killed jobs' errors, "Terminating
processes", the WorkflowError are left out); a failed run ends with one line per failed job, a finished run with the
report's path.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from nre.errors import InputError
from nre.progress import duration, parse_count, parse_progress

RUN_FILE = "logs/run.json"
EVENTS_FILE = "logs/run_events.jsonl"
REPORT = "report.html"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ [\w.]+: (.*)$")  # nre.cli's log format
_TAIL_BYTES = 65536
_ERROR = re.compile(r"^(nre [\w-]+: |\w+(Error|Exception|Interrupt)\b)")  # nre.cli's error line, an exception's


# ---------------------------------------------------------------------------------------------------- reading a run
@dataclass
class JobStatus:
    rule: str
    wildcards: dict = field(default_factory=dict)
    logs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    state: str = "pending"  # done / running / failed / pending / stopped (started, never finished: interrupted)
    n: int | None = None
    total: int | None = None
    unit: str = ""
    counts: dict = field(default_factory=dict)
    eta: float | None = None  # seconds left, from the last progress line and its time
    at: float | None = None  # when the last progress line was logged
    error: str = ""  # the log's error line of a failed job

    @property
    def label(self) -> str:
        words = [f"chunk {v}" if k == "chunk" else str(v) for k, v in self.wildcards.items()]
        return " ".join([self.rule, *words])


@dataclass
class RunStatus:
    run_dir: Path
    state: str  # running / finished / failed / interrupted / stopped / unknown
    jobs: list
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    host: str = ""
    now: float = 0.0

    @property
    def report(self) -> Path:
        return self.run_dir / REPORT


def _tail_lines(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = data.splitlines()
    return lines[1:] if size > _TAIL_BYTES else lines


def _stamp(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return None


def read_log(path: Path, now: float | None = None) -> dict:
    """What a job's log says: its last progress line (``nre.progress.parse_progress``; a plain count when there is
    none), the ETA left now (the line's ETA minus the time since it was logged) and ``error``: the last line when it
    is not a timestamped log line (``nre <command>: <problem>``, a traceback's last line)."""
    now = time.time() if now is None else now
    lines = [ln for ln in _tail_lines(path) if ln.strip()]
    info: dict = {}
    count = None
    for ln in reversed(lines):
        m = _STAMP.match(ln)
        if not m:
            continue
        p = parse_progress(m[2])
        if p:
            info = p
            info["at"] = t = _stamp(m[1])
            if p["eta"] is not None and t is not None:
                info["eta"] = max(0.0, p["eta"] - max(0.0, now - t))
            break
        count = count or parse_count(m[2])
    info = info or count or {}
    if lines and not _STAMP.match(lines[-1]):
        info["error"] = " ".join(lines[-1].split())
    return info


def _alive(pid: int | None, host: str) -> bool:
    if not pid or (host and host != socket.gethostname()):
        return bool(pid)  # another machine's process (a cluster's login node): trust the missing end record
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmd = Path(f"/proc/{pid}/cmdline")
    return not cmd.exists() or b"snakemake" in cmd.read_bytes()


def _events(path: Path) -> dict[int, str]:
    last = {}
    try:
        text = path.read_text()
    except OSError:
        return last
    for ln in text.splitlines():
        try:
            e = json.loads(ln)
            last[int(e["jobid"])] = e["event"]
        except (ValueError, KeyError, TypeError):
            continue  # a line being written
    return last


def _n_pairs(run: Path) -> int | None:
    try:
        with open(run / "pairs.csv", "rb") as f:
            return max(0, sum(1 for _ in f) - 1)
    except OSError:
        return None


def _outputs_done(outputs: list, since: float | None) -> bool:
    try:
        times = [os.stat(o).st_mtime for o in outputs]
    except OSError:
        return False
    return bool(times) and (since is None or min(times) >= since - 1)


def read_status(run_dir: str | Path, now: float | None = None) -> RunStatus:
    """The status of the run in ``run_dir`` (see the module doc)."""
    from nre.workflow.chunks import chunk_slice

    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"{run}: no such run folder (a config's `out`, e.g. work/quick)")
    now = time.time() if now is None else now
    try:
        info = json.loads((run / RUN_FILE).read_text())
    except (OSError, ValueError):
        return _status_from_logs(run, now)
    started, pid, host = info.get("started"), info.get("pid"), info.get("host", "")
    ended, result = info.get("ended"), info.get("result")
    alive = ended is None and _alive(pid, host)
    state = result or ("running" if alive else "stopped")
    if not info.get("jobs"):  # Snakemake's DAG could not be read when the run started: the logs say the rest
        fallback = _status_from_logs(run, now)
        return RunStatus(run, state, fallback.jobs, started, ended, pid, host, now)
    events = _events(run / EVENTS_FILE)
    chunks, n_pairs = info.get("chunks"), _n_pairs(run)
    jobs = []
    for j in info.get("jobs", []):
        js = JobStatus(j["rule"], j.get("wildcards", {}), j.get("log", []), j.get("output", []))
        ev = events.get(int(j["jobid"]))
        if ev == "error":
            js.state = "failed"
        elif ev == "finish" or (ev is None and not j.get("needrun", True)):
            js.state = "done"
        elif ev in ("start", "stopped"):  # stopped: killed by Ctrl-C
            js.state = "running" if alive and ev == "start" else "stopped"
        elif _outputs_done(js.outputs, started):
            js.state = "done"
        if js.logs and (js.state != "pending" or started is None) and Path(js.logs[0]).exists():
            if js.state != "done" or ev is not None or Path(js.logs[0]).stat().st_mtime >= (started or 0):
                _apply_log(js, read_log(Path(js.logs[0]), now))
        if js.total is None and "chunk" in js.wildcards and chunks and n_pairs is not None:
            sl = chunk_slice(n_pairs, f"{js.wildcards['chunk']}/{chunks}")
            js.total, js.unit = sl.stop - sl.start, js.unit or "pairs"
        if js.state == "done" and js.total is not None:
            js.n = js.total
        jobs.append(js)
    return RunStatus(run, state, jobs, started, ended, pid, host, now)


def _apply_log(js: JobStatus, log: dict) -> None:
    if js.state == "failed":
        js.error = log.get("error", "")
    if "n" in log:
        js.n, js.unit, js.counts = log["n"], log["unit"], log["counts"]
        js.total = log["total"] if log["total"] is not None else (log["n"] if log.get("final") else None)
        js.eta = log["eta"] if js.state == "running" else None
        js.at = log.get("at")


def _status_from_logs(run: Path, now: float) -> RunStatus:
    """A run folder without run.json: one job per log; failed when it ends with an error (``nre <command>: ...``,
    a traceback's last line), running while its last progress line is short of its total and was written in the
    last 10 minutes (stopped when older), else done."""
    jobs = []
    for log in sorted((run / "logs").rglob("*.log")):
        rel = log.relative_to(run / "logs")
        js = JobStatus(rel.parts[0].removesuffix(".log"), {} if len(rel.parts) == 1 else {"job": log.stem}, [str(log)])
        info = read_log(log, now)
        if _ERROR.match(info.get("error", "")):
            js.state = "failed"
        elif "n" in info and not info.get("final") and info["total"] is not None and info["n"] < info["total"]:
            js.state = "running" if now - log.stat().st_mtime < 600 else "stopped"
        else:
            js.state = "done"
        _apply_log(js, info)
        jobs.append(js)
    state = "running" if any(j.state == "running" for j in jobs) else "unknown"
    return RunStatus(run, state, jobs, now=now)


# ---------------------------------------------------------------------------------------------------- the table
def _shown(path) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)


def _clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "?"


def _count(n: int) -> str:
    return str(n) if n else "-"


def _progress(n, total, unit) -> str:
    if total is None:
        return f"{n} {unit}".strip() if n is not None else ""
    pct = f" ({100 * (n or 0) / total:.0f}%)" if total else ""
    return f"{n or 0}/{total}{' ' + unit if unit else ''}{pct}"


def format_status(st: RunStatus) -> str:
    """The table of ``read_status`` (see the module doc)."""
    since = f"started {_clock(st.started)}, {duration(st.now - st.started)} ago" if st.started else ""
    head = {
        "running": f"running (snakemake pid {st.pid}, {since})" if st.pid else "running",
        "finished": f"finished at {_clock(st.ended)}",
        "failed": f"ended with failed jobs at {_clock(st.ended)}",
        "interrupted": f"interrupted at {_clock(st.ended)} (rerun the same command to resume)",
        "stopped": f"stopped: snakemake pid {st.pid} is gone without an end record (killed?); rerun to resume",
        "unknown": "no run record (logs/run.json): read from the logs",
    }[st.state]
    out = [f"run {_shown(st.run_dir)}: {head}"]
    stages: dict[str, list] = {}
    for j in st.jobs:
        stages.setdefault(j.rule, []).append(j)
    rows = [("stage", "done", "running", "failed", "pending", "progress")]
    for rule, jobs in stages.items():
        c = {s: sum(j.state == s for j in jobs) for s in ("done", "running", "failed", "pending", "stopped")}
        totals = [j.total for j in jobs]
        units = {j.unit for j in jobs if j.unit}
        prog = ""
        if totals and all(t is not None for t in totals) and len(units) == 1:
            prog = _progress(sum(j.n or 0 for j in jobs), sum(totals), units.pop())
        done = f"{c['done']}/{len(jobs)}"
        rows.append((rule, done, _count(c["running"]), _count(c["failed"]), _count(c["pending"] + c["stopped"]), prog))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 5)] + [r[5]]
        out.append("  ".join(cells).rstrip())
    for j in st.jobs:
        log = _shown(j.logs[0]) if j.logs else ""
        if j.state in ("running", "stopped"):
            tallies = [f"{v} {k}" for k, v in j.counts.items() if v]
            if j.n is None:
                what = "started"
            elif j.total:
                what = f"{j.n}/{j.total} {j.unit} ({', '.join([f'{100 * j.n / j.total:.0f}%', *tallies])})"
            else:
                what = f"{j.n} {j.unit}" + (f" ({', '.join(tallies)})" if tallies else "")
            if j.state == "running" and j.n is not None and j.at and st.now - j.at >= 15:
                what += f", logged {duration(st.now - j.at)} ago"  # jobs log their counts every 30 s at most
            eta = f", ETA {duration(j.eta)}" if j.state == "running" and j.eta is not None and j.eta > 0 else ""
            out.append(f"{j.state:8s} {j.label}: {what}{eta}  [{log}]")
        elif j.state == "failed":
            out.append(f"failed   {j.label}: {j.error or 'see its log'}  [{log}]")
    n = len(st.jobs)
    if n:
        done = sum(j.state == "done" for j in st.jobs)
        line = f"overall  {done} of {n} jobs done ({100 * done / n:.0f}%)"
        pairs = [j for j in st.jobs if "chunk" in j.wildcards and j.unit == "pairs" and j.total is not None]
        if pairs:
            n_done, n_all = sum(j.n or 0 for j in pairs), sum(j.total for j in pairs)
            line += f"; pairs through the chunk jobs (maps, estimators): {_progress(n_done, n_all, '')}"
        out.append(line)
    rep = st.report
    if rep.exists():
        out.append(f"report   {_shown(rep)} (written {_clock(rep.stat().st_mtime)})")
    else:
        out.append(f"report   {_shown(rep)} (not written yet)")
    return "\n".join(out)


def watch(run_dir: str | Path, interval: float = 10.0, stream=None) -> None:
    """``format_status`` every ``interval`` seconds (the screen cleared on a terminal) until the run ends."""
    stream = stream or sys.stdout
    while True:
        st = read_status(run_dir)
        text = format_status(st)
        if stream.isatty():
            stream.write("\033[H\033[J")
        stream.write(text + "\n" + ("" if stream.isatty() else "\n"))
        stream.flush()
        if st.state != "running":
            return
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------------- the hooks
SNAKEMAKE_LOGGER = "snakemake.logging"
# Ctrl-C (SIGINT to the terminal's process group), SIGTERM (to the group, or to Snakemake: it lets the jobs finish)
_INTERRUPTED = (
    "Signals.SIGINT",
    "Signals.SIGTERM",
    "Terminating processes on user request",
    "Will exit after finishing currently running jobs",
)
_NOISE_AFTER_FAILURE = ("At least one job did not complete successfully", "Complete log(s):")
_CONSOLE: Console | None = None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def dag_jobs(workflow) -> list[dict]:
    """The jobs of the run (Snakemake's DAG, in dependency order): id, rule, wildcards, outputs, logs (absolute
    paths), whether it had to run. The target rule (no output, no log) is left out."""
    dag = workflow.dag
    try:
        order = [j for level in dag.toposorted() for j in sorted(level, key=dag.jobid)]
    except Exception:  # another Snakemake's DAG: the ids' order
        order = sorted(dag.jobs, key=dag.jobid)
    out = []
    for job in order:
        if not job.output and not job.log:
            continue
        out.append(
            dict(
                jobid=int(dag.jobid(job)),
                rule=job.rule.name,
                wildcards={k: str(v) for k, v in dict(job.wildcards_dict).items()},
                output=[os.path.abspath(str(f)) for f in job.output],
                log=[os.path.abspath(str(f)) for f in job.log],
                needrun=bool(dag.needrun(job)),
            )
        )
    return out


class Console:
    """The run's journal (``EVENTS_FILE``, from every record of Snakemake's logger) and the filter of its terminal
    output (see the module doc)."""

    def __init__(self, out: str | Path, jobs: list[dict]):
        self.out = Path(out)
        self.jobs = {j["jobid"]: j for j in jobs}
        self.failed: list[int] = []
        self.announced: set = set()
        self.started: set[int] = set()
        self.finished: set[int] = set()
        self.interrupted = False
        self.ended = False
        self._lock = threading.Lock()
        self.logger = logging.getLogger(SNAKEMAKE_LOGGER)

    # -- installed on Snakemake's logger
    def install(self) -> bool:
        """Journal every record; filter the terminal's (Snakemake 9's DefaultStreamHandler; with a logger plugin
        writing to the terminal instead, its output is left alone). SIGINT marks the run interrupted."""
        self.logger.addFilter(self.journal)
        handlers = [h for h in self.logger.handlers if getattr(h, "name", "") == "DefaultStreamHandler"]
        for h in handlers:
            h.addFilter(self.terminal)
        try:
            previous = signal.getsignal(signal.SIGINT)

            def on_sigint(signum, frame):
                self.interrupted = True
                if callable(previous):
                    return previous(signum, frame)
                raise KeyboardInterrupt

            signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the main thread
            pass
        return bool(handlers)

    def say(self, text: str, level: int = logging.INFO) -> None:
        self.logger.log(level, text, extra={"nre_console": True})

    def _record(self, event: str, jobid) -> None:
        try:
            jobid = int(jobid)
        except (TypeError, ValueError):
            return
        with self._lock:
            {"start": self.started, "finish": self.finished}.get(event, set()).add(jobid)
            if event == "error":
                self.failed.append(jobid)
            try:
                with open(self.out / EVENTS_FILE, "a") as f:
                    f.write(json.dumps({"t": round(time.time(), 1), "event": event, "jobid": jobid}) + "\n")
            except OSError:
                pass

    def journal(self, record: logging.LogRecord) -> bool:
        event = getattr(record, "event", None)
        text = str(record.msg or "")
        if any(m in text for m in _INTERRUPTED):
            self.interrupted = True  # also when a job killed by Ctrl-C is reported before Snakemake's own SIGINT
        if event == "job_info":
            self._record("start", getattr(record, "jobid", None))
        elif event == "job_finished":
            self._record("finish", getattr(record, "job_id", None))
        elif event == "job_error":
            self._record("stopped" if self.interrupted else "error", getattr(record, "jobid", None))
        return True

    def terminal(self, record: logging.LogRecord) -> bool:
        """What the terminal shows of a record (the log file gets it whole)."""
        if getattr(record, "nre_console", False):
            return True
        text = str(record.msg or "")
        if self.interrupted:
            return False  # Ctrl-C: on_error says it in one line
        event = getattr(record, "event", None)
        if event == "job_error":  # once per job (Snakemake repeats them when it stops)
            if getattr(record, "jobid", None) in self.announced:
                return False
            self.announced.add(getattr(record, "jobid", None))
            job = self.jobs.get(getattr(record, "jobid", None))
            logs = getattr(record, "log", None) or (job or {}).get("log", [])
            label = JobStatus(getattr(record, "rule_name", "?"), (job or {}).get("wildcards", {})).label
            self.say(self._failure(label, logs), logging.ERROR)
            return False
        if event == "error" and "CalledProcessError" in text:
            return False  # the shell command's exit status: the job_error line that follows names its log
        return not (self.ended and any(text.startswith(n) or n in text for n in _NOISE_AFTER_FAILURE))

    @staticmethod
    def _failure(label: str, logs: list) -> str:
        reason = read_log(Path(logs[0])).get("error", "") if logs else ""
        where = f" [log: {_shown(logs[0])}]" if logs else ""
        return f"failed: {label}: {reason[:300] or 'see its log'}{where}"

    # -- the ends of a run
    def end(self, result: str) -> None:
        self.ended = True
        try:
            path = self.out / RUN_FILE
            info = json.loads(path.read_text())
            info.update(ended=time.time(), result=result)
            _write_json(path, info)
        except (OSError, ValueError):
            pass


def on_start(workflow, out: str, chunks: int | None = None) -> None:
    """The Snakefile's ``onstart``: write ``RUN_FILE``, start the journal, filter the terminal, say how to watch."""
    global _CONSOLE
    logs = Path(out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        jobs = dag_jobs(workflow)
    except Exception:  # noqa: BLE001 - the status then reads the logs alone
        jobs = []
    info = dict(pid=os.getpid(), host=socket.gethostname(), started=time.time(), workdir=os.getcwd(), chunks=chunks)
    _write_json(Path(out) / RUN_FILE, {**info, "jobs": jobs})
    (Path(out) / EVENTS_FILE).write_text("")
    _CONSOLE = Console(out, jobs)
    _CONSOLE.install()
    _CONSOLE.say(f"Progress of each job: nre status {out} [--watch]; logs in {out}/logs/")


def on_success(workflow, out: str) -> None:
    """The Snakefile's ``onsuccess``: the run's end recorded; where the report is."""
    c = _CONSOLE or Console(out, [])
    c.end("finished")
    report = Path(out) / REPORT
    if report.exists():
        c.say(f"Done. Report: {_shown(report)} (tables and figures in {_shown(Path(out) / 'eval')})")
    else:
        c.say(f"Done. Outputs in {_shown(out)}")


def on_error(workflow, out: str) -> None:
    """The Snakefile's ``onerror``: one line after Ctrl-C; else one line per failed job with its error and log."""
    c = _CONSOLE or Console(out, [])
    if c.interrupted:
        c.end("interrupted")
        stopped = len(c.started - c.finished) - len(set(c.failed))
        c.say(
            f"Interrupted: {max(stopped, 0)} running job(s) stopped, {len(c.finished)} finished in this run; "
            "rerun the same command to resume",
            logging.WARNING,
        )
        return
    c.end("failed")
    failed = list(dict.fromkeys(c.failed))
    if not failed:  # a Snakemake without the journal: its scheduler's failed jobs
        sched = getattr(workflow, "scheduler", None)
        for job in getattr(sched, "failed", ()) or ():
            c.say(c._failure(JobStatus(job.rule.name, dict(job.wildcards_dict)).label, [str(f) for f in job.log]))
        return
    c.say(
        f"{len(failed)} job(s) failed; fix the cause and rerun the same command (finished jobs are kept):",
        logging.ERROR,
    )
    for jobid in failed:
        job = c.jobs.get(jobid, {})
        label = JobStatus(job.get("rule", "?"), job.get("wildcards", {})).label
        c.say("  " + c._failure(label, job.get("log", [])).removeprefix("failed: "), logging.ERROR)
