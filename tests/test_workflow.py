"""The Snakemake workflow: dry runs of the three configs, schema errors, the real-data path on the committed
MegaDepth-format scenes, chunking invariance, and the quick regression check against results/quick."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, TINY_MD, snakemake, tiny_maps, tiny_pairs

from nre.estimators.runner import estimate_pairs
from nre.reference.regress import regress

MD_DATA = json.dumps({"root": str(TINY_MD), "synth": None, "test_scenes": ["0016"], "tuning_scenes": ["0033"]})


@pytest.mark.parametrize(
    "config",
    [
        "config/config.yaml",
        "config/quick.yaml",
        "config/features.yaml",
        "config/default_xfeat.yaml",
        "config/sacre_coeur.yaml",
    ],
)
def test_dry_run(config, tmp_path):
    p = snakemake("-n", "--configfile", config, "--config", f"out={tmp_path}")
    assert "estimate" in p.stdout and "evaluate" in p.stdout


def test_dry_run_megadepth_on_committed_scenes(tmp_path):
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "megadepth.yaml").read_text())
    cfg["data"] = json.loads(MD_DATA)
    cfg["out"] = str(tmp_path)
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    # the official checkpoints are not in the repository: their optional backends are left out, one line each, and
    # Table 1 runs on the learned backend alone
    p = snakemake("-n", "--configfile", str(tmp_path / "md.yaml"))
    out = p.stdout + p.stderr
    assert "features.s2dnet (optional) is left out: weights: weights/s2dnet_weights.pth: no such checkpoint" in out
    assert "features.nre_official (optional) is left out" in out
    assert "rows/xfeat/oracle" in out and "rows/s2dnet/" not in out and "maps/nre_official" not in out
    for f in cfg["features"].values():  # with the files there (a dry run only needs them to exist), the paper's maps
        for k, v in f.get("options", {}).items():
            f["options"][k] = str(tmp_path / Path(v).name)
            Path(f["options"][k]).touch()
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    p = snakemake("-n", "--configfile", str(tmp_path / "md.yaml"))
    assert "pairs" in p.stdout and "scenes" not in p.stdout.split("Job stats")[1].split("total")[0]
    assert "rows/s2dnet/oracle" in p.stdout and "rows/nre_official/nre_c2f" in p.stdout and "left out" not in p.stderr
    # a required backend (not optional) without its checkpoint is an error naming the file, in one line
    cfg["features"]["s2dnet"] = {"options": {"weights": str(tmp_path / "none.pth")}}
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    p = snakemake("-n", "--configfile", str(tmp_path / "md.yaml"), check=False)
    err = (p.stdout + p.stderr).strip()
    assert p.returncode != 0 and "\n" not in err and "none.pth: no such checkpoint file" in err


def test_schema_rejects_wrong_key_and_type(tmp_path):
    p = snakemake("-n", "--configfile", "config/quick.yaml", "--config", "bogus_key=1", check=False)
    assert p.returncode != 0 and "bogus_key" in (p.stdout + p.stderr)
    p = snakemake("-n", "--configfile", "config/quick.yaml", "--config", "chunks=zero", check=False)
    assert p.returncode != 0 and "chunks" in (p.stdout + p.stderr)


def test_real_data_path_and_chunking_invariance(tmp_path):
    pairs = tmp_path / "pairs.csv"
    df = tiny_pairs(pairs, 4, n_tuning=2, tuning_scenes=["0033"])
    assert set(df["split"]) == {"test", "tuning"} and df["scene"].isin(["0016_0", "0033"]).all()
    maps = tmp_path / "maps"
    tiny_maps(pairs, maps, threads=None)
    assert (pd.read_csv(maps / "m.csv")["status"] == "ok").all()
    common = dict(pairs=pairs, root=TINY_MD, maps_dir=maps, max_points=200, estimator="lo_ransac_poselib")
    common["grid"] = {"threshold": [4, 8]}
    estimate_pairs(out=tmp_path / "all.parquet", **common)
    for k in range(3):
        estimate_pairs(chunk=f"{k}/3", out=tmp_path / f"c{k}.parquet", **common)
    a = pd.read_parquet(tmp_path / "all.parquet")
    b = pd.concat([pd.read_parquet(tmp_path / f"c{k}.parquet") for k in range(3)], ignore_index=True)
    cols = ["pair_id", "params", "success", "qw", "qx", "qy", "qz", "tx", "ty", "tz", "rotation_error_deg"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert len(a) == 2 * len(df)
    # a missing cache is a recorded failure, never a dropped row
    (maps / f"{df['pair_id'].iloc[0]}.npz").unlink()
    estimate_pairs(out=tmp_path / "missing.parquet", **common)
    m = pd.read_parquet(tmp_path / "missing.parquet")
    assert len(m) == len(a) and (~m["success"]).sum() == 2
    assert m.loc[~m["success"], "failure_reason"].str.contains("no map cache").all()


def _tiny_config(tmp_path, name, out, chunks, estimators):
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())
    cfg.update(
        name="tiny",
        out=str(out),
        data=json.loads(MD_DATA),
        pairs={"n_test": 6, "n_tuning": 3, "min_covisible": 20, "distance": "rotation"},
        max_points=150,
        chunks=chunks,
        estimators=estimators,
        timing={"enabled": False},
        figures={"map_pictures": 0},
        selection={"metric": "mean_failure", "bootstrap": 20},
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _job_counts(stdout: str) -> dict:
    stats = stdout.split("Job stats:")[-1].split("total")[0]
    return {
        ln.split()[0]: int(ln.split()[1])
        for ln in stats.splitlines()
        if len(ln.split()) == 2 and ln.split()[1].isdigit()
    }


@pytest.mark.slow
def test_tiny_workflow_restart_nothing_to_do_new_estimator_and_invariance(tmp_path):
    """A real tiny run on the committed MegaDepth-format scenes: killed midway and restarted without redoing
    finished jobs; then nothing to do; adding an estimator runs only its jobs; a run with another chunk size and
    --cores gives identical tables."""
    import signal
    import time

    est = {"lo_ransac_poselib": {"grid": {"threshold": [4, 8]}}}
    out = tmp_path / "a"
    cfg = _tiny_config(tmp_path, "a", out, 2, est)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", cfg]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not (out / "rows").exists() and p.poll() is None and time.time() - t0 < 120:
        time.sleep(0.2)  # an estimate job has started: the maps job of its chunk is complete (the other may run)
    os.killpg(p.pid, signal.SIGTERM)
    p.wait(timeout=60)
    done = {m: m.stat().st_mtime_ns for m in (out / "maps" / "dsift").glob("manifest*.csv")}
    assert done
    snakemake("--cores", "2", "--configfile", cfg, "--rerun-incomplete")
    assert {m: m.stat().st_mtime_ns for m in done} == done  # the finished maps jobs were not redone
    assert (out / "report.html").exists() and (out / "eval" / "table1_paper.tex").exists()
    p = snakemake("-n", "--configfile", cfg)
    assert "Nothing to be done" in p.stdout + p.stderr
    # Snakemake's own report gathers the tables and figures with their captions; tables as HTML pages, which its
    # viewer shows (a Markdown file there was only a download link: an empty preview)
    import zipfile

    snakemake("--configfile", cfg, "--report", str(tmp_path / "report.zip"))
    names = zipfile.ZipFile(tmp_path / "report.zip").namelist()
    for f in ("table1_paper.html", "headline.html", "summary.html", "report.html", "sweeps.png"):
        assert any(n.endswith(f) for n in names), (f, names[:20])
    assert not any(n.endswith(".md") for n in names), names
    # adding an estimator: only its jobs (2 chunks) and what depends on all rows
    cfg_b = _tiny_config(tmp_path, "b", out, 2, {**est, "magsac_pp": {"grid": {"threshold": [4]}}})
    jobs = _job_counts(snakemake("-n", "--configfile", cfg_b).stdout)
    assert jobs.pop("estimate") == 2
    assert set(jobs) == {"evaluate", "select", "tables", "report_html", "all"}
    # changing one estimator's sweep reruns only that estimator's jobs
    cfg_c = _tiny_config(tmp_path, "c", out, 2, {**est, "lo_ransac_poselib": {"grid": {"threshold": [4, 6]}}})
    jobs = _job_counts(snakemake("-n", "--configfile", cfg_c).stdout)
    assert jobs.get("estimate") == 2 and "maps" not in jobs and "pairs" not in jobs
    # another chunk size and --cores: identical tables (maps computed with 1 thread instead of 2)
    out2 = tmp_path / "d"
    cfg_d = _tiny_config(tmp_path, "d", out2, 3, est)
    snakemake(f"{out2}/eval/table1_paper.md", "--cores", "1", "--configfile", cfg_d)
    assert len(list((out2 / "rows" / "dsift" / "lo_ransac_poselib").glob("chunk*.parquet"))) == 3
    for f in ("failure_rates.csv", "table1_paper.csv", "table1_fair.csv", "selection.csv", "table1_paper.md"):
        assert (out / "eval" / f).read_bytes() == (out2 / "eval" / f).read_bytes(), f
    drop = ["median_runtime_s"]  # run times are measurements, everything else is identical
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "eval" / "summary.csv").drop(columns=drop),
        pd.read_csv(out2 / "eval" / "summary.csv").drop(columns=drop),
    )


@pytest.mark.slow
def test_quick_config_matches_committed_reference(tmp_path):
    """Recomputes config/quick.yaml from scratch and compares it with results/quick (the CI regression check)."""
    out = tmp_path / "quick"
    snakemake("--cores", "2", "--configfile", "config/quick.yaml", "--config", f"out={out}")
    ok, verdict = regress(reference=REPO / "results/quick", current=out / "eval", config=REPO / "config/quick.yaml")
    assert ok, verdict
    # rerunning computes nothing
    p = snakemake("-n", "--configfile", "config/quick.yaml", "--config", f"out={out}")
    assert "Nothing to be done" in p.stdout + p.stderr
