"""Where a run stands (nre status, nre.workflow.status) and what the terminal says when a run starts and ends: a fake
run folder (its record, journal, logs and outputs), the terminal filter on made-up Snakemake records, and a real
tiny run with a failing job, Ctrl-C and the resumed run."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, TINY_MD

from nre.cli import main
from nre.workflow import status as S

T0 = time.mktime(time.strptime("2026-03-02 10:00:00", "%Y-%m-%d %H:%M:%S"))


def _stamp(dt: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0 + dt)) + ",123"


def _fake_run(tmp_path: Path, result: str | None = None, pid: int = 4242) -> Path:
    """A run of 9 test pairs in 2 chunks, 10 minutes in: scenes and pairs done, maps chunk 0 done and chunk 1 at
    3/5 pairs, estimate lo_ransac chunk 0 done, nre_c2f chunk 0 failed, the others pending."""
    run = tmp_path / "run"
    logs = run / "logs"
    (logs / "maps").mkdir(parents=True)
    (logs / "estimate").mkdir()
    (run / "pairs.csv").write_text("pair_id\n" + "".join(f"p{i}\n" for i in range(9)))
    jobs = []

    def job(jobid, rule, wildcards, output, log, log_text=None):
        out = [str(run / o) for o in output]
        jobs.append(dict(jobid=jobid, rule=rule, wildcards=wildcards, output=out, log=[str(logs / log)], needrun=True))
        if log_text is not None:
            (logs / log).write_text(log_text)

    job(1, "scenes", {}, ["data/scenes.yaml"], "scenes.log", f"{_stamp(50)} nre.synth: [3/3] scene test_02: 9 s\n")
    job(2, "pairs", {}, ["pairs.csv"], "pairs.log", f"{_stamp(60)} nre.pairs: pairs: test: 9 -> pairs.csv\n")
    maps0 = f"{_stamp(100)} nre.maps: maps dsift chunk 0/2: 4 pairs in 40s, 4 computed -> maps/dsift\n"
    job(3, "maps", {"features": "dsift", "chunk": "0"}, ["maps/dsift/manifest0.csv"], "maps/dsift_0.log", maps0)
    maps1 = (
        f"{_stamp(120)} nre.maps: maps dsift chunk 1/2: 1/5 pairs, 0.05 pairs/s, 20s elapsed, ETA 1m20s\n"
        f"{_stamp(540)} nre.maps: maps dsift chunk 1/2: 3/5 pairs (1 failed), 0.0068 pairs/s, 7m20s elapsed, "
        "ETA 5m00s\n"
    )
    job(4, "maps", {"features": "dsift", "chunk": "1"}, ["maps/dsift/manifest1.csv"], "maps/dsift_1.log", maps1)
    done = f"{_stamp(200)} nre.estimate: estimate lo chunk 0/2: 4 pairs in 9s, 8 rows -> rows.parquet\n"
    job(
        5,
        "estimate",
        {"features": "dsift", "estimator": "lo", "chunk": "0"},
        ["rows/lo0.parquet"],
        "estimate/dsift_lo_0.log",
        done,
    )
    err = f"{_stamp(210)} nre.estimate: nre_c2f: 1 settings x 4 pairs\nnre estimate: maps/dsift/p1.npz: corrupt map\n"
    job(
        6,
        "estimate",
        {"features": "dsift", "estimator": "nre_c2f", "chunk": "0"},
        ["rows/c2f0.parquet"],
        "estimate/dsift_nre_c2f_0.log",
        err,
    )
    for jobid, (e, c) in enumerate([("lo", "1"), ("nre_c2f", "1")], 7):
        job(jobid, "estimate", {"features": "dsift", "estimator": e, "chunk": c}, [f"rows/{e}{c}.parquet"], "x.log")
    job(9, "report_html", {}, ["report.html"], "report.log")
    for o in ("data/scenes.yaml", "maps/dsift/manifest0.csv", "rows/lo0.parquet"):
        (run / o).parent.mkdir(parents=True, exist_ok=True)
        (run / o).write_text("x")
    info = dict(pid=pid, host="", started=T0, workdir=str(tmp_path), chunks=2, jobs=jobs)
    if result:
        info.update(ended=T0 + 600, result=result)
    (logs / "run.json").write_text(json.dumps(info))
    events = [("start", 1), ("finish", 1), ("start", 2), ("finish", 2), ("start", 3), ("start", 4), ("finish", 3)]
    events += [("start", 5), ("finish", 5), ("start", 6), ("error", 6)]
    (logs / "run_events.jsonl").write_text("".join(json.dumps({"event": e, "jobid": j}) + "\n" for e, j in events))
    return run


def test_status_of_a_running_run(tmp_path, monkeypatch):
    run = _fake_run(tmp_path)
    monkeypatch.setattr(S, "_alive", lambda pid, host: pid == 4242)
    st = S.read_status(run, now=T0 + 600)
    by = {j.label: j for j in st.jobs}
    assert st.state == "running" and [j.state for j in st.jobs].count("pending") == 3
    m1 = by["maps dsift chunk 1"]
    # the last progress line, its ETA less the minute since it was logged
    assert (m1.state, m1.n, m1.total, m1.counts, m1.eta) == ("running", 3, 5, {"failed": 1}, 240.0)
    assert by["estimate dsift nre_c2f chunk 0"].error == "nre estimate: maps/dsift/p1.npz: corrupt map"
    assert by["estimate dsift lo chunk 1"].total == 5  # a pending chunk job: its chunk of pairs.csv
    text = S.format_status(st)
    lines = text.splitlines()
    assert lines[0].startswith(f"run {run}: running (snakemake pid 4242, started ") and "10m00s ago" in lines[0]
    assert lines[1].split() == ["stage", "done", "running", "failed", "pending", "progress"]
    assert lines[2].split() == ["scenes", "1/1", "-", "-", "-", "3/3", "scenes", "(100%)"]
    assert lines[4].split() == ["maps", "1/2", "1", "-", "-", "7/9", "pairs", "(78%)"]
    assert lines[5].split() == ["estimate", "1/4", "-", "1", "2", "4/18", "pairs", "(22%)"]
    assert lines[6].split() == ["report_html", "0/1", "-", "-", "1"]
    running = "running  maps dsift chunk 1: 3/5 pairs (60%, 1 failed), logged 1m00s ago, ETA 4m00s  ["
    assert f"{running}{run}/logs/maps/dsift_1.log]" in text
    assert "failed   estimate dsift nre_c2f chunk 0: nre estimate: maps/dsift/p1.npz: corrupt map  [" in text
    assert "overall  4 of 9 jobs done (44%); pairs through the chunk jobs (maps, estimators): 11/27 (41%)" in text
    assert lines[-1] == f"report   {run}/report.html (not written yet)"


def test_status_after_the_run(tmp_path, monkeypatch):
    """An ended run says how it ended; a job started but never finished is 'stopped' (interrupted), not running;
    a run whose process is gone without an end record is 'stopped'."""
    monkeypatch.setattr(S, "_alive", lambda pid, host: False)
    st = S.read_status(_fake_run(tmp_path, result="interrupted"), now=T0 + 700)
    text = S.format_status(st)
    assert st.state == "interrupted" and "interrupted at" in text.splitlines()[0] and "resume" in text
    assert "stopped  maps dsift chunk 1: 3/5 pairs (60%, 1 failed)  [" in text and "ETA" not in text
    assert S.read_status(_fake_run(tmp_path / "b"), now=T0 + 700).state == "stopped"
    (tmp_path / "b" / "run" / "report.html").write_text("<html>")
    assert "report.html (written " in S.format_status(S.read_status(tmp_path / "b" / "run"))


def test_status_from_the_logs_alone(tmp_path):
    """A folder without run.json (a run with --no-hooks): one job per log."""
    run = _fake_run(tmp_path)
    (run / "logs" / "run.json").unlink()
    os.utime(run / "logs" / "maps" / "dsift_1.log", (T0 + 540, T0 + 540))
    st = S.read_status(run, now=time.time())
    states = {(j.rule, j.wildcards.get("job")): j.state for j in st.jobs}
    assert states[("maps", "dsift_0")] == "done" and states[("estimate", "dsift_nre_c2f_0")] == "failed"
    assert states[("maps", "dsift_1")] == "stopped"  # short of its total, not written for 10 minutes
    assert "no run record" in S.format_status(st)


def test_nre_status_command(tmp_path, capsys, monkeypatch):
    run = _fake_run(tmp_path, result="failed")
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "ended with failed jobs" in out and "estimate dsift nre_c2f chunk 0: nre estimate:" in out
    assert main(["status", str(run), "--watch", "1"]) == 0  # an ended run: shown once
    assert capsys.readouterr().out.count("ended with failed jobs") == 1
    assert main(["status", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"nre status: {tmp_path / 'nowhere'}: no such run folder (a config's `out`, e.g. work/quick)"
    assert len((REPO / "nre" / "commands" / "status.py").read_text().splitlines()) <= 80


# ---------------------------------------------------------------------------------------------------- the terminal
WORKFLOW_ERROR = "WorkflowError:\nAt least one job did not complete successfully."


def _record(msg, level=logging.INFO, **extra):
    r = logging.LogRecord("snakemake.logging", level, __file__, 1, msg, None, None)
    r.__dict__.update(extra)
    return r


@pytest.fixture
def console(tmp_path):
    """A Console on a logger of its own (the hooks install it on Snakemake's): what passes its terminal filter."""
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "est.log"
    log.write_text(f"{_stamp(0)} nre.estimate: x: 1 settings x 4 pairs\nnre estimate: corrupt map cache\n")
    jobs = [dict(jobid=7, rule="estimate", wildcards={"features": "dsift", "chunk": "1"}, log=[str(log)])]
    c = S.Console(tmp_path, jobs)
    c.logger = logging.getLogger("test.status.console")
    c.logger.propagate = False
    shown = []
    handler = logging.Handler()
    handler.emit = lambda r: shown.append(r.getMessage())
    handler.addFilter(c.terminal)
    c.logger.handlers = [handler]
    c.logger.filters = [c.journal]

    def send(*records):
        for r in records:
            c.logger.handle(r)
        return shown

    c.send = send
    return c


def test_a_failed_job_is_one_line_naming_its_error_and_log(console, tmp_path, monkeypatch):
    shown = console.send(
        _record("job", event="job_info", jobid=7),
        _record(
            "RuleException:\nCalledProcessError in file estimate.smk ... exit status 2.", logging.ERROR, event="error"
        ),
        _record("Error in rule estimate, jobid: 7", logging.ERROR, event="job_error", jobid=7, rule_name="estimate"),
        _record("Exiting because a job execution failed. Look below for error messages", logging.ERROR),
        _record("Error in rule estimate, jobid: 7", logging.ERROR, event="job_error", jobid=7, rule_name="estimate"),
    )
    log = tmp_path / "logs" / "est.log"
    assert shown == [
        "job",
        f"failed: estimate dsift chunk 1: nre estimate: corrupt map cache [log: {log}]",
        "Exiting because a job execution failed. Look below for error messages",
    ]
    monkeypatch.setattr(S, "_CONSOLE", console)
    S.on_error(None, tmp_path)
    console.send(
        _record("Complete log(s): .snakemake/log/x.log"), _record(WORKFLOW_ERROR, logging.ERROR, event="error")
    )
    assert shown[3:] == [
        "1 job(s) failed; fix the cause and rerun the same command (finished jobs are kept):",
        f"  estimate dsift chunk 1: nre estimate: corrupt map cache [log: {log}]",
    ]
    events = [json.loads(ln) for ln in (tmp_path / S.EVENTS_FILE).read_text().splitlines()]
    assert [(e["event"], e["jobid"]) for e in events] == [("start", 7), ("error", 7), ("error", 7)]


@pytest.mark.parametrize(
    "stop, death",
    [
        ("Terminating processes on user request, this might take some time.", "SIGINT"),  # Ctrl-C
        ("Will exit after finishing currently running jobs (scheduler).", "SIGTERM"),  # kill of the group
    ],
)
def test_ctrl_c_is_one_line(stop, death, console, tmp_path, monkeypatch):
    shown = console.send(
        _record("job", event="job_info", jobid=7),
        _record(stop),
        _record(f"RuleException:\nCalledProcessError: died with <Signals.{death}: 2>.", logging.ERROR, event="error"),
        _record("Error in rule estimate, jobid: 7", logging.ERROR, event="job_error", jobid=7, rule_name="estimate"),
    )
    assert shown == ["job"] and console.interrupted
    monkeypatch.setattr(S, "_CONSOLE", console)
    S.on_error(None, tmp_path)
    console.send(_record(WORKFLOW_ERROR, logging.ERROR, event="error"))
    assert shown == [
        "job",
        "Interrupted: 1 running job(s) stopped, 0 finished in this run; rerun the same command to resume",
    ]
    events = [json.loads(ln)["event"] for ln in (tmp_path / S.EVENTS_FILE).read_text().splitlines()]
    assert events == ["start", "stopped"]  # a job killed by Ctrl-C is not a failed job


# ---------------------------------------------------------------------------------------------------- a real run
def _tiny(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())
    cfg.update(
        name="tiny",
        out=str(tmp_path / "run"),
        data={"root": str(TINY_MD), "synth": None, "test_scenes": ["0016"], "tuning_scenes": ["0033"]},
        pairs={"n_test": 6, "n_tuning": 3, "min_covisible": 20, "distance": "rotation"},
        max_points=150,
        chunks=2,
        estimators={"lo_ransac_poselib": {"grid": {"threshold": [4, 8]}}},
        timing={"enabled": False},
        figures={"map_pictures": 0},
        selection={"metric": "mean_failure", "bootstrap": 20},
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _shim(tmp_path: Path, fail: str) -> dict:
    """PATH with an `nre` first that fails like a user error when its arguments contain ``fail``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "nre"
    shim.write_text(
        "#!/bin/bash\n"
        f'if [[ "$*" == *"{fail}"* ]]; then echo "nre maps: data/x.jpg: cannot read the image (test)" >&2; exit 2; fi\n'
        f'exec {sys.executable} -m nre.cli "$@"\n'
    )
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_real_run_failure_ctrl_c_resume_and_status(tmp_path):
    """A tiny real run: a failing job is one line with its error and log, and the run ends with one line per failed
    job (no Snakemake error block); Ctrl-C ends with one line; the rerun resumes (finished jobs kept) and ends with
    the report's path; `nre status` tells each of these states."""
    cfg, run = _tiny(tmp_path), tmp_path / "run"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(cfg)]
    # --keep-going (as the default profile sets it): the maps jobs take both cores, so without it the order the
    # scheduler picks decides whether chunk 0 ever runs before chunk 1 fails
    first = subprocess.run(
        [*cmd, "--keep-going"], cwd=REPO, capture_output=True, text=True, env=_shim(tmp_path, "manifest1.csv")
    )
    out = first.stdout + first.stderr
    assert first.returncode != 0 and f"nre status {run} [--watch]" in out
    log = run / "logs" / "maps" / "dsift_1.log"
    failed = f"maps dsift chunk 1: nre maps: data/x.jpg: cannot read the image (test) [log: {log}]"
    assert f"failed: {failed}" in out and out.rstrip().endswith(f"  {failed}")
    for noise in ("Error in rule", "CalledProcessError", "WorkflowError", "Complete log(s)", "    shell:"):
        assert noise not in out, (noise, out[-3000:])
    status = subprocess.run([sys.executable, "-m", "nre.cli", "status", str(run)], capture_output=True, text=True)
    assert "ended with failed jobs" in status.stdout and f"failed   {failed.split(' [log')[0]}" in status.stdout
    done_maps = (run / "maps" / "dsift" / "manifest0.csv").stat().st_mtime_ns

    # Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it) once the other maps job runs
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    t0 = time.time()
    while time.time() - t0 < 120 and proc.poll() is None and not (log.exists() and "pairs/s" in log.read_text()):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    last = out.strip().splitlines()[-1]
    one_line = (
        r"Interrupted: [12] running job\(s\) stopped, [0-9] finished in this run; rerun the same command to resume"
    )
    assert proc.returncode != 0 and re.fullmatch(one_line, last), out[-3000:]
    for noise in ("Error in rule", "CalledProcessError", "SIGINT", "WorkflowError", "Terminating", "Complete log"):
        assert noise not in out, (noise, out[-3000:])
    status = subprocess.run([sys.executable, "-m", "nre.cli", "status", str(run)], capture_output=True, text=True)
    assert "interrupted at" in status.stdout and "stopped  maps dsift chunk 1" in status.stdout

    # the rerun resumes: the finished maps job is kept; the run ends with the report's path
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (run / "maps" / "dsift" / "manifest0.csv").stat().st_mtime_ns == done_maps
    assert (
        (p.stdout + p.stderr).rstrip().endswith(f"Done. Report: {run}/report.html (tables and figures in {run}/eval)")
    )
    status = subprocess.run([sys.executable, "-m", "nre.cli", "status", str(run)], capture_output=True, text=True)
    lines = status.stdout.splitlines()
    assert lines[0].startswith(f"run {run}: finished at ") and lines[-1].startswith(
        f"report   {run}/report.html (written"
    )
    assert "overall  9 of 9 jobs done (100%); pairs through the chunk jobs (maps, estimators): 18/18 (100%)" in lines
