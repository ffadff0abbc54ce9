"""SLURM support of the workflow (``workflow/profiles/slurm``, Snakemake's SLURM executor plugin).

- ``check_requests``: what each job asks for (CPUs, memory, GPUs, partition) against the nodes ``sinfo`` lists. SLURM
  keeps a job that no node can ever run PENDING forever (reason ``PartitionConfig``) and Snakemake does not report
  it, so the workflow checks every job before the first submission (``check_workflow``, called from the Snakefile's
  ``onstart``) and stops with one line per offending rule, naming the request, the largest node and the fix.
- ``PendingWatch``: stuck-job detection from ``squeue`` (a never-satisfiable pending reason, or jobs pending while
  none of ours runs), for callers that must never hang (the CI's SLURM run, ``tests/test_slurm.py``).

How a job's request is derived mirrors the plugin (2.8.0): CPUs are ``cpus_per_task`` if set, else ``cpus_per_gpu``
times the GPUs for GPU jobs that set it, else the job's threads (already capped by Snakemake's ``--max-threads``);
memory is ``mem_mb`` (or ``mem_mb_per_cpu`` x CPUs); GPUs are the ``gpu`` resource or the count in ``gres``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

SINFO_FORMAT = "%N|%P|%c|%m|%G"  # node, partition (default marked *), CPUs, memory (MB), generic resources


@dataclass(frozen=True)
class Node:
    name: str
    partition: str
    cpus: int
    mem_mb: int
    gpus: int
    default: bool = False  # the partition is the cluster's default one


@dataclass(frozen=True)
class Request:
    rule: str
    cpus: int
    mem_mb: int | None = None
    gpus: int = 0
    partition: str | None = None  # None: the default partition (or any, with a partition file)


def gres_gpus(gres: str | None) -> int:
    """GPUs in a SLURM generic-resource string: ``gpu:2``, ``gpu:a100:4(S:0-1)``, ``gpu:a100:2,gpu:v100:1``,
    ``gpu`` (one), ``(null)`` / empty (none). Other resources (``shard:8``, ``tmpdisk:...``) count nothing."""
    if not gres or gres.strip() in ("(null)", "N/A"):
        return 0
    total = 0
    for item in re.split(r",(?![^()]*\))", gres):
        item = re.sub(r"\(.*?\)", "", item).strip()
        parts = item.split(":")
        if parts[0] != "gpu":
            continue
        m = re.fullmatch(r"(\d+)[KMGT]?", parts[-1]) if len(parts) > 1 else None
        total += int(m.group(1)) if m else 1
    return total


def parse_sinfo(text: str) -> list[Node]:
    """Nodes from ``sinfo -h -N -o '%N|%P|%c|%m|%G'`` (one line per node and partition)."""
    nodes = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        f = line.strip().split("|")
        if len(f) != 5:
            raise ValueError(f"sinfo line {lineno}: expected 5 '|'-separated fields ({SINFO_FORMAT}), got {line!r}")
        name, part, cpus, mem, gres = f
        try:
            nodes.append(
                Node(name, part.rstrip("*"), int(cpus), int(mem.rstrip("+")), gres_gpus(gres), part.endswith("*"))
            )
        except ValueError:
            raise ValueError(f"sinfo line {lineno}: CPUs and memory must be integers, got {line!r}") from None
    return nodes


def sinfo_nodes(timeout: float = 30) -> list[Node]:
    """The cluster's nodes, from ``sinfo``. Raises RuntimeError with sinfo's message when it fails."""
    try:
        p = subprocess.run(
            ["sinfo", "-h", "-N", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"sinfo failed: {e}") from None
    if p.returncode != 0:
        raise RuntimeError(f"sinfo failed (exit {p.returncode}): {p.stderr.strip()}")
    return parse_sinfo(p.stdout)


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def request_of(rule: str, threads: int, resources) -> Request:
    """A job's request as the SLURM plugin submits it (``resources``: a mapping with ``.get``)."""
    gpus = _int(resources.get("gpu")) or 0
    if not gpus and "gpu" in str(resources.get("gres") or ""):
        gpus = gres_gpus(str(resources.get("gres")))
    cpt = _int(resources.get("cpus_per_task"))
    cpg = _int(resources.get("cpus_per_gpu"))
    if cpt is not None and cpt != 0:
        cpus = max(1, cpt) if cpt > 0 else 1  # < 0: no CPU option, SLURM's default of one
    elif gpus and cpg:
        cpus = cpg * gpus
    else:
        cpus = max(1, int(threads or 1))
    mem = _int(resources.get("mem_mb"))
    per_cpu = _int(resources.get("mem_mb_per_cpu"))
    if per_cpu:
        mem = per_cpu * cpus
    part = resources.get("slurm_partition") or None
    return Request(rule, cpus, mem, gpus, str(part) if part else None)


def check_requests(requests, nodes: list[Node], any_partition: bool = False) -> list[str]:
    """One message per distinct request that no node can run. A request without a partition goes to the default
    partition, or to any partition when ``any_partition`` (the plugin's partition file chooses one)."""
    problems, seen = [], set()
    parts = {n.partition for n in nodes}
    default = next((n.partition for n in nodes if n.default), None)
    for r in requests:
        if r in seen:
            continue
        seen.add(r)
        if r.partition is not None and r.partition not in parts:
            problems.append(
                f"rule {r.rule}: partition {r.partition!r} does not exist (sinfo lists {', '.join(sorted(parts))})"
            )
            continue
        if r.partition is not None:
            pool, where = [n for n in nodes if n.partition == r.partition], f"partition {r.partition!r}"
        elif any_partition or default is None:
            pool, where = nodes, "any partition"
        else:
            pool, where = [n for n in nodes if n.partition == default], f"the default partition {default!r}"
        if any(n.cpus >= r.cpus and (r.mem_mb is None or n.mem_mb >= r.mem_mb) and n.gpus >= r.gpus for n in pool):
            continue
        ask = f"{r.cpus} CPUs" + (f", {r.mem_mb} MB" if r.mem_mb is not None else "") + f", {r.gpus} GPUs"
        best = max(pool, key=lambda n: (n.cpus, n.mem_mb, n.gpus)) if pool else None
        have = f"{best.cpus} CPUs, {best.mem_mb} MB, {best.gpus} GPUs" if best else "no nodes"
        fixes = []
        if best is None or max(n.cpus for n in pool) < r.cpus:
            c = max((n.cpus for n in pool), default=1)
            fixes.append(f"max-threads: {c} (or --max-threads {c})")
        if r.mem_mb is not None and (best is None or max(n.mem_mb for n in pool) < r.mem_mb):
            fixes.append(f"a smaller mem_mb for {r.rule} in set-resources")
        if r.gpus and (best is None or max(n.gpus for n in pool) < r.gpus):
            fixes.append(f"gpu: 0 for {r.rule} in set-resources (CPU-only cluster) or a partition with GPUs")
        problems.append(
            f"rule {r.rule} asks for {ask} on {where}, whose largest node has {have} (sinfo): SLURM would keep it "
            f"PENDING forever; fix: {' and '.join(fixes)} in workflow/profiles/slurm/config.yaml"
        )
    return problems


def parse_scontrol_config(text: str) -> dict[str, str]:
    """``scontrol show config`` as a mapping (``MinJobAge = 300 sec`` -> ``{"MinJobAge": "300 sec"}``)."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep and k.strip() and " " not in k.strip():
            out[k.strip()] = v.strip()
    return out


def scontrol_config(timeout: float = 30) -> dict[str, str]:
    try:
        p = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_scontrol_config(p.stdout) if p.returncode == 0 else {}


def check_status_command(status_command: str | None, init_s: int, config: dict[str, str]) -> list[str]:
    """How the plugin will learn that a job finished. Without slurmdbd (``AccountingStorageType=
    accounting_storage/none``) ``sacct`` only errors, which the plugin takes for "no news": jobs look running
    forever. ``squeue`` sees a finished job for ``MinJobAge`` seconds only; below 3 x the poll interval the plugin
    itself falls back to ``sacct``."""
    problems = []
    no_dbd = config.get("AccountingStorageType", "").endswith("/none")
    m = re.match(r"(\d+)", config.get("MinJobAge", ""))
    min_age = int(m.group(1)) if m else None
    if status_command in (None, "sacct") and no_dbd:
        problems.append(
            "job status: the cluster has no accounting database (AccountingStorageType=accounting_storage/none), "
            "so sacct cannot report finished jobs and the run would wait forever; set slurm-status-command: squeue"
        )
    if status_command == "squeue" and min_age is not None and min_age < 3 * init_s:
        problems.append(
            f"job status: MinJobAge is {min_age} s, below 3 x slurm-init-seconds-before-status-checks "
            f"({3 * init_s} s): "
            "squeue may miss finished jobs and the plugin falls back to sacct"
            + (", which this cluster cannot answer (no accounting database)" if no_dbd else "")
            + "; ask for MinJobAge >= 120 s or lower the poll interval"
        )
    return problems


def check_workflow(workflow) -> None:
    """Check every job this Snakemake run will submit against ``sinfo``, the partition file's partitions and the
    status command against ``scontrol show config``; raise ``SystemExit`` with the problems. Called from the
    Snakefile's ``onstart`` when the executor is ``slurm`` (jobs run with --no-hooks: once per run)."""
    import os

    try:
        nodes = sinfo_nodes()
    except RuntimeError as e:
        raise SystemExit(f"SLURM resource check: {e}") from None
    settings = getattr(workflow, "executor_settings", None)
    pfile = getattr(settings, "partition_config", None) or os.environ.get("SNAKEMAKE_SLURM_PARTITIONS")
    problems = []
    if pfile:
        import yaml

        names = set((yaml.safe_load(open(pfile)) or {}).get("partitions", {}))
        parts = {n.partition for n in nodes}
        if names - parts:
            problems.append(
                f"partition file {pfile}: {', '.join(sorted(names - parts))} not on this cluster (sinfo lists "
                f"{', '.join(sorted(parts))}); regenerate it with generate-slurm-partition-config"
            )
    requests = [request_of(j.rule.name, j.threads, j.resources) for j in workflow.dag.needrun_jobs()]
    problems += check_requests(requests, nodes, any_partition=bool(pfile))
    problems += check_status_command(
        getattr(settings, "status_command", None),
        int(getattr(settings, "init_seconds_before_status_checks", None) or 40),
        scontrol_config(),
    )
    if problems:
        raise SystemExit("SLURM check failed (nothing was submitted):\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------------------- stuck jobs
# pending reasons that no amount of waiting resolves (the job's request does not fit, or an admin must act)
NEVER_REASONS = frozenset(
    {
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "PartitionDown",
        "PartitionInactive",
        "BadConstraints",
        "ReqNodeNotAvail",
        "InvalidAccount",
        "InvalidQOS",
        "DependencyNeverSatisfied",
        "JobHeldAdmin",
        "JobHeldUser",
    }
)
SQUEUE_FORMAT = "%i|%T|%r|%j"


@dataclass(frozen=True)
class QueuedJob:
    jobid: str
    state: str
    reason: str
    name: str


def parse_squeue(text: str) -> list[QueuedJob]:
    """Jobs from ``squeue -h -o '%i|%T|%r|%j'``."""
    out = []
    for line in text.splitlines():
        f = line.strip().split("|", 3)
        if len(f) == 4:
            out.append(QueuedJob(*f))
    return out


class PendingWatch:
    """Feed it ``squeue`` snapshots of one run's jobs while its Snakemake runs (``update(jobs, now)``); it returns
    the reasons to give up, if any: a job pending with a never-satisfiable reason for ``grace_s``; jobs pending for
    ``idle_s`` while none runs; or none pending nor running for ``quiet_s`` (Snakemake waits for jobs that SLURM has
    finished: its status queries fail, e.g. ``sacct`` without slurmdbd)."""

    def __init__(self, grace_s: float = 20, idle_s: float = 300, quiet_s: float = 240):
        self.grace_s, self.idle_s, self.quiet_s = grace_s, idle_s, quiet_s
        self.never_since: dict[str, float] = {}
        self.idle_since: float | None = None
        self.quiet_since: float | None = None

    def update(self, jobs: list[QueuedJob], now: float) -> list[str]:
        problems = []
        pending = [j for j in jobs if j.state == "PENDING"]
        running = [j for j in jobs if j.state in ("RUNNING", "COMPLETING", "CONFIGURING")]
        if pending or running:
            self.quiet_since = None
        else:
            self.quiet_since = now if self.quiet_since is None else self.quiet_since
            if now - self.quiet_since >= self.quiet_s:
                problems.append(
                    f"no SLURM job of this run pending or running for {now - self.quiet_since:.0f} s while Snakemake "
                    "still waits: it does not see finished jobs (status command? sacct needs slurmdbd)"
                )
        never = {j.jobid: j for j in pending if j.reason in NEVER_REASONS}
        self.never_since = {k: self.never_since.get(k, now) for k in never}
        for k, j in never.items():
            if now - self.never_since[k] >= self.grace_s:
                problems.append(f"SLURM job {k} ({j.name}) is PENDING with reason {j.reason}: it can never start")
        if pending and not running:
            self.idle_since = now if self.idle_since is None else self.idle_since
            if now - self.idle_since >= self.idle_s:
                reasons = ", ".join(sorted({j.reason for j in pending}))
                problems.append(
                    f"{len(pending)} SLURM jobs PENDING ({reasons}) for {now - self.idle_since:.0f} s with none running"
                )
        else:
            self.idle_since = None
        return problems
