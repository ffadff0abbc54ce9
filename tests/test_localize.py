"""`nre localize` on a pair rendered from real photographs (scikit-image's) with a known pose."""

import json

from nre.cli import main
from nre.data.pairs import load_pair, sample_pairs
from nre.pair import PairData


def test_localize_all_estimators_on_rendered_pair(tiny_root, tmp_path):
    df = sample_pairs(tiny_root, ["test_00"], 6, "test", min_covisible=20, seed=0)
    row = df.sort_values("n_covisible", ascending=False).iloc[0]
    pair = load_pair(tiny_root, row)
    # ground truth = the renderer's pose, images referenced by file name next to the npz
    import shutil

    for im in (pair.source_image, pair.target_image):
        shutil.copy(im, tmp_path / im.name)
    pair.source_image, pair.target_image = tmp_path / pair.source_image.name, tmp_path / pair.target_image.name
    pair.save_npz(tmp_path / "pair.npz")
    loaded = PairData.load_npz(tmp_path / "pair.npz")
    assert loaded.n == pair.n and loaded.target_camera.model == "PINHOLE"
    out = tmp_path / "res.json"
    assert main(["localize", str(tmp_path / "pair.npz"), "--estimator", "all", "--json", str(out)]) == 0
    res = json.loads(out.read_text())["estimators"]
    assert {"nre_c2f", "nre_single", "lo_ransac_poselib", "magsac_pp", "re_gauss", "oracle"} <= set(res)
    assert set(res["nre_c2f"]["stages"]) == {"p3p", "coarse_gnc", "fine_gnc"}
    for name in ("nre_single", "lo_ransac_poselib", "lo_ransac_pycolmap", "re_gauss", "oracle"):
        assert res[name]["success"], name
        assert res[name]["rotation_error_deg"] < 5.0, (name, res[name])


def test_bad_pair_file_gives_clear_error(tmp_path):
    import numpy as np
    import pytest

    np.savez(tmp_path / "bad.npz", p3D=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="missing keys"):
        PairData.load_npz(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="no such pair"):
        PairData.load_npz(tmp_path / "nope.npz")
