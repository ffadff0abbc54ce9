"""`nre localize` on the committed sample pair (a room corner ray-cast from scikit-image photographs with known
poses; tests/data/sample_pair/make_sample_pair.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from nre.cli import main
from nre.data.pairdata import PairData
from nre.geometry import pose_error

SAMPLE = Path(__file__).parent / "data" / "sample_pair" / "pair.npz"


def test_sample_pair_is_consistent():
    """The committed pair: official keys, images found next to the npz, distorted target camera, and every 3D point
    projects inside the source image."""
    pair = PairData.load_npz(SAMPLE)
    assert pair.n == 1500 and pair.pair_id == "sample_room_corner"
    assert pair.target_camera.model == "OPENCV" and pair.source_camera.model == "PINHOLE"
    assert sum(p.stat().st_size for p in SAMPLE.parent.iterdir()) < 300_000
    uv, ok = pair.source_camera.project(pair.points3d, pair.source_pose)
    assert np.all(ok & pair.source_camera.in_image(uv))
    assert pose_error(pair.target_pose, pair.source_pose).rotation_deg > 15  # a real viewpoint change


def test_localize_sample_pair_nre_and_re(tmp_path, capsys):
    """NRE coarse-to-fine and RE estimators recover the known pose. Measured (seeds 0-2): nre_c2f fine stage
    0.25-0.33 deg / 0.024-0.029 (its coarse stages ~10 deg: a 20 x 15 coarse grid on 320 x 240 images), LO-RANSAC
    (poselib) 0.30-0.34 deg / 0.026-0.030, Eq. 11 RE 0.36-0.46 deg / 0.029-0.035."""
    out = tmp_path / "res.json"
    names = ["nre_c2f", "lo_ransac_poselib", "re_gauss"]
    assert main(["localize", str(SAMPLE), "--estimator", *names, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rot err (deg)" in printed and all(n in printed for n in names)
    res = json.loads(out.read_text())
    assert res["n_points"] == 1000 and res["features"] == "dsift"
    est = res["estimators"]
    assert set(est) == set(names)
    c2f = est["nre_c2f"]
    assert set(c2f["stages"]) == {"p3p", "coarse_gnc", "fine_gnc"}
    for st in c2f["stages"].values():
        assert {"success", "R", "t", "rotation_error_deg", "translation_error", "runtime_s"} <= set(st)
    assert c2f["stages"]["fine_gnc"]["rotation_error_deg"] == c2f["rotation_error_deg"]
    assert c2f["success"] and c2f["rotation_error_deg"] < 1.5 and c2f["translation_error"] < 0.12, c2f
    for name in ("lo_ransac_poselib", "re_gauss"):
        e = est[name]
        assert e["success"] and e["rotation_error_deg"] < 1.5 and e["translation_error"] < 0.12, (name, e)
        R = np.array(e["R"])
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
    assert est["re_gauss"]["params"] == {"sigma": 5}


def test_all_selects_every_estimator_the_inputs_allow():
    from nre.commands.localize import select_estimators
    from nre.estimators import registry

    names = select_estimators(["all"])
    assert "imported" not in names and {"nre_c2f", "lo_ransac_poselib", "re_gauss"} <= set(names)
    for n in names:
        assert set(registry.get(n).needs) <= {"matches", "coarse_maps", "features"}
    with pytest.raises(KeyError, match="unknown estimator"):
        select_estimators(["no_such_estimator"])


def test_bad_pair_file_gives_clear_error(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", p3D=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="missing keys"):
        PairData.load_npz(tmp_path / "bad.npz")
    assert main(["localize", str(tmp_path / "nope.npz"), "--estimator", "lo_ransac_poselib"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nre localize: ") and "no such pair" in err and "\n" not in err
