"""Inputs that used to give confident wrong "successes" are recorded failures with a truthful reason: a truncated
image, non-finite descriptors or maps, a rotation that is a reflection or not orthonormal, a map cache altered on
disk or made from other inputs."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers import DATA, SAMPLE, tiny_maps, tiny_pairs

from nre.data.images import encoded_problem, read_image, read_image_file
from nre.data.pairdata import PairData
from nre.estimators.base import Estimator, check_pose
from nre.estimators.problem import Result
from nre.estimators.runner import estimate_pairs
from nre.estimators.testing import matches_problem as synthetic_problem
from nre.features import get_backend
from nre.features.access import PairFeatures
from nre.features.base import enable_memo
from nre.features.dsift import DenseSift
from nre.geometry import Pose
from nre.maps import cache


def _truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# ------------------------------------------------------------------------------------------- truncated images
def test_truncated_jpeg_and_png_are_errors_naming_the_file(tmp_path):
    img = cv2.imread(str(DATA / "megadepth_tiny" / "0016" / "images" / "0000.jpg"))
    for ext, params in ((".jpg", [cv2.IMWRITE_JPEG_QUALITY, 92]), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                        (".jpg", [cv2.IMWRITE_JPEG_RST_INTERVAL, 2]), (".png", [])):  # fmt: skip
        path = tmp_path / f"x{ext}"
        cv2.imwrite(str(path), img, params)
        assert np.array_equal(read_image_file(path), cv2.imread(str(path)))  # same pixels as cv2.imread
        assert encoded_problem(path.read_bytes() + b"\0" * 50) is None  # trailing bytes after the end are fine
        _truncate(path)
        with pytest.raises(ValueError, match=rf"x\{ext}: truncated (JPEG|PNG)"):
            read_image(path)
    from PIL import Image  # an EXIF orientation is applied as cv2.imread does

    exif = Image.new("RGB", (60, 40)).getexif()
    exif[0x0112] = 6
    Image.fromarray(img[:40, :60, ::-1]).save(tmp_path / "exif.jpg", exif=exif)
    assert np.array_equal(read_image_file(tmp_path / "exif.jpg"), cv2.imread(str(tmp_path / "exif.jpg")))
    assert read_image_file(tmp_path / "exif.jpg").shape == (60, 40, 3)
    # a JPEG is cut anywhere: always refused (OpenCV decodes these partially, greying the rest)
    full = cv2.imencode(".jpg", img)[1].tobytes()
    for cut in (3, 100, 400, len(full) // 3, len(full) - 2, len(full) - 1):
        assert encoded_problem(full[:cut]).startswith("truncated JPEG"), cut
    with pytest.raises(ValueError, match="cannot read image"):
        read_image(tmp_path / "missing.jpg")


@pytest.fixture
def tiny_copy(tmp_path):
    """A writable copy of the committed MegaDepth-format scene 0016, its pairs and their map caches; ``remap()``
    reruns the maps job (its manifest), ``estimate(out)`` an estimate job (its rows by pair id)."""
    root = tmp_path / "md"
    shutil.copytree(DATA / "megadepth_tiny" / "0016", root / "0016")
    pairs, maps = tmp_path / "pairs.csv", tmp_path / "maps"
    table = tiny_pairs(pairs, 3, root=root)

    def remap() -> pd.DataFrame:
        return tiny_maps(pairs, maps, root=root).manifest.set_index("pair_id")

    def estimate(out: str) -> pd.DataFrame:
        estimate_pairs(pairs=pairs, root=root, maps_dir=maps, max_points=200, estimator="lo_ransac_poselib",
                       grid={"threshold": [8]}, out=tmp_path / out)  # fmt: skip
        return pd.read_parquet(tmp_path / out).set_index("pair_id")

    remap()
    return root, table, maps, remap, estimate


def test_a_truncated_image_is_a_recorded_failure_naming_it(tiny_copy):
    root, pairs, maps, remap, estimate = tiny_copy
    assert estimate("before.parquet")["success"].all()
    row = pairs.iloc[0]
    img = root / "0016" / "images" / row["target"]
    _truncate(img)
    users = pairs.loc[(pairs["source"] == row["target"]) | (pairs["target"] == row["target"]), "pair_id"]
    # the caches were made from the complete image: estimate refuses them (their input digest changed)
    df = estimate("stale.parquet")
    assert (~df.loc[users, "success"]).all() and df.drop(users.tolist())["success"].all()
    assert df.loc[users, "failure_reason"].str.contains(f"target image {img} changed|source image {img} changed").all()
    # nre maps recomputes them, and fails on the truncated file: estimate records that error for the pair
    m = remap()
    assert (m.loc[users, "status"] == "failed").all() and m.loc[users, "error"].str.contains("truncated JPEG").all()
    df = estimate("after.parquet")
    assert len(df) == len(pairs) and (~df.loc[users, "success"]).all()
    reasons = df.loc[users, "failure_reason"]
    assert reasons.str.contains("`nre maps` failed for this pair").all(), reasons.tolist()
    assert reasons.str.contains(f"{img}: truncated JPEG").all(), reasons.tolist()
    assert np.isinf(df.loc[users, "rotation_error_deg"]).all()


# ------------------------------------------------------------------------------------------- non-finite values
class NanSift(DenseSift):
    """Dense SIFT whose fine level is NaN: a backend with broken weights."""

    name = "nan_sift_test"

    def extract(self, image, levels=None):
        out = super().extract(image, levels)
        if "fine" in out:
            out["fine"].desc = out["fine"].desc * float("nan")
        return out


@pytest.fixture(scope="module")
def pair():
    return PairData.load_npz(SAMPLE)


def test_nan_descriptors_are_an_error_naming_image_backend_and_level(pair):
    with pytest.raises(ValueError, match=r"non-finite nan_sift_test descriptors at level 'fine' \(\d+ of \d+"):
        cache.compute_pair_cache(pair, NanSift(), 300, 0)
    # with the feature memo too, and in an estimator that reads descriptors: the reason says what happened
    backend = enable_memo(NanSift(), 64)
    prob = cache.problem_from_arrays(pair.capped(300, 0), cache.compute_pair_cache(pair, DenseSift(), 300, 0), 0)
    prob.features = PairFeatures(backend, pair.capped(300, 0))
    from nre.estimators import registry

    for name, opts in (("nre_c2f", {"msac_iterations": 200}), ("nre_single", {"msac_iterations": 200}), ("fpr", {})):
        [res] = registry.get(name)(**opts).run(prob, [registry.get(name)().default_setting()])
        assert all(not r.success for r in res), name
        assert all("non-finite nan_sift_test descriptors" in r.failure_reason for r in res), (name, res[0])
        assert str(pair.source_image) in res[-1].failure_reason or str(pair.target_image) in res[-1].failure_reason


def test_non_finite_maps_are_an_error(pair):
    """Finite descriptors but a temperature so small that the logits overflow: no cache of garbage argmaxes."""
    with pytest.raises(ValueError, match="non-finite coarse maps and dense-level maps"):
        cache.compute_pair_cache(pair, get_backend("dsift", temperature=1e-300), 300, 0)


# ------------------------------------------------------------------------------------------- invalid rotations
class _Fixed(Estimator):
    name = ""
    grid = {}

    def __init__(self, make, **kw):
        super().__init__(**kw)
        self.make = make

    def estimate_many(self, problem, settings):
        return [[Result(self.make(problem.gt_pose), runtime_s=0.0)] for _ in settings]


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda gt: Pose(np.diag([1.0, 1.0, -1.0]) @ gt.R, gt.t), "invalid rotation (det -1.000"),  # a reflection
        (lambda gt: Pose(-gt.R, gt.t), "invalid rotation (det -1.000"),
        (lambda gt: Pose(1.01 * gt.R, gt.t), "invalid rotation (det +1.030"),  # not orthonormal
        (lambda gt: Pose(gt.R + 1e-4, gt.t), "invalid rotation"),
        (lambda gt: Pose(gt.R, [np.inf, 0, 0]), "NaN pose"),
        (lambda gt: None, "NaN pose"),
    ],
)
def test_a_reflection_or_non_orthonormal_rotation_is_a_failure(make, reason):
    prob, _ = synthetic_problem(0, n=10)
    [[r]] = _Fixed(make).run(prob)
    assert not r.success and r.failure_reason.startswith(reason), r.failure_reason


def test_valid_rotations_pass_the_check():
    prob, _ = synthetic_problem(0, n=10)
    [[r]] = _Fixed(lambda gt: gt).run(prob)
    assert r.success
    from scipy.spatial.transform import Rotation

    for R in Rotation.random(200, random_state=0).as_matrix():
        assert check_pose(Pose(R, np.zeros(3))) is None


# ------------------------------------------------------------------------------------------- cache digests
def test_a_cache_altered_on_disk_or_made_from_other_inputs_is_detected(pair, tmp_path):
    backend = DenseSift()
    capped = pair.capped(300, 0)
    path = cache.save(tmp_path / f"{pair.pair_id}.npz", cache.compute_pair_cache(pair, backend, 300, 0))
    assert cache.is_current(path, pair.pair_id, backend, 300, 0, pair=capped)
    good = cache.load_problem(capped, path, 0)
    assert good.extras["cache_digest"] == str(cache.load(path)["content_digest"])
    # shift the matches by 5 px, keeping every other field (and the old digest) as it was
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez_compressed(path, **{**arrays, "match_xy": arrays["match_xy"] + 5})
    with pytest.raises(cache.CacheError, match="content digest mismatch: the cache was altered"):
        cache.load_problem(capped, path, 0)
    assert not cache.is_current(path, pair.pair_id, backend, 300, 0, pair=capped)  # nre maps recomputes it
    # the same maps for other inputs: moved 3D points, another source pose, another image file
    cache.save(path, arrays)
    moved = PairData(**{**capped.__dict__, "points3d": capped.points3d + 1e-3})
    with pytest.raises(cache.CacheError, match="made from other inputs: the points3d changed"):
        cache.load_problem(moved, path, 0)
    other_pose = PairData(**{**capped.__dict__, "source_pose": Pose(capped.source_pose.R, capped.source_pose.t + 1)})
    with pytest.raises(cache.CacheError, match="source pose changed"):
        cache.load_problem(other_pose, path, 0)
    img = tmp_path / "target.jpg"
    img.write_bytes(Path(capped.target_image).read_bytes() + b"\0")
    with pytest.raises(cache.CacheError, match=f"target image {img} changed"):
        cache.load_problem(PairData(**{**capped.__dict__, "target_image": img}), path, 0)
    assert not cache.is_current(path, pair.pair_id, backend, 300, 0, pair=moved)
    # a cache of the previous layout (no digests) is refused with the instruction to recompute
    old = {k: v for k, v in arrays.items() if k not in ("inputs", "content_digest")}
    np.savez_compressed(tmp_path / "old.npz", **{**old, "version": np.array(2)})
    with pytest.raises(cache.CacheError, match="cache layout 2 .* reads 3 .*recompute the maps"):
        cache.load(tmp_path / "old.npz")


def test_shifted_matches_on_disk_are_a_recorded_failure_of_nre_estimate(tiny_copy):
    root, pairs, maps, remap, estimate = tiny_copy
    pid = pairs["pair_id"].iloc[1]
    path = maps / f"{pid}.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez_compressed(path, **{**arrays, "match_xy": arrays["match_xy"] + [6.0, -4.0]})
    df = estimate("shifted.parquet")
    assert not df.loc[pid, "success"] and "content digest mismatch" in df.loc[pid, "failure_reason"]
    assert df.drop(pid)["success"].all()
    m = remap()  # the maps job sees the altered cache and recomputes it
    assert not m.loc[pid, "cached"] and m.drop(pid)["cached"].all() and (m["status"] == "ok").all()
    assert estimate("recomputed.parquet")["success"].all()
    with np.load(path) as z:
        np.testing.assert_array_equal(z["match_xy"], arrays["match_xy"])
