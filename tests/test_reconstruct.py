"""Real photographs: `nre sfm` (pycolmap SfM + undistortion into the MegaDepth layout) on the five committed
Sacre-Coeur photographs (tests/data/sacre_coeur_small, 640 px), single-scene tuning pairs split by images, and the
single-scene workflow (rule sfm) end to end. Measured here: one `nre sfm` run ~5-8 s on 1 thread."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import DATA, REPO, snakemake

from nre.data.pairs import build_pair_table
from nre.data.reconstruct import SfmError, build_scene
from nre.errors import OptionError

PHOTOS = DATA / "sacre_coeur_small" / "images"


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sfm")
    build_scene(images=PHOTOS, out=root, scene="sc")
    return root


def test_sfm_writes_the_undistorted_megadepth_layout(scene_root):
    import pycolmap

    from nre.data.pairs import candidate_pairs
    from nre.data.scenes import list_scenes, load_scene

    rep = json.loads((scene_root / "sc" / "sfm" / "report.json").read_text())
    assert rep["images"] == rep["registered"] == 5 and rep["points"] > 200, rep
    assert 0 < rep["mean_reprojection_error_px"] < 1.0 and set(rep["seconds"]) >= {"features", "mapping"}
    rec = pycolmap.Reconstruction(str(scene_root / "sc" / "sparse"))
    assert {c.model.name for c in rec.cameras.values()} == {"PINHOLE"}
    assert sorted(p.name for p in (scene_root / "sc" / "images").iterdir()) == sorted(p.name for p in PHOTOS.iterdir())
    assert not (scene_root / "sc" / "stereo").exists()
    # read back by the project's reader: cameras match the undistorted images, pairs exist
    ((name, dirs),) = list_scenes(scene_root).items()
    sc = load_scene(*dirs, name)
    import cv2

    for im in sc.images.values():
        h, w = cv2.imread(str(im.path)).shape[:2]
        assert (w, h) == im.camera.size and tuple(rep["undistorted_size"][im.name]) == (w, h)
    assert len(candidate_pairs(sc, 50)) >= 12


def test_sfm_is_deterministic_with_one_thread(scene_root, tmp_path):
    build_scene(images=PHOTOS, out=tmp_path, scene="sc")
    for f in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (tmp_path / "sc" / "sparse" / f).read_bytes() == (scene_root / "sc" / "sparse" / f).read_bytes(), f


def test_sfm_errors_are_clear(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SfmError, match="no images"):
        build_scene(images=empty, out=tmp_path / "out")
    with pytest.raises(SfmError, match="does not exist"):
        build_scene(images=tmp_path / "nowhere", out=tmp_path / "out")
    two = tmp_path / "two"
    two.mkdir()
    for p in sorted(PHOTOS.iterdir())[:2]:
        shutil.copy(p, two / p.name)
    with pytest.raises(SfmError, match="fewer than the 3 needed"):
        build_scene(images=two, out=tmp_path / "out")
    (two / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SfmError, match="unreadable image.*broken.jpg"):
        build_scene(images=two, out=tmp_path / "out", min_registered=2)
    (tmp_path / "out" / "two").mkdir(parents=True)
    (two / "broken.jpg").unlink()
    with pytest.raises(SfmError, match="already exists"):
        build_scene(images=two, out=tmp_path / "out", min_registered=2)


def test_same_scene_tuning_pairs_share_no_image(scene_root, tmp_path):
    from nre.data.pairs import split_images

    out = tmp_path / "pairs.csv"
    args = dict(root=scene_root, scenes=["sc"], n_pairs=50, n_tuning=50, tuning_from="same-scene", out=out)
    build_pair_table(**args, tuning_fraction=0.4)
    df = pd.read_csv(out)
    test, tun = df[df.split == "test"], df[df.split == "tuning"]
    assert len(test) and len(tun)
    assert not (set(test.source) | set(test.target)) & (set(tun.source) | set(tun.target))
    summ = json.loads(out.with_suffix(".summary.json").read_text())
    assert sorted(summ["image_split"]["sc"]["tuning"]) == sorted(set(tun.source) | set(tun.target))
    # seeded: the same split again, another one with another seed
    names = [f"im{i}.jpg" for i in range(10)]
    assert split_images(names, 0.3, 0, "s") == split_images(names, 0.3, 0, "s")
    assert split_images(names, 0.3, 0, "s") != split_images(names, 0.3, 1, "s")
    assert len(split_images(names, 0.3, 0, "s")["tuning"]) == 3
    with pytest.raises(ValueError, match="cannot be split"):
        split_images(names[:3], 0.5, 0, "s")
    with pytest.raises(OptionError, match="drop --tuning-scenes"):
        build_pair_table(**args, tuning_scenes=["x"])


def _single_scene_config(tmp_path, name, **pairs):
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "sacre_coeur.yaml").read_text())
    cfg.update(
        name=name,
        out=str(tmp_path / name),
        max_points=200,
        chunks=1,
        estimators={"lo_ransac_poselib": {"grid": {"threshold": [4, 12]}}, "oracle": {}},
        features={"dsift": {"options": {}}},
        timing={"enabled": False},
        figures={"map_pictures": 0},
        selection={"metric": "mean_failure", "bootstrap": 20},
    )
    cfg["data"] = {"root": str(tmp_path / "data"), "synth": None, "sfm": {"images": str(PHOTOS), "scene": "sc"}}
    cfg["pairs"] = {"n_test": 8, "n_tuning": 4, "min_covisible": 50, "distance": "rotation", **pairs}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_tuning_source_check(tmp_path):
    """The workflow's parse-time check: a config whose tuning split has no source is a problem naming the fix."""
    from nre.workflow.config import data_problems

    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "scenes.yaml").write_text("splits: {tuning: [t]}\n")
    for scene in ("a", "b"):  # scene folders of the root (a model's files: what the check looks for)
        (tmp_path / scene / "sparse").mkdir(parents=True)
        for f in ("cameras", "images", "points3D"):
            (tmp_path / scene / "sparse" / f"{f}.bin").touch()

    def problems(pairs=None, root=tmp_path, **data):
        data = {"test_scenes": ["a"], **data}
        cfg = {"data": {"root": str(root), "synth": None, **data}, "pairs": {"n_tuning": 5, **(pairs or {})}}
        return " / ".join(p for _, p in data_problems(cfg))

    assert "tuning_from: same_scene" in problems()  # a single real scene, no tuning scenes
    assert problems(root=listed, test_scenes=None) == ""  # ROOT/scenes.yaml names them
    assert problems(synth={"preset": "quick"}) == ""  # generated scenes write scenes.yaml
    assert problems({"n_tuning": 0}) == ""  # no tuning split: fair protocol n/a, allowed
    assert problems({"tuning_from": "same_scene"}) == ""
    assert problems(tuning_scenes=["b"], test_scenes=["a"]) == ""
    assert "also test scenes" in problems(tuning_scenes=["a"], test_scenes=["a"])
    assert "empty" in problems(tuning_scenes=[])
    assert "remove data.tuning_scenes" in problems({"tuning_from": "same_scene"}, tuning_scenes=["b"])
    assert "no tuning pairs" in problems({"tuning_from": "same_scene", "n_tuning": 0})
    assert "no such data folder" in problems(root=tmp_path / "missing")


def test_single_scene_dry_runs(tmp_path):
    p = snakemake("-n", "--configfile", _single_scene_config(tmp_path, "bad"), check=False)
    assert p.returncode != 0 and "tuning_from: same_scene" in p.stdout + p.stderr
    # the reconstructed scene is a test scene: no training on it
    p = snakemake(
        "-n", "train", "--configfile", _single_scene_config(tmp_path, "ok", tuning_from="same_scene"), check=False
    )
    assert p.returncode != 0 and "test scene" in p.stdout + p.stderr


@pytest.mark.slow
def test_single_scene_workflow_from_photographs(tmp_path):
    """One command from five photographs to the tables: rule sfm, same-scene tuning pairs, both protocols."""
    cfg = _single_scene_config(tmp_path, "one", tuning_from="same_scene", tuning_fraction=0.4)
    snakemake("--cores", "2", "--configfile", cfg)
    out = tmp_path / "one"
    assert (tmp_path / "data" / "sc" / "sparse" / "points3D.bin").exists()
    pairs = pd.read_csv(out / "pairs.csv")
    assert set(pairs.split) == {"test", "tuning"} and (pairs.scene == "sc").all()
    sel = pd.read_csv(out / "eval" / "selection.csv").set_index("estimator")
    assert sel.loc["lo_ransac_poselib", "fair_basis"] == "tuning" and sel["fair_from_tuning"].all()
    assert (out / "report.html").exists() and "n/a: no tuning" not in (out / "eval" / "table1_fair.md").read_text()
    rows = pd.read_parquet(out / "eval" / "rows.parquet")
    assert len(rows) == len(pairs) * 3 and np.isfinite(rows.loc[rows.success, "rotation_error_deg"]).all()
    p = snakemake("-n", "--configfile", cfg)
    assert "Nothing to be done" in p.stdout + p.stderr
    assert "registered" in (out / "logs" / "sfm.log").read_text()
