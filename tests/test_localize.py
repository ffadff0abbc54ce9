"""One pair, several estimators (``nre.estimators.localize``, ``nre localize``) on the committed sample pair (a room
corner ray-cast from scikit-image photographs with known poses; tests/data/sample_pair/make_sample_pair.py)."""

import json

import numpy as np
import pytest
import yaml
from helpers import SAMPLE

from nre.data.pairdata import PairData
from nre.errors import FileFormatError, OptionError, UnknownNameError
from nre.estimators.localize import choose, localize, read_config, select_estimators
from nre.geometry import pose_error
from nre.workflow.config import ConfigError


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


def test_localize_sample_pair_nre_and_re(tmp_path):
    """NRE coarse-to-fine and RE estimators recover the known pose. Measured (seeds 0-2): nre_c2f fine stage
    0.25-0.33 deg / 0.024-0.029 (its coarse stages ~10 deg: a 20 x 15 coarse grid on 320 x 240 images), LO-RANSAC
    (poselib) 0.30-0.34 deg / 0.026-0.030, Eq. 11 RE 0.36-0.46 deg / 0.029-0.035."""
    out = tmp_path / "res.json"
    names = ["nre_c2f", "lo_ransac_poselib", "re_gauss"]
    result = localize(pair=SAMPLE, estimators=names, json_out=out)
    printed = result.table()
    assert "rot err (deg)" in printed and all(n in printed for n in names)
    res = json.loads(out.read_text())
    assert res == result.to_json()
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
        assert "sweep" not in e
    assert est["re_gauss"]["params"] == {"sigma": 5}


def test_options_and_grids_from_the_command_line_and_a_config(tmp_path):
    """A grid is swept as in the workflow (the default setting at the top level, every setting under ``sweep``);
    options reach the estimator; a config's entries, labels, classes and features are taken as the workflow's."""
    res = localize(
        pair=SAMPLE,
        estimators=["lo_ransac_poselib", "oracle"],
        grid={"lo_ransac_poselib": {"threshold": [4, 8]}},
        options={"lo_ransac_poselib": {"max_iterations": 500}},
        max_points=300,
    )
    e = res.to_json()["estimators"]["lo_ransac_poselib"]
    assert e["params"] == {"threshold": 8} and [s["params"] for s in e["sweep"]] == [{"threshold": 4}, {"threshold": 8}]
    assert e["sweep"][1]["rotation_error_deg"] == e["rotation_error_deg"]
    assert "lo_ransac_poselib threshold=4" in res.table()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "features": {"dsift": {"options": {"coarse_stride": 8}}},
                "table1_features": "dsift",
                "estimators": {"ransac_8": {"class": "lo_ransac_poselib", "grid": {"threshold": [8]}}, "oracle": {}},
            }
        )
    )
    got = localize(pair=SAMPLE, config=cfg, max_points=300).to_json()
    assert set(got["estimators"]) == {"ransac_8", "oracle"} and got["features_options"] == {"coarse_stride": 8}
    assert got["estimators"]["ransac_8"]["params"] == {"threshold": 8}
    [c] = choose(["ransac_8"], read_config(cfg), options={"ransac_8": {"min_iterations": 10}})
    assert c.label == "ransac_8" and c.cls.name == "lo_ransac_poselib" and c.estimator.options["min_iterations"] == 10
    # mistakes name the option or the config key
    with pytest.raises(OptionError, match="--options fpr: not one of the estimators run"):
        choose(["oracle"], options={"fpr": {}})
    with pytest.raises(OptionError, match="ransac_8: --options max_iterations: 'x' is not an integer"):
        choose(["ransac_8"], read_config(cfg), options={"ransac_8": {"max_iterations": "x"}})
    cfg.write_text(yaml.safe_dump({"estimators": {"x": {"class": "lo_ransac_poselb"}}}))
    with pytest.raises(ConfigError, match=r"cfg.yaml: estimators.x.class: unknown estimator 'lo_ransac_poselb'"):
        read_config(cfg)
    cfg.write_text("estimators: [unclosed")
    with pytest.raises(ConfigError, match="cfg.yaml: not valid YAML"):
        read_config(cfg)


def test_all_selects_every_estimator_the_inputs_allow():
    from nre.estimators import registry

    names = select_estimators(["all"])
    assert "imported" not in names and {"nre_c2f", "lo_ransac_poselib", "re_gauss"} <= set(names)
    for n in names:
        assert set(registry.get(n).needs) <= {"matches", "coarse_maps", "features"}
    assert [c.label for c in choose(["all"])] == names
    with pytest.raises(UnknownNameError, match="unknown estimator"):
        select_estimators(["no_such_estimator"])


def test_every_estimator_runs_at_its_defaults():
    """``--estimator all``: every registered estimator the pair file allows, at its default setting, gives a pose
    on the sample pair (small point cap: the defaults' MSAC iterations stay)."""
    res = localize(pair=SAMPLE, estimators=["all"], max_points=200).to_json()["estimators"]
    assert set(res) == set(select_estimators(["all"]))
    failed = {k: v["failure_reason"] for k, v in res.items() if not v["success"]}
    assert not failed, failed


def test_bad_pair_files_are_errors_naming_the_file(tmp_path):
    np.savez(tmp_path / "bad.npz", p3D=np.zeros((3, 3)))
    with pytest.raises(FileFormatError, match="bad.npz: not a pair file: missing keys"):
        PairData.load_npz(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="no such pair file"):
        PairData.load_npz(tmp_path / "nope.npz")
    with pytest.raises(IsADirectoryError):
        PairData.load_npz(tmp_path)
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 not an npz")
    with pytest.raises(FileFormatError, match="x.jpg: not a pair file"):
        PairData.load_npz(tmp_path / "x.jpg")
