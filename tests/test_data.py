"""Scenes, the synthetic default and the pair builder."""

import shutil

import numpy as np
import pandas as pd
import pycolmap
import pytest
import yaml

from nre.data import pairs as P
from nre.data.sfm import SceneError, list_scenes, load_scene
from nre.pair import PairData


def test_synthetic_scene_roundtrips_through_pycolmap(tiny_root):
    meta = yaml.safe_load((tiny_root / "scenes.yaml").read_text())
    assert set(meta["splits"]) == {"train", "tuning", "test"}
    scene = meta["splits"]["test"][0]
    rec = pycolmap.Reconstruction(str(tiny_root / scene / "sparse"))
    truth = pycolmap.Reconstruction(str(tiny_root / scene / "truth"))
    assert rec.num_reg_images() == truth.num_reg_images() >= 8
    assert rec.num_points3D() > 100
    assert all(c.model.name == "PINHOLE" for c in rec.cameras.values())
    for im in rec.images.values():
        assert (tiny_root / scene / "images" / im.name).exists()
    # scale like MegaDepth: median depth in 5..30 units
    sc = load_scene(tiny_root / scene / "sparse", tiny_root / scene / "images", scene)
    assert 5 < sc.median_depth() < 30


def test_generation_is_deterministic(tiny_root, tmp_path):
    from nre.data.synth import PHOTOS, _photo, generate_scene

    photos = {n: _photo(n) for s in PHOTOS for n in PHOTOS[s] + ["gravel", "brick", "grass"]}
    a = generate_scene(tmp_path, "a", "test", 6, 0, photos, 500)
    assert a["num_points3D"] != 0
    assert (tmp_path / "a" / "images" / "0003.jpg").read_bytes() != b""
    # the same scene name and seed twice gives identical images
    generate_scene(tmp_path / "again", "a", "test", 6, 0, photos, 500)
    assert (tmp_path / "a" / "images" / "0002.jpg").read_bytes() == (
        tmp_path / "again" / "a" / "images" / "0002.jpg"
    ).read_bytes()


def _covisible_from_model(root, row):
    rec = pycolmap.Reconstruction(str(root / row["scene"] / "sparse"))
    ids = {}
    for im in rec.images.values():
        ids[im.name] = {p.point3D_id for p in im.points2D if p.has_point3D()}
    return len(ids[row["source"]] & ids[row["target"]])


def test_pairs_covisible_balanced_ordered_and_deterministic(tiny_root):
    df = P.sample_pairs(tiny_root, ["test_00"], 6, "test", min_covisible=20, seed=3)
    assert len(df) == 6
    for _, row in df.iterrows():
        assert _covisible_from_model(tiny_root, row) == row["n_covisible"] >= 20
    counts = df["category"].value_counts()
    assert counts.max() - counts.min() <= 1
    assert df.groupby("category")["distance"].max()["easy"] <= df.groupby("category")["distance"].min()["medium"]
    assert df.groupby("category")["distance"].max()["medium"] <= df.groupby("category")["distance"].min()["hard"]
    again = P.sample_pairs(tiny_root, ["test_00"], 6, "test", min_covisible=20, seed=3)
    pd.testing.assert_frame_equal(df, again)
    other = P.sample_pairs(tiny_root, ["test_00"], 5, "test", min_covisible=20, seed=4)
    assert not df["pair_id"].equals(other["pair_id"])
    # both directions are distinct queries
    assert df["pair_id"].is_unique


def test_load_pair_matches_model(tiny_root):
    df = P.sample_pairs(tiny_root, ["test_00"], 4, "test", min_covisible=20, seed=0)
    pair = P.load_pair(tiny_root, df.iloc[0])
    assert isinstance(pair, PairData) and pair.n > 20
    uv, ok = pair.source_camera.project(pair.points3d, pair.source_pose)
    assert ok.all() and pair.source_camera.in_image(uv, -2).mean() > 0.95
    capped = pair.capped(10, seed=1)
    assert capped.n == 10 and np.array_equal(capped.points3d, pair.capped(10, seed=1).points3d)


def test_external_pair_list(tiny_root, tmp_path):
    df = P.sample_pairs(tiny_root, ["test_00"], 4, "test", min_covisible=20, seed=0)
    f = tmp_path / "ext.csv"
    df[["scene", "source", "target"]].to_csv(f, index=False)
    ext = P.external_pairs(tiny_root, f, min_covisible=20)
    assert set(ext["pair_id"]) == set(df["pair_id"])


def test_both_layouts_and_clear_errors(tiny_root, tmp_path):
    # MegaDepth SfM release layout: sparse/manhattan/<k>/ with SIMPLE_RADIAL cameras
    src = tiny_root / "test_00"
    dst = tmp_path / "root" / "0016"
    shutil.copytree(src / "images", dst / "images")
    rec = pycolmap.Reconstruction(str(src / "sparse"))
    for cam in rec.cameras.values():
        f, _, cx, cy = cam.params
        cam.model = pycolmap.CameraModelId.SIMPLE_RADIAL
        cam.params = [f, cx, cy, 0.0]
    for k in ("0", "1"):
        (dst / "sparse" / "manhattan" / k).mkdir(parents=True)
        rec.write_binary(str(dst / "sparse" / "manhattan" / k))
    found = list_scenes(tmp_path / "root")
    assert sorted(found) == ["0016_0", "0016_1"]
    sc = load_scene(*found["0016_0"], "0016_0")
    assert next(iter(sc.images.values())).camera.model == "SIMPLE_RADIAL"
    # missing scene: reported and skipped
    assert list_scenes(tmp_path / "root", ["0016", "9999"]).keys() == found.keys()
    # missing image
    (dst / "images" / sorted(sc.images)[0]).unlink()
    load_scene.cache_clear()
    with pytest.raises(SceneError, match="absent"):
        load_scene(*found["0016_0"], "0016_0")
    # corrupt model file
    (dst / "sparse" / "manhattan" / "1" / "images.bin").write_bytes(b"garbage")
    with pytest.raises(SceneError, match="corrupt|images"):
        load_scene(*found["0016_1"], "0016_1")
    # missing model file
    (dst / "sparse" / "manhattan" / "1" / "points3D.bin").unlink()
    with pytest.raises(SceneError, match="points3D"):
        load_scene(dst / "sparse" / "manhattan" / "1", dst / "images")
