"""The SLURM profile on a real SLURM (marker ``slurm``: not part of the default run; CI runs it after the suite on the
single-node cluster of ``.ci/slurm_up.sh``). Skipped when no SLURM answers.

- a job no node can run stops the run before any submission, with the fix (no job PENDING forever);
- config/quick.yaml through ``workflow/profiles/slurm`` gives the same tables as the same config run locally
  (timing aside, ``nre.reference.compare``). The SLURM run is watched (``PendingWatch``): a job pending for a
  reason that never resolves, jobs pending while none runs, no job queued for 4 min while Snakemake still waits
  (status queries that never see a finished job), or the whole run over its time budget, fails the test with that
  reason and cancels the run's jobs, instead of hanging CI.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO

from nre.reference.compare import compare_eval_dirs
from nre.workflow.cluster import PendingWatch, parse_squeue, sinfo_nodes

pytestmark = pytest.mark.slurm
LOCAL_TIMEOUT_S = int(os.environ.get("NRE_SLURM_TEST_LOCAL_TIMEOUT", 1200))
SLURM_TIMEOUT_S = int(os.environ.get("NRE_SLURM_TEST_TIMEOUT", 1800))  # measured ~2.5x the local run


@pytest.fixture(scope="module")
def node_cpus():
    if shutil.which("sinfo") is None:
        pytest.skip("no SLURM here (sinfo not found): start one with .ci/slurm_up.sh")
    try:
        nodes = sinfo_nodes(timeout=20)
    except RuntimeError as e:
        pytest.skip(f"SLURM does not answer: {e}")
    if not nodes:
        pytest.skip("SLURM lists no nodes")
    return min(n.cpus for n in nodes)


def _squeue() -> list:
    p = subprocess.run(["squeue", "-h", "-o", "%i|%T|%r|%j"], capture_output=True, text=True, timeout=30)
    return parse_squeue(p.stdout) if p.returncode == 0 else []


def _slurm_cmd(out, *extra):
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "workflow/profiles/slurm",
        "--configfile",
        "config/quick.yaml",
        "--config",
        f"out={out}",
        *extra,
    ]


def test_job_no_node_can_run_stops_the_run_before_submission(node_cpus, tmp_path):
    before = {j.jobid for j in _squeue()}
    cmd = _slurm_cmd(tmp_path / "q", "--max-threads", str(node_cpus + 2))
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "SLURM check failed (nothing was submitted)" in out, out[-3000:]
    assert f"asks for {node_cpus + 2} CPUs" in out and f"max-threads: {node_cpus}" in out
    assert {j.jobid for j in _squeue()} <= before  # nothing submitted


def _run_watched(cmd, log_path, timeout_s):
    """Run Snakemake with the SLURM executor; return (exit code, wall s). On a stuck job or time-out: kill it,
    cancel the jobs it submitted, fail with the reason."""
    before = {j.jobid for j in _squeue()}
    watch = PendingWatch(grace_s=20, idle_s=300, quiet_s=240)
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        problems = []
        while proc.poll() is None:
            time.sleep(5)
            ours = [j for j in _squeue() if j.jobid not in before]
            problems = watch.update(ours, time.monotonic())
            if time.monotonic() - t0 > timeout_s:
                problems.append(f"the SLURM run took over {timeout_s} s (NRE_SLURM_TEST_TIMEOUT)")
            if problems:
                break
    wall = time.monotonic() - t0
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # SIGTERM makes Snakemake wait for its running jobs
        proc.wait()
        ids = [j.jobid for j in _squeue() if j.jobid not in before]
        if ids:
            subprocess.run(["scancel", *ids], timeout=60, check=False)
        tail = Path(log_path).read_text()[-3000:]
        pytest.fail("SLURM run stopped: " + "; ".join(problems) + f"\n--- snakemake log tail ---\n{tail}")
    return proc.returncode, wall


def test_quick_config_through_slurm_matches_local_run(node_cpus, tmp_path):
    local, slurm = tmp_path / "local", tmp_path / "slurm"
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/quick.yaml"]
    p = subprocess.run(
        [*cmd, "--config", f"out={local}"], cwd=REPO, capture_output=True, text=True, timeout=LOCAL_TIMEOUT_S
    )
    assert p.returncode == 0, p.stderr[-3000:]
    t_local = time.monotonic() - t0
    log = tmp_path / "slurm_run.log"
    rc, t_slurm = _run_watched(_slurm_cmd(slurm, "--max-threads", str(node_cpus)), log, SLURM_TIMEOUT_S)
    text = log.read_text()
    assert rc == 0, text[-4000:]
    assert "100%) done" in text
    diffs = compare_eval_dirs(local / "eval", slurm / "eval")
    assert diffs == [], "\n".join(diffs)
    msg = f"quick config: local {t_local:.0f} s, SLURM {t_slurm:.0f} s ({t_slurm / t_local:.1f}x), tables identical"
    print(msg)
    (REPO / "work").mkdir(exist_ok=True)
    (REPO / "work" / "slurm_test_times.txt").write_text(msg + "\n")
