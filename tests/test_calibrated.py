"""Photographs with calibrated cameras (nre.data.calibrated, `nre scene`): the Strecha camera reader and its
conventions, the scene build at fixed poses on the committed subset (tests/data/strecha_small: six fountain-P11
photographs at 768 x 512 with their original 3072 x 2048 camera files), its consistency check against deliberately
wrong conventions, COLMAP input, and config/strecha.yaml in the workflow. One build of the subset takes ~7-10 s."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from nre.cli import main
from nre.data.calibrated import (
    STRECHA_PIXEL_CENTRE,
    read_strecha_camera,
    read_strecha_scene,
    triangulate_known_poses,
)
from nre.errors import InputError
from nre.geometry import Camera, Pose, so3_exp

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "tests" / "data" / "strecha_small"
FOUNTAIN = SMALL / "fountain-P11"
K_FULL = np.array([[2759.48, 0, 1520.69], [0, 2764.16, 1006.81], [0, 0, 1]])


def _camera_text(K=K_FULL, dist=(0, 0, 0), R=None, C=(1.0, -2.0, 0.5), size=(3072, 2048)) -> str:
    R = so3_exp(np.array([0.3, -0.2, 0.1])) if R is None else np.asarray(R)
    rows = [*np.asarray(K).tolist(), list(dist), *R.tolist(), list(C), list(size)]
    return "\n".join(" ".join(f"{v:.12g}" for v in r) for r in rows) + "\n"


# ---------------------------------------------------------------------------------------------- the reader
def test_strecha_camera_pose_convention_and_k_scaling(tmp_path):
    """x_world = R x_camera + C -> world-to-camera (R^T, -R^T C); K scaled to the image read through the pixel-centre
    transform x' + 0.5 = s (x + 0.5) (the Strecha K's top-left pixel centre is (0, 0)); COLMAP's 0.5 added once."""
    R = so3_exp(np.array([0.3, -0.2, 0.1]))
    C = np.array([1.0, -2.0, 0.5])
    f = tmp_path / "0000.jpg.camera"
    f.write_text(_camera_text(R=R, C=C))
    full, pose = read_strecha_camera(f)
    assert STRECHA_PIXEL_CENTRE == 0.0 and full.model == "PINHOLE" and full.size == (3072, 2048)
    np.testing.assert_allclose(full.K, K_FULL)
    np.testing.assert_allclose(pose.R, R.T, atol=1e-12)
    np.testing.assert_allclose(pose.center, C, atol=1e-12)  # the camera sits at C
    X = np.array([[0.5, 0.2, 6.0], [-1.0, 1.0, 9.0]]) @ R.T + C  # points in front of the camera
    np.testing.assert_allclose(pose.transform(X), [[0.5, 0.2, 6.0], [-1.0, 1.0, 9.0]], atol=1e-12)
    uv_full, front = full.project(X, pose)
    assert front.all()
    for size in ((1536, 1024), (768, 512)):
        cam, pose_s = read_strecha_camera(f, size)
        s = size[0] / 3072
        np.testing.assert_allclose(cam.params, [2759.48 * s, 2764.16 * s, (1520.69 + 0.5) * s - 0.5,
                                                (1006.81 + 0.5) * s - 0.5])  # fmt: skip
        np.testing.assert_allclose(cam.project(X, pose_s)[0], (uv_full + 0.5) * s - 0.5)
        np.testing.assert_allclose(cam.to_pycolmap().params[2:], (np.array([1520.69, 1006.81]) + 0.5) * s)  # COLMAP's


def _bad_files():
    R = so3_exp(np.array([0.3, -0.2, 0.1]))
    K_skew = K_FULL.copy()
    K_skew[0, 1] = 3.0
    return {
        "count": ("1 2 3\n", "4 numbers, expected 26"[1:]),
        "non-numeric": (_camera_text().replace("2759.48", "abc"), "non-numeric"),
        "distortion": (_camera_text(dist=(0.1, 0, 0)), "non-zero radial distortion"),
        "not a rotation": (_camera_text(R=R * 1.1), "R is not a rotation"),
        "reflection": (_camera_text(R=-R), "R is not a rotation"),
        "skew": (_camera_text(K=K_skew), "skew"),
        "size": (_camera_text(size=(3072.5, 2048)), "positive integers"),
        "negative focal": (_camera_text(K=K_FULL * [[-1], [1], [1]]), "positive focal"),
    }


@pytest.mark.parametrize("case", sorted(_bad_files()))
def test_bad_camera_files_are_one_line_naming_the_file(case, tmp_path):
    text, words = _bad_files()[case]
    f = tmp_path / "0000.jpg.camera"
    f.write_text(text)
    with pytest.raises(InputError) as e:
        read_strecha_camera(f)
    msg = str(e.value)
    assert msg.startswith(str(f)) and words in msg and "\n" not in msg, msg


def test_strecha_scene_errors(tmp_path):
    scene = tmp_path / "root" / "s"
    shutil.copytree(FOUNTAIN, scene)
    with pytest.raises(InputError, match="the image is 768x512 but the camera is 3072x1000: not one scaling"):
        (scene / "cameras" / "0002.jpg.camera").write_text(_camera_text(size=(3072, 1000)))
        read_strecha_scene(scene)
    (scene / "cameras" / "0002.jpg.camera").unlink()
    with pytest.raises(InputError, match=r"0002.jpg: no camera file .*0002.jpg.camera"):
        read_strecha_scene(scene)
    # openMVG's layout: gt_dense_cameras/, and a camera file named after another image format
    shutil.rmtree(scene)
    shutil.copytree(FOUNTAIN / "images", scene / "images")
    shutil.copytree(FOUNTAIN / "cameras", scene / "gt_dense_cameras")
    (scene / "gt_dense_cameras" / "0003.jpg.camera").rename(scene / "gt_dense_cameras" / "0003.png.camera")
    assert sorted(read_strecha_scene(scene)) == sorted(p.name for p in (FOUNTAIN / "images").iterdir())
    assert main(["scene", "strecha", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert main(["scene", "strecha", str(scene), str(tmp_path / "out")]) == 2  # a scene, not a root


def _dlt(P1, P2, x1, x2):
    A = np.stack([x1[:, :1] * P1[2] - P1[0], x1[:, 1:] * P1[2] - P1[1],
                  x2[:, :1] * P2[2] - P2[0], x2[:, 1:] * P2[2] - P2[1]], 1)  # fmt: skip
    X = np.linalg.svd(A)[2][:, -1]
    return X[:, :3] / X[:, 3:]


def _wrong(views, kind):
    """The reader's views with one convention deliberately wrong."""
    out = {}
    for n, (cam, pose) in views.items():
        R_file, C = pose.R.T, pose.center  # what the camera file holds
        if kind == "C_as_t":
            pose = Pose(R_file.T, C)
        elif kind == "R_not_transposed":
            pose = Pose(R_file, -R_file.T @ C)
        elif kind == "K_not_scaled":  # K kept at 3072 x 2048 for the 768 x 512 image
            cam = Camera("PINHOLE", cam.width, cam.height, np.r_[cam.params[:2] * 4, (cam.params[2:] + 0.5) * 4 - 0.5])
        elif kind == "half_pixel":  # COLMAP's 0.5 applied twice
            cam = Camera("PINHOLE", cam.width, cam.height, cam.params + [0, 0, 0.5, 0.5])
        elif kind == "naive_scaling":  # cx * s instead of (cx + 0.5) s - 0.5
            cam = Camera("PINHOLE", cam.width, cam.height, cam.params + [0, 0, 0.375, 0.375])
        out[n] = (cam, pose)
    return out


def _three_view_errors(views):
    """OpenCV SIFT (no pycolmap) on three photographs: matches chained 0 -> 1 -> 2, each point triangulated from views
    0 and 1 with the given cameras and reprojected into view 2: the errors in pixels."""
    import cv2

    names = ["0003.jpg", "0004.jpg", "0005.jpg"]
    sift, bf = cv2.SIFT_create(4000), cv2.BFMatcher()
    kp, des = [], []
    for n in names:
        k, d = sift.detectAndCompute(cv2.imread(str(FOUNTAIN / "images" / n), cv2.IMREAD_GRAYSCALE), None)
        kp.append(np.array([p.pt for p in k]))
        des.append(d)

    def match(a, b):
        return {m.queryIdx: m.trainIdx for m, m2 in bf.knnMatch(des[a], des[b], k=2) if m.distance < 0.75 * m2.distance}

    m01, m12 = match(0, 1), match(1, 2)
    tracks = np.array([(i, j, m12[j]) for i, j in m01.items() if j in m12])
    assert len(tracks) > 100
    (c0, p0), (c1, p1), (c2, p2) = (views[n] for n in names)
    P = [c.K @ np.hstack([p.R, p.t[:, None]]) for c, p in ((c0, p0), (c1, p1))]
    X = _dlt(P[0], P[1], kp[0][tracks[:, 0]], kp[1][tracks[:, 1]])
    uv, front = c2.project(X, p2)
    return np.where(front, np.linalg.norm(uv - kp[2][tracks[:, 2]], axis=1), np.inf)


def test_reader_convention_a_point_from_two_views_reprojects_into_a_third():
    views = read_strecha_scene(FOUNTAIN)
    assert {c.size for c, _ in views.values()} == {(768, 512)}
    e = _three_view_errors(views)
    assert np.median(e) < 0.5 and np.mean(e < 1.0) > 0.8, (np.median(e), np.mean(e < 1.0))
    for kind in ("C_as_t", "R_not_transposed", "K_not_scaled"):
        e = _three_view_errors(_wrong(views, kind))
        assert np.median(e) > 20 and np.mean(e < 1.0) < 0.05, kind


# ---------------------------------------------------------------------------------------------- the build
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("strecha_scenes")
    assert main(["scene", "strecha", str(SMALL), str(out)]) == 0
    return out


def test_scene_build_end_to_end(built, tmp_path):
    import cv2
    import pandas as pd

    from nre.data.pairs import candidate_pairs
    from nre.data.scenes import list_scenes, load_scene

    rep = json.loads((built / "fountain-P11" / "triangulation" / "report.json").read_text())
    assert rep["ok"] and rep["images"] == 6 and rep["verified_pairs"] == 15, rep
    assert rep["points"] > 2000 and rep["observations"] > 3 * rep["points"], rep
    assert rep["median_reprojection_error_px"] < 0.3 and rep["p90_reprojection_error_px"] < 0.8, rep
    assert set(rep["seconds"]) == {"images", "features", "matching", "triangulation", "output", "check"}
    # the MegaDepth layout, read by the project's scene reader: cameras of the images' size, poses the truth's
    found = list_scenes(built)
    assert list(found) == ["fountain-P11"]
    sc = load_scene(*found["fountain-P11"], "fountain-P11")
    truth = read_strecha_scene(FOUNTAIN)
    assert sorted(sc.images) == sorted(truth) and len(sc.point_ids) == rep["points"]
    for name, im in sc.images.items():
        h, w = cv2.imread(str(im.path)).shape[:2]
        cam, pose = truth[name]
        assert im.camera.size == (w, h) == (768, 512)
        np.testing.assert_allclose(im.camera.params, cam.params, atol=1e-9)
        np.testing.assert_allclose(im.pose.matrix, pose.matrix, atol=1e-12)  # fixed: no adjustment of the poses
    assert len(candidate_pairs(sc, 50)) == 30
    # pairs with a disjoint image split for tuning, as config/strecha.yaml asks
    out = tmp_path / "pairs.csv"
    args = ["pairs", "--root", str(built), "--scenes", "fountain-P11", "--n-pairs", "100", "--n-tuning", "100"]
    assert main([*args, "--tuning-from", "same-scene", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    test, tun = df[df.split == "test"], df[df.split == "tuning"]
    assert len(test) == 12 and len(tun) == 2 and set(test.category) == {"easy", "medium", "hard"}
    assert not (set(test.source) | set(test.target)) & (set(tun.source) | set(tun.target))


def test_scene_build_is_deterministic(built, tmp_path):
    assert main(["scene", "strecha", str(SMALL), str(tmp_path), "--scenes", "fountain-P11"]) == 0
    for f in ("cameras.bin", "images.bin", "points3D.bin"):
        a, b = (root / "fountain-P11" / "sparse" / f for root in (tmp_path, built))
        assert a.read_bytes() == b.read_bytes(), f


@pytest.mark.parametrize("kind", ["C_as_t", "R_not_transposed", "K_not_scaled"])
def test_wrong_conventions_fail_loudly(kind, tmp_path):
    views = _wrong(read_strecha_scene(FOUNTAIN), kind)
    with pytest.raises(InputError) as e:
        triangulate_known_poses(FOUNTAIN / "images", views, tmp_path, "fountain-P11")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("scene fountain-P11: the triangulated points do not fit the given "
                                              "cameras") and "median" in msg and "points" in msg, msg  # fmt: skip
    rep = json.loads((tmp_path / "fountain-P11" / "triangulation" / "report.json").read_text())
    assert not rep["ok"] and (rep["points"] < 100 or rep["median_reprojection_error_px"] > 1), rep
    assert not (tmp_path / "fountain-P11" / "sparse").exists()  # no later stage can read it


@pytest.mark.parametrize("kind", ["half_pixel", "naive_scaling"])
def test_half_pixel_conventions_raise_the_error_but_pass(kind, built, tmp_path):
    """A principal point off by half a pixel (COLMAP's 0.5 applied twice) or scaled without the pixel-centre shift
    still fits within the check's bounds: it only raises the reprojection error. The build is deterministic, so the
    comparison is exact."""
    ref = json.loads((built / "fountain-P11" / "triangulation" / "report.json").read_text())
    rep = triangulate_known_poses(FOUNTAIN / "images", _wrong(read_strecha_scene(FOUNTAIN), kind), tmp_path, kind)
    assert rep.ok and rep.median_reprojection_error_px > ref["median_reprojection_error_px"], rep
    assert rep.mean_reprojection_error_px > ref["mean_reprojection_error_px"], rep


def test_colmap_model_with_trusted_poses(built, tmp_path):
    """`nre scene colmap`: a model without points, with distortion-model cameras (a negligible k1: the undistortion
    path) and downscaled on the way (--max-image-size): re-triangulated at its fixed poses."""
    import pycolmap

    rec = pycolmap.Reconstruction(str(built / "fountain-P11" / "sparse"))
    for cam in rec.cameras.values():
        fx, fy, cx, cy = cam.params
        new = pycolmap.Camera(model="OPENCV", width=cam.width, height=cam.height,
                              params=[fx, fy, cx, cy, 1e-4, 0, 0, 0], camera_id=cam.camera_id)  # fmt: skip
        rec.cameras[cam.camera_id] = new
    model = tmp_path / "model"
    model.mkdir()
    rec.write(model)
    (model / "points3D.bin").unlink()  # points are optional
    out = tmp_path / "out"
    images = built / "fountain-P11" / "images"
    args = ["scene", "colmap", str(images), str(model), str(out), "--scene", "rig", "--max-image-size", "512"]
    assert main(args) == 0
    rep = json.loads((out / "rig" / "triangulation" / "report.json").read_text())
    assert rep["ok"] and rep["points"] > 1000 and rep["median_reprojection_error_px"] < 0.3, rep
    res = pycolmap.Reconstruction(str(out / "rig" / "sparse"))
    assert {c.model.name for c in res.cameras.values()} == {"PINHOLE"}
    assert all(abs(c.width - 512) <= 2 and abs(c.height - 341) <= 2 for c in res.cameras.values())
    ref = {im.name: im for im in rec.images.values()}
    for im in res.images.values():
        np.testing.assert_allclose(im.cam_from_world().matrix(), ref[im.name].cam_from_world().matrix(), atol=1e-12)
    assert main(["scene", "colmap", str(images), str(tmp_path / "none"), str(out), "--scene", "x"]) == 2


# ---------------------------------------------------------------------------------------------- the workflow
def _strecha_config(tmp_path, calibrated=None, **data):
    """config/strecha.yaml pointed at the committed subset (edits: ``calibrated`` keys, other data keys)."""
    cfg = yaml.safe_load((REPO / "config" / "strecha.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    calibrated = {**cfg["data"]["calibrated"], "root": str(SMALL), **(calibrated or {})}
    cfg["data"].update(root=str(tmp_path / "data"), calibrated=calibrated, **data)
    path = tmp_path / "strecha.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _snakemake(*args):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=REPO, capture_output=True, text=True)


def test_strecha_config_dry_run_on_the_subset(tmp_path):
    import shlex

    p = _snakemake("-n", "-p", "--configfile", _strecha_config(tmp_path))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    stats = p.stdout.split("Job stats")[1]
    assert "calibrated_scene        1" in stats and "estimate" in stats
    cmds = [shlex.split(ln.split("Shell command: ", 1)[1]) for ln in p.stdout.splitlines() if "command: nre" in ln]
    scene = next(c for c in cmds if c[:3] == ["nre", "scene", "strecha"])
    assert scene[3:6] == [str(SMALL), str(tmp_path / "data"), "--scenes"] and scene[6] == "fountain-P11"
    pairs = next(c for c in cmds if c[:2] == ["nre", "pairs"])
    assert pairs[pairs.index("--scenes") + 1] == "fountain-P11" and "same-scene" in pairs
    # the triangulated scenes are test scenes: no training on them
    p = _snakemake("-n", "train", "--configfile", _strecha_config(tmp_path))
    assert p.returncode != 0 and "test scenes" in p.stdout + p.stderr


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"calibrated": {"root": "/nowhere"}}, "data.calibrated.root", "does not exist"),
        ({"calibrated": {"scenes": ["castle-P30"]}}, "data.calibrated.scenes", "no scene castle-P30"),
        ({"calibrated": {"model": "m"}}, "data.calibrated.model", "a key of format colmap"),
        ({"calibrated": {"format": "colmap"}}, "data.calibrated", "'images' is a required property"),
        ({"sfm": {"images": "x"}}, "data.calibrated", "data.sfm and data.calibrated are exclusive"),
        ({"test_scenes": ["entry-P10"]}, "data.test_scenes", "not among data.calibrated's scenes"),
    ],
)
def test_strecha_config_problems_are_one_line(data, key, words, tmp_path):
    from nre.workflow.config import ConfigError, check_config

    cfg = yaml.safe_load(Path(_strecha_config(tmp_path, **data)).read_text())
    with pytest.raises(ConfigError) as e:
        check_config(cfg, "strecha.yaml")
    msg = str(e.value)
    assert msg.startswith(f"strecha.yaml: {key}: ") and words in msg and "\n" not in msg, msg


def test_strecha_config_runs_end_to_end_on_the_subset(tmp_path):
    """config/strecha.yaml, thinned (two backends, four estimators, one chunk, no timing), run for real on the
    committed subset: calibrated scene -> pairs -> maps -> estimates -> tables -> report. Every test pair gets a row
    per estimator and backend, and on real photographs with calibrated cameras the estimators recover the poses."""
    import pandas as pd

    cfg = yaml.safe_load(Path(_strecha_config(tmp_path)).read_text())
    cfg.update(
        chunks=1,
        features={"dsift": {}, "xfeat": {}},
        table1_features=["dsift", "xfeat"],
        estimators={
            "nre_c2f": {},
            "re_gauss": {"grid": {"sigma": [5]}},
            "lo_ransac_poselib": {"grid": {"threshold": [8]}},
            "oracle": {},
        },  # fmt: skip
        timing={"enabled": False},
        figures={"map_pictures": 0},
        selection={"bootstrap": 50},
    )
    path = tmp_path / "thin.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = _snakemake("--cores", "2", "--configfile", str(path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    ev = tmp_path / "run" / "eval"
    assert (tmp_path / "run" / "report.html").is_file() and (ev / "table1_paper_xfeat.csv").is_file()
    pairs = pd.read_csv(tmp_path / "run" / "pairs.csv")
    rows = pd.read_parquet(ev / "rows.parquet")
    final = rows[rows["stage"].isin(["", "fine_gnc"])]
    n = final.groupby(["features", "estimator"])["pair_id"].nunique()
    assert len(n) == 8 and (n == len(pairs)).all(), n
    test = final[final["split"] == "test"]
    med = test.groupby(["features", "estimator"])["rotation_error_deg"].median()
    assert (med < 0.5).all(), med
