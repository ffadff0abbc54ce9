"""The Snakemake workflow: dry runs of the three configs, schema errors, the real-data path on the committed
MegaDepth-format scenes, chunking invariance, and the quick regression check against results/quick."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nre.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY_MD = REPO / "tests" / "data" / "megadepth_tiny"
MD_DATA = json.dumps({"root": str(TINY_MD), "synth": None, "test_scenes": ["0016"], "tuning_scenes": ["0033"]})


def snakemake(*args, check=True):
    cmd = [sys.executable, "-m", "snakemake", *args]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


@pytest.mark.parametrize("config", ["config/config.yaml", "config/quick.yaml"])
def test_dry_run(config, tmp_path):
    p = snakemake("-n", "--configfile", config, "--config", f"out={tmp_path}")
    assert "estimate" in p.stdout and "evaluate" in p.stdout


def test_dry_run_megadepth_on_committed_scenes(tmp_path):
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "megadepth.yaml").read_text())
    cfg["data"] = json.loads(MD_DATA)
    cfg["out"] = str(tmp_path)
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    p = snakemake("-n", "--configfile", str(tmp_path / "md.yaml"))
    assert "pairs" in p.stdout and "scenes" not in p.stdout.split("Job stats")[1].split("total")[0]


def test_schema_rejects_wrong_key_and_type(tmp_path):
    p = snakemake("-n", "--configfile", "config/quick.yaml", "--config", "bogus_key=1", check=False)
    assert p.returncode != 0 and "bogus_key" in (p.stdout + p.stderr)
    p = snakemake("-n", "--configfile", "config/quick.yaml", "--config", "chunks=zero", check=False)
    assert p.returncode != 0 and "chunks" in (p.stdout + p.stderr)


def test_real_data_path_and_chunking_invariance(tmp_path):
    pairs = tmp_path / "pairs.csv"
    assert (
        main(
            [
                "pairs",
                "--root",
                str(TINY_MD),
                "--scenes",
                "0016",
                "--n-tuning",
                "2",
                "--tuning-scenes",
                "0033",
                "--n-pairs",
                "4",
                "--min-covisible",
                "20",
                "--out",
                str(pairs),
            ]
        )
        == 0
    )
    df = pd.read_csv(pairs)
    assert set(df["split"]) == {"test", "tuning"} and df["scene"].isin(["0016_0", "0033"]).all()
    maps = tmp_path / "maps"
    assert (
        main(
            [
                "maps",
                "--pairs",
                str(pairs),
                "--root",
                str(TINY_MD),
                "--out-dir",
                str(maps),
                "--max-points",
                "200",
                "--manifest",
                str(maps / "m.csv"),
            ]
        )
        == 0
    )
    assert (pd.read_csv(maps / "m.csv")["status"] == "ok").all()
    common = [
        "estimate",
        "--pairs",
        str(pairs),
        "--root",
        str(TINY_MD),
        "--maps-dir",
        str(maps),
        "--max-points",
        "200",
        "--estimator",
        "lo_ransac_poselib",
        "--grid",
        '{"threshold": [4, 8]}',
    ]
    assert main([*common, "--out", str(tmp_path / "all.parquet")]) == 0
    for k in range(3):
        assert main([*common, "--chunk", f"{k}/3", "--out", str(tmp_path / f"c{k}.parquet")]) == 0
    a = pd.read_parquet(tmp_path / "all.parquet")
    b = pd.concat([pd.read_parquet(tmp_path / f"c{k}.parquet") for k in range(3)], ignore_index=True)
    cols = ["pair_id", "params", "success", "qw", "qx", "qy", "qz", "tx", "ty", "tz", "rotation_error_deg"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert len(a) == 2 * len(df)
    # a missing cache is a recorded failure, never a dropped row
    (maps / f"{df['pair_id'].iloc[0]}.npz").unlink()
    assert main([*common, "--out", str(tmp_path / "missing.parquet")]) == 0
    m = pd.read_parquet(tmp_path / "missing.parquet")
    assert len(m) == len(a) and (~m["success"]).sum() == 2
    assert m.loc[~m["success"], "failure_reason"].str.contains("no map cache").all()


@pytest.mark.slow
def test_quick_config_matches_committed_reference(tmp_path):
    """Recomputes config/quick.yaml from scratch and compares it with results/quick (the CI regression check)."""
    out = tmp_path / "quick"
    snakemake("--cores", "2", "--configfile", "config/quick.yaml", "--config", f"out={out}")
    assert (
        main(
            [
                "regress",
                "--reference",
                str(REPO / "results/quick"),
                "--current",
                str(out / "eval"),
                "--config",
                str(REPO / "config/quick.yaml"),
            ]
        )
        == 0
    )
    # rerunning computes nothing
    p = snakemake("-n", "--configfile", "config/quick.yaml", "--config", f"out={out}")
    assert "Nothing to be done" in p.stdout + p.stderr
