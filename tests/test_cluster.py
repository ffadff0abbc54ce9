"""SLURM support (cluster: requests vs sinfo's nodes, status command vs scontrol, stuck-job detection), the GPU
flag of the feature backends, and the run comparison (nre.reference.compare) the SLURM test relies on."""

import json

import pandas as pd
import pytest
from helpers import REPO, snakemake

from nre.reference.compare import compare_eval_dirs, is_timing_column
from nre.workflow.cluster import (
    NEVER_REASONS,
    Node,
    PendingWatch,
    QueuedJob,
    Request,
    check_requests,
    check_status_command,
    gres_gpus,
    parse_scontrol_config,
    parse_sinfo,
    parse_squeue,
    request_of,
)

SINFO = """\
n01|cpu*|2|24105|(null)
n02|gpu|32|192000|gpu:a100:4(S:0-1)
n03|gpu|16|96000|gpu:2
"""


def test_gres_gpus():
    assert gres_gpus("(null)") == 0 and gres_gpus("") == 0 and gres_gpus(None) == 0
    assert gres_gpus("gpu:2") == 2 and gres_gpus("gpu") == 1
    assert gres_gpus("gpu:a100:4(S:0-1)") == 4
    assert gres_gpus("gpu:a100:2,gpu:v100:1") == 3
    assert gres_gpus("shard:8,gpu:1") == 1 and gres_gpus("tmpdisk:100G") == 0


def test_parse_sinfo():
    nodes = parse_sinfo(SINFO)
    assert nodes[0] == Node("n01", "cpu", 2, 24105, 0, default=True)
    assert nodes[1].partition == "gpu" and nodes[1].gpus == 4 and not nodes[1].default
    with pytest.raises(ValueError, match="line 1"):
        parse_sinfo("n01|cpu|2")


def test_request_of_mirrors_the_plugin():
    # threads become --cpus-per-task unless cpus_per_task is set
    assert request_of("maps", 4, {"mem_mb": 16000}) == Request("maps", 4, 16000, 0, None)
    assert request_of("maps", 4, {"cpus_per_task": 2}).cpus == 2
    assert request_of("maps", 1, {"gpu": 1, "cpus_per_gpu": 6}).cpus == 6
    assert request_of("x", 2, {"gres": "gpu:a100:2"}).gpus == 2
    assert request_of("x", 2, {"mem_mb_per_cpu": 1000}).mem_mb == 2000
    assert request_of("x", 1, {"slurm_partition": "gpu"}).partition == "gpu"
    assert request_of("x", 1, {"gpu": 0}).gpus == 0


def test_check_requests_names_rule_request_node_and_fix():
    nodes = parse_sinfo(SINFO)
    ok = [Request("estimate", 1, 8000), Request("maps", 32, 16000, 4, "gpu"), Request("timing", 2, 20000)]
    assert check_requests(ok, nodes) == []
    # 4 CPUs on the default partition (2-CPU nodes): the PENDING-forever case
    (msg,) = check_requests([Request("maps", 4, 16000)], nodes)
    assert "rule maps asks for 4 CPUs" in msg and "largest node has 2 CPUs" in msg and "max-threads: 2" in msg
    # any partition (a partition file chooses): the 32-CPU node can run it
    assert check_requests([Request("maps", 4, 16000)], nodes, any_partition=True) == []
    (msg,) = check_requests([Request("maps", 2, 4000, 1)], nodes)
    assert "1 GPUs" in msg and "gpu: 0" in msg
    (msg,) = check_requests([Request("train", 1, 500000, 0, "gpu")], nodes)
    assert "mem_mb" in msg and "partition 'gpu'" in msg
    (msg,) = check_requests([Request("x", 1, 100, 0, "bigmem")], nodes)
    assert "'bigmem' does not exist" in msg
    # identical requests (many jobs of one rule) are reported once
    assert len(check_requests([Request("maps", 4, 1)] * 5, nodes)) == 1


def test_check_status_command():
    cfg = parse_scontrol_config(
        "Configuration data as of 2026-01-01\nAccountingStorageType   = accounting_storage/none\n"
        "MinJobAge               = 300 sec\n"
    )
    assert cfg["MinJobAge"] == "300 sec"
    # the shipped default of the plugin (sacct) without slurmdbd: the silent hang of the issue
    assert "slurm-status-command: squeue" in check_status_command(None, 40, cfg)[0]
    assert "slurm-status-command: squeue" in check_status_command("sacct", 40, cfg)[0]
    assert check_status_command("squeue", 10, cfg) == []
    (msg,) = check_status_command("squeue", 10, {**cfg, "MinJobAge": "20 sec"})
    assert "MinJobAge is 20 s" in msg and "no accounting database" in msg
    dbd = {"AccountingStorageType": "accounting_storage/slurmdbd", "MinJobAge": "300 sec"}
    assert check_status_command("sacct", 40, dbd) == []


def test_pending_watch():
    rows = parse_squeue("11|PENDING|PartitionConfig|run-a\n12|RUNNING|None|run-a\n")
    assert rows[0] == QueuedJob("11", "PENDING", "PartitionConfig", "run-a") and "PartitionConfig" in NEVER_REASONS
    w = PendingWatch(grace_s=20, idle_s=300)
    assert w.update(rows, 0) == []
    (msg,) = w.update(rows, 25)
    assert "11" in msg and "PartitionConfig" in msg
    # waiting for resources while another of ours runs is normal, however long
    w = PendingWatch(grace_s=20, idle_s=300)
    busy = parse_squeue("21|PENDING|Resources|r\n22|RUNNING|None|r\n")
    assert w.update(busy, 0) == [] and w.update(busy, 1000) == []
    # pending with nothing running: stuck after idle_s
    idle = parse_squeue("21|PENDING|Resources|r\n")
    assert w.update(idle, 1000) == [] and w.update(idle, 1200) == []
    (msg,) = w.update(idle, 1300)
    assert "none running" in msg
    assert w.update(busy, 1310) == []  # reset once something runs
    # everything finished long ago but Snakemake still waits (the silent sacct hang without slurmdbd)
    w = PendingWatch(quiet_s=240)
    done = parse_squeue("31|COMPLETED|None|r\n")
    assert w.update(done, 0) == [] and w.update([], 200) == [] and w.update(busy, 210) == []
    assert w.update(done, 220) == [] and w.update([], 400) == []
    (msg,) = w.update(done, 460)
    assert "does not see finished jobs" in msg


def test_gpu_backends_match_the_backend_classes():
    from nre.features import GPU_BACKENDS, backend_uses_gpu, get_backend
    from nre.features.base import _BACKENDS

    get_backend("dsift")  # imports every backend module
    assert {n for n, c in _BACKENDS.items() if c.uses_gpu} == GPU_BACKENDS
    assert not backend_uses_gpu("dsift") and backend_uses_gpu("nre_compact")


def _dry_run_jobs(tmp_path, config, *overrides):
    cmd = ["-n", "--profile", "workflow/profiles/default", "--configfile", config, "--config", f"out={tmp_path}"]
    return snakemake(*cmd, *overrides).stdout.split("\nrule ")


def test_workflow_asks_a_gpu_for_network_backends_only(tmp_path):
    """Dry runs with the local default profile (which must run without any GPU: gpu is not a constrained resource
    locally): resource gpu=1 exactly on the jobs that run a network backend (the SLURM plugin's --gpus=1)."""
    # config/features.yaml with its network backend as the Table 1 backend, pictures and timing on
    import yaml

    cfg = yaml.safe_load((REPO / "config/features.yaml").read_text())
    cfg.update(table1_features="nre_compact", figures={"map_pictures": 1})
    cfg["timing"]["enabled"] = True
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(cfg))
    jobs = _dry_run_jobs(tmp_path / "f", str(tmp_path / "f.yaml"))
    maps = [j for j in jobs if j.startswith("maps:")]
    networks = ("features=nre_compact", "features=xfeat")  # the config's network backends; dsift is not one
    assert maps and all(("gpu=1" in j) == any(n in j for n in networks) for j in maps)
    assert any("features=dsift" in j and "gpu=0" in j for j in maps)
    for rule in ("map_pictures", "timing_stages"):
        (j,) = [j for j in jobs if j.startswith(f"{rule}:")]
        assert "gpu=1" in j
    # the quick config: dense SIFT only, no GPU anywhere
    jobs = _dry_run_jobs(tmp_path / "q", "config/quick.yaml")
    assert all("gpu=1" not in j for j in jobs)
    assert any(j.startswith("timing_stages:") and "gpu=0" in j for j in jobs)


def _eval_dir(d, rate=0.25, runtime=1.0, diag_s=0.1):
    d.mkdir(parents=True)
    pd.DataFrame({"estimator": ["a", "b"], "R>5deg": [rate, 0.5], "median_runtime_s": [runtime, 2.0]}).to_csv(
        d / "summary.csv", index=False
    )
    pd.DataFrame({"stage": ["x"], "wall_s": [runtime]}).to_csv(d / "timing.csv", index=False)
    (d / "timing").mkdir()
    pd.DataFrame({"wall_s": [runtime]}).to_csv(d / "timing" / "stages.csv", index=False)
    (d / "thresholds.json").write_text(json.dumps({"rotation_deg": [2, 5, 10]}))
    rows = pd.DataFrame(
        {
            "pair_id": [0, 1],
            "rotation_error_deg": [0.1, float("nan")],
            "runtime_s": [runtime, runtime],
            "diagnostics": [json.dumps({"iterations": 9, "msac_s": diag_s}), "{}"],
        }
    )
    rows.to_parquet(d / "rows.parquet")
    return d


def test_compare_eval_dirs_ignores_timing_only(tmp_path):
    a = _eval_dir(tmp_path / "a")
    # other runtimes, stage seconds and Table 3 timings: identical results
    assert compare_eval_dirs(a, _eval_dir(tmp_path / "b", runtime=9.0, diag_s=3.0)) == []
    # a changed rate: reported with the file, column and values
    (d,) = compare_eval_dirs(a, _eval_dir(tmp_path / "c", rate=0.2500001))
    assert "summary.csv" in d and "R>5deg" in d and "0.25" in d
    c = _eval_dir(tmp_path / "d")
    r = pd.read_parquet(c / "rows.parquet")
    r.loc[0, "diagnostics"] = json.dumps({"iterations": 8, "msac_s": 0.1})
    r.to_parquet(c / "rows.parquet")
    (d,) = compare_eval_dirs(a, c)
    assert "rows.parquet" in d and "diagnostics" in d
    (c / "summary.csv").unlink()
    assert any("only in" in x and "summary.csv" in x for x in compare_eval_dirs(a, c))
    with pytest.raises(FileNotFoundError):
        compare_eval_dirs(a, tmp_path / "missing")
    assert is_timing_column("median wall (s)") and not is_timing_column("median_rot_deg")
    assert not is_timing_column("t>0.25") and not is_timing_column("n_covisible")


def test_compare_eval_dirs_nan_equal(tmp_path):
    a, b = _eval_dir(tmp_path / "a"), _eval_dir(tmp_path / "b")
    assert compare_eval_dirs(a, b) == []  # NaN errors (failures) compare equal to themselves
