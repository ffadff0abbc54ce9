"""Scenes, the synthetic default and the pair builder."""

import shutil

import numpy as np
import pandas as pd
import pycolmap
import pytest
import yaml
from helpers import TINY_MD

from nre.data import pairs as P
from nre.data.pairdata import PairData
from nre.data.scenes import SceneError, check_model_files, list_scenes, load_scene


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
    # missing image: only that image is left out (and its pairs, see test_pairs_skip_...)
    gone = sorted(sc.images)[0]
    (dst / "images" / gone).unlink()
    load_scene.cache_clear()
    sc = load_scene(*found["0016_0"], "0016_0")
    assert gone not in sc.images and "image file missing" in sc.excluded[gone] and len(sc.images) == 9
    # corrupt model file
    (dst / "sparse" / "manhattan" / "1" / "images.bin").write_bytes(b"garbage")
    with pytest.raises(SceneError, match="corrupt|images"):
        load_scene(*found["0016_1"], "0016_1")
    # missing model file
    (dst / "sparse" / "manhattan" / "1" / "points3D.bin").unlink()
    with pytest.raises(SceneError, match="points3D"):
        load_scene(dst / "sparse" / "manhattan" / "1", dst / "images")


def test_scene_matcher_is_exact_nearest_neighbour_ratio_test():
    """The SfM matcher of nre synth against OpenCV's brute-force matcher: same ratio-test matches (before the
    epipolar check, which an all-zero F turns off: every Sampson distance is then 0)."""
    import cv2

    from nre.data.synth import _match

    rng = np.random.default_rng(3)
    d1 = rng.random((300, 128)).astype(np.float32) ** 3
    d2 = np.concatenate([d1[:150] + rng.normal(0, 0.02, (150, 128)), rng.random((200, 128)) ** 3]).astype(np.float32)
    x = rng.uniform(0, 100, (350, 2))
    m = _match(d1, d2, x[:300], x, np.zeros((3, 3)))
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
    ref = {(p[0].queryIdx, p[0].trainIdx): p[0].distance for p in knn if p[0].distance < 0.8 * p[1].distance}
    best = {}
    for (q, t), dist in ref.items():  # one per target keypoint: the closest
        if t not in best or dist < best[t][1]:
            best[t] = (q, dist)
    assert len(best) > 100
    assert {(q, t) for t, (q, _) in best.items()} == {tuple(r) for r in m.tolist()}


def test_track_filter_matches_a_per_track_loop():
    """The vectorised SfM track filter (reprojection <= 4 px in every view, largest ray angle >= 1.5 deg) against a
    plain loop over tracks and views."""
    from nre.data.synth import _track_filter
    from nre.geometry import Camera, Pose, so3_exp

    rng = np.random.default_rng(0)
    cams = [Camera("PINHOLE", 640, 480, [500, 500, 320, 240]) for _ in range(6)]
    poses = [Pose(so3_exp(rng.normal(0, 0.05, 3)), np.array([rng.normal(0, 0.3), 0, 10.0])) for _ in range(6)]
    X = rng.normal(0, 2, (500, 3))
    obs = []
    for t in range(500):
        ims = rng.choice(6, rng.integers(2, 6), replace=False)
        xy = np.stack([cams[i].project(X[t : t + 1], poses[i])[0][0] for i in ims])
        obs.append((ims, xy + rng.normal(0, 2.5, xy.shape)))
    ref = np.ones(500, bool)
    for ti, (ims, xy) in enumerate(obs):
        for i, p in zip(ims, xy):
            uv, ok = cams[i].project(X[ti : ti + 1], poses[i])
            ref[ti] &= bool(ok[0]) and np.linalg.norm(uv[0] - p) <= 4.0
        rays = np.stack([poses[i].center for i in ims]) - X[ti]
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        ref[ti] &= np.degrees(np.arccos(np.clip(rays @ rays.T, -1, 1).min())) >= 1.5
    keep = _track_filter(X, obs, cams, poses)
    assert 50 < ref.sum() < 450
    np.testing.assert_array_equal(keep, ref)


def _patched(tmp_path, file, edit):
    """A copy of the tiny scene 0033 whose ``file`` is rewritten by ``edit(bytearray) -> bytes``."""
    import struct  # noqa: F401  (used by the edits)

    root = tmp_path / f"root_{file}_{len(list(tmp_path.iterdir()))}"
    shutil.copytree(TINY_MD / "0033", root / "0033")
    path = root / "0033" / "sparse" / file
    path.write_bytes(bytes(edit(bytearray(path.read_bytes()))))
    return root / "0033" / "sparse", root / "0033" / "images"


def _set_u64(offset, value):
    import struct

    def edit(b):
        struct.pack_into("<Q", b, offset, value)
        return b

    return edit


def test_corrupt_binary_models_are_refused_before_pycolmap_reads_them(tmp_path, monkeypatch):
    """Counts and lengths are checked against the file size first: a corrupt points3D.bin made pycolmap allocate
    ~15 GB (2.2 GB and 12 s before bad_alloc under a 6 GB limit, measured). pycolmap is never called here."""

    def no_read(*a, **k):
        raise AssertionError("pycolmap.Reconstruction called on a corrupt model")

    monkeypatch.setattr(pycolmap, "Reconstruction", no_read)
    cases = {
        ("points3D.bin", "header counts 150000000 records"): _set_u64(0, 150_000_000),
        ("points3D.bin", "point 0 claims a track of 2000000000 elements"): _set_u64(8 + 43, 2_000_000_000),
        ("points3D.bin", "runs past the end|claims a track"): lambda b: b[:-100],  # truncated
        ("points3D.bin", "points end at byte"): lambda b: b + b"\0" * 16,  # count too small for the file
        ("images.bin", "header counts"): _set_u64(0, 10**12),
        ("cameras.bin", "unknown model id 999"): lambda b: b[:12] + (999).to_bytes(4, "little") + b[16:],
        ("cameras.bin", "shorter than its 8-byte header"): lambda b: b[:5],
    }
    for (file, msg), edit in cases.items():
        model_dir, image_dir = _patched(tmp_path, file, edit)
        with pytest.raises(SceneError, match=f"{file}: corrupt or truncated COLMAP file: .*({msg})"):
            load_scene(model_dir, image_dir, "0033")
    check_model_files(TINY_MD / "0033" / "sparse")  # the intact files pass
    check_model_files(TINY_MD / "0016" / "sparse" / "manhattan" / "0")


def test_a_failed_scene_read_is_not_repeated_for_every_pair(tmp_path, monkeypatch):
    """A model that passes the size checks but that pycolmap rejects (a point id its observations do not know) is
    read once per process: later pairs of the scene get the same error at once."""
    model_dir, image_dir = _patched(tmp_path, "points3D.bin", _set_u64(8, 10**9))
    calls = []
    real = pycolmap.Reconstruction
    monkeypatch.setattr(pycolmap, "Reconstruction", lambda *a: calls.append(a) or real(*a))
    row = {"pair_id": "0033__a__b", "scene": "0033", "source": "0000.jpg", "target": "0001.jpg"}
    root = model_dir.parents[1]
    for _ in range(4):
        with pytest.raises(SceneError, match="corrupt COLMAP model"):
            P.load_pair(root, row)
    assert len(calls) == 1


def _tiny_root_with_problems(tmp_path):
    """The tiny MegaDepth-format scenes with one image file deleted (0016_0) and one camera made fisheye (0033)."""
    root = tmp_path / "md"
    shutil.copytree(TINY_MD, root)
    (root / "0016" / "images" / "0004.jpg").unlink()
    rec = pycolmap.Reconstruction(str(root / "0033" / "sparse"))
    cam = rec.cameras[2]
    cam.model = pycolmap.CameraModelId.OPENCV_FISHEYE
    cam.params = [*cam.params[:1], *cam.params[:1], *cam.params[1:3], 0.0, 0.0, 0.0, 0.0][:8]
    rec.write_binary(str(root / "0033" / "sparse"))
    fisheye = sorted(im.name for im in rec.images.values() if im.camera_id == 2)
    return root, fisheye


def test_pairs_skip_only_pairs_of_missing_images_and_unsupported_cameras(tmp_path):
    """One missing image or one unsupported camera used to reject its whole scene and abort `nre pairs`: now only
    the pairs using them are skipped, each recorded with its reason in pairs.skipped.csv, and the table is built."""
    root, fisheye = _tiny_root_with_problems(tmp_path)
    out = tmp_path / "pairs.csv"
    args = dict(root=root, scenes=["0016"], min_covisible=20, out=out)
    P.build_pair_table(tuning_scenes=["0033"], n_pairs=500, n_tuning=500, **args)
    df, sk = pd.read_csv(out, dtype=str), pd.read_csv(out.with_suffix(".skipped.csv"), dtype=str)
    bad = {"0016_0": {"0004.jpg"}, "0033": set(fisheye)}
    for _, r in df.iterrows():
        assert not ({r["source"], r["target"]} & bad[r["scene"]])
    assert (
        set(sk["scene"]) == {"0016_0", "0033"}
        and (sk["split"] == sk["scene"].map({"0016_0": "test", "0033": "tuning"})).all()
    )
    for _, r in sk.iterrows():
        assert {r["source"], r["target"]} & bad[r["scene"]]
        assert ("image file missing" if r["scene"] == "0016_0" else "unsupported camera model") in r["reason"]
    # nothing else is lost: usable + skipped = the candidates of the intact scenes
    for scene, (model, images) in list_scenes(TINY_MD).items():
        full = set(P.candidate_pairs(load_scene(model, images, scene), 20)["pair_id"])
        assert full == set(df.loc[df["scene"] == scene, "pair_id"]) | set(sk.loc[sk["scene"] == scene, "pair_id"])
    # a pair table that still lists a skipped pair: that pair fails alone, with the reason
    r = sk.iloc[0]
    with pytest.raises(SceneError, match="left out"):
        P.load_pair(root, r)
    # an unreadable scene is skipped and recorded, the other scene still gives pairs
    (root / "0033" / "sparse" / "points3D.bin").write_bytes(b"\0" * 5)
    load_scene.cache_clear()
    P.build_pair_table(**dict(args, scenes=["0016", "0033"]), n_pairs=50)
    sk = pd.read_csv(out.with_suffix(".skipped.csv"), dtype=str)
    assert (sk.loc[sk["pair_id"].isna(), "scene"] == "0033").all() and sk["reason"].str.contains("points3D.bin").any()
    assert set(pd.read_csv(out, dtype=str)["scene"]) == {"0016_0"}
