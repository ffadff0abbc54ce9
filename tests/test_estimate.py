"""The estimate job (``nre.estimators.runner.estimate_pairs``, ``nre estimate``) with mocked loaders, and the result
rows of ``nre.estimators.rows``.

The real loaders (nre.data.pairs.load_pair, nre.maps.cache.load_problem) are exercised end to end on the committed tiny
MegaDepth scenes by tests/test_workflow.py::test_real_data_path_and_chunking_invariance."""

import json
import math
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from nre.errors import OptionError, UnknownNameError
from nre.estimators.problem import Result
from nre.estimators.rows import COLUMNS, read, rows_from_results, write
from nre.estimators.runner import estimate_pairs
from nre.estimators.testing import matches_problem as synthetic_problem
from nre.seeding import derive_seed

PAIRS = ["sA_p0", "sA_p1", "sB_bad", "sB_nocache", "sB_p4"]


class _Pair:
    def __init__(self, pair_id, problem):
        self.pair_id, self.problem = pair_id, problem
        self.target_pose = problem.gt_pose
        self.points3d, self.target_camera = problem.points3d, problem.camera

    def capped(self, max_points, seed):
        assert max_points == 300
        return self


@pytest.fixture
def mocked(tmp_path, monkeypatch):
    import nre.data.pairs
    import nre.maps.cache

    pairs = tmp_path / "pairs.csv"
    rows = [
        {"pair_id": p, "scene": p[:2], "category": ["easy", "medium", "hard"][i % 3], "split": "test"}
        for i, p in enumerate(PAIRS)
    ]
    pd.DataFrame(rows).to_csv(pairs, index=False)
    seeds_file = tmp_path / "seeds.jsonl"  # the pairs run in a forked worker: it reports through a file

    def seeds():
        if not seeds_file.exists():
            return {}
        return dict(json.loads(ln) for ln in seeds_file.read_text().splitlines())

    def load_pair(root, row):
        if row["pair_id"] == "sB_bad":
            raise ValueError(f"{root}/sB: image 12 has no camera")
        return _Pair(row["pair_id"], synthetic_problem(PAIRS.index(row["pair_id"]), n=300, outliers=0.5)[0])

    def load_problem(pair, cache_path, seed, backend=None, features=None):
        if pair.pair_id == "sB_nocache":
            raise nre.maps.cache.CacheError(f"{cache_path}: no map cache (run `nre maps` first)")
        assert str(cache_path).endswith(f"{pair.pair_id}.npz")
        with open(seeds_file, "a") as f:
            f.write(json.dumps([pair.pair_id, seed]) + "\n")
        pair.problem.seed = seed
        pair.problem.pair_id = pair.pair_id
        return pair.problem

    monkeypatch.setattr(nre.data.pairs, "load_pair", load_pair)
    monkeypatch.setattr(nre.maps.cache, "load_problem", load_problem)

    def run(estimator, out="rows.parquet", **kw):
        estimate_pairs(pairs=pairs, root=tmp_path, maps_dir=tmp_path / "maps", max_points=300, seed=7,
                       out=tmp_path / out, estimator=estimator, **kw)  # fmt: skip
        return pd.read_parquet(tmp_path / out)

    return run, seeds


def test_rows_for_every_pair_and_setting_failures_recorded(mocked):
    run, seeds = mocked
    df = run("lo_ransac_poselib", grid={"threshold": [2, 4]})
    assert list(df.columns) == COLUMNS and len(df) == 2 * len(PAIRS)
    assert df.groupby("pair_id").size().to_dict() == dict.fromkeys(PAIRS, 2)
    assert set(df["params"]) == {'{"threshold": 2}', '{"threshold": 4}'}
    bad = df[df["pair_id"].isin(["sB_bad", "sB_nocache"])]
    assert (~bad["success"]).all() and np.isinf(bad["rotation_error_deg"]).all() and bad["qw"].isna().all()
    assert bad.loc[bad["pair_id"] == "sB_bad", "failure_reason"].str.contains("has no camera").all()
    assert bad.loc[bad["pair_id"] == "sB_nocache", "failure_reason"].str.contains("no map cache").all()
    good = df[~df["pair_id"].isin(["sB_bad", "sB_nocache"])]
    assert good["success"].all() and (good["rotation_error_deg"] < 0.2).all() and (good["inliers"] > 100).all()
    assert (good["estimator"] == "lo_ransac_poselib").all() and (good["features"] == "dsift").all()
    assert json.loads(good["diagnostics"].iloc[0])["max_iterations"] == 10000
    assert "poselib" in json.loads(df["versions"].iloc[0])
    # per-pair seeds: derived from (config seed, pair id, estimator), whatever the chunking
    expected = {p: derive_seed(7, p, "lo_ransac_poselib") for p in PAIRS if p not in ("sB_bad", "sB_nocache")}
    assert seeds() == expected
    grid = {"threshold": [2, 4]}
    parts = [run("lo_ransac_poselib", grid=grid, chunk=f"{k}/2", out=f"{k}.pq") for k in range(2)]
    parts = pd.concat(parts, ignore_index=True)
    cols = ["pair_id", "params", "success", "qw", "qx", "qy", "qz", "tx", "ty", "tz", "inliers"]
    pd.testing.assert_frame_equal(df[cols], parts[cols])


def test_estimator_exception_and_label(mocked, tmp_path, monkeypatch):
    run, _ = mocked
    pkg = tmp_path / "toyest_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "toy.py").write_text(
        textwrap.dedent("""
        from nre.estimators.base import Estimator
        from nre.estimators.problem import Result

        class Toy(Estimator):
            name = "toy"
            grid = {"k": [1, 2, 3]}
            stages = ("first", "second")

            def estimate_many(self, problem, settings):
                if problem.pair_id == "sA_p1":
                    raise FloatingPointError("diverged")
                return [[Result(problem.gt_pose, runtime_s=0.1, stage=s) for s in self.stages] for _ in settings]
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        df = run("toyest_pkg.toy:Toy", label="my_toy", grid={"k": [1, 3]})
    finally:
        sys.modules.pop("toyest_pkg.toy", None)
        sys.modules.pop("toyest_pkg", None)
    assert len(df) == len(PAIRS) * 2 * 2 and (df["estimator"] == "my_toy").all()
    assert set(df["stage"]) == {"first", "second"}
    p1 = df[df["pair_id"] == "sA_p1"]
    assert (~p1["success"]).all() and p1["failure_reason"].str.contains("FloatingPointError: diverged").all()
    ok = df[df["pair_id"] == "sA_p0"]
    assert ok["success"].all() and (ok["rotation_error_deg"] < 1e-6).all()


def test_imported_poses_need_no_maps(mocked, tmp_path):
    from nre.geometry import R_to_quat_wxyz

    run, seeds = mocked
    rows = []
    for p in ["sA_p0", "sB_nocache"]:
        gt = synthetic_problem(PAIRS.index(p), n=300, outliers=0.5)[0].gt_pose
        q = R_to_quat_wxyz(gt.R)
        rows.append(dict(pair_id=p, qw=q[0], qx=q[1], qy=q[2], qz=q[3], tx=gt.t[0], ty=gt.t[1], tz=gt.t[2]))
    pd.DataFrame(rows).to_csv(tmp_path / "poses.csv", index=False)
    options = {"csv": str(tmp_path / "poses.csv")}
    df = run("imported", label="external", options=options).set_index("pair_id")
    assert not seeds()  # the map cache was never read
    assert df.loc[["sA_p0", "sB_nocache"], "success"].all()
    assert (df.loc[["sA_p0", "sB_nocache"], "rotation_error_deg"] < 1e-4).all()
    assert df.loc["sA_p1", "failure_reason"] == "no imported pose for this pair"
    assert "has no camera" in df.loc["sB_bad", "failure_reason"]


def test_bad_arguments_are_clear_errors(mocked):
    run, _ = mocked
    with pytest.raises(OptionError, match="no hyperparameter 'treshold'"):
        run("lo_ransac_poselib", grid={"treshold": [2]})
    # grid values of the wrong type used to run and fail every pair (exit 0, 100% failures)
    with pytest.raises(OptionError, match=r"--grid threshold\[0\]: 'four' is not a number"):
        run("lo_ransac_poselib", grid={"threshold": ["four"]})
    with pytest.raises(OptionError, match=r"--grid loss\[1\]: 'cauchyy' is not one of"):
        run("fpr", grid={"loss": ["huber", "cauchyy"]})
    with pytest.raises(OptionError, match="must map names to non-empty lists"):
        run("fpr", grid={"loss": []})
    with pytest.raises(OptionError, match="no option 'max_iter'"):
        run("lo_ransac_poselib", options={"max_iter": 3})
    with pytest.raises(OptionError, match="max_iterations: '3' is not an integer"):
        run("lo_ransac_poselib", options={"max_iterations": "3"})
    with pytest.raises(UnknownNameError, match="available: .*oracle"):
        run("lo_ransac_poselb")
    with pytest.raises(OptionError, match="chunk"):
        run("oracle", chunk="3/2")


def test_rows_from_results_schema(tmp_path):
    prob, _ = synthetic_problem(0, n=20)
    settings = [{"b": 2, "a": 1}, {"b": 3, "a": 1}]
    results = [
        [Result(prob.gt_pose, runtime_s=0.5, inliers=12, diagnostics={"low_support": True, "x": np.float32(np.nan)})],
        [Result.failure("NaN pose", 0.1, diagnostics={"nested": {"v": np.arange(2), "f": np.inf}})],
    ]
    row = pd.Series({"pair_id": "p", "scene": "s", "category": "hard", "split": "tuning", "extra": 1})
    rows = rows_from_results(prob, row, "est", settings, results, {"numpy": "2"}, "dsift")
    a, b = rows
    assert a["params"] == '{"a": 1, "b": 2}' and a["success"] and a["rotation_error_deg"] < 1e-6
    assert a["low_support"] and a["inliers"] == 12 and json.loads(a["diagnostics"]) == {"low_support": True, "x": None}
    assert not b["success"] and b["failure_reason"] == "NaN pose" and b["inliers"] == -1
    assert math.isinf(b["rotation_error_deg"]) and math.isinf(b["translation_error"]) and math.isnan(b["qw"])
    assert json.loads(b["diagnostics"]) == {"nested": {"f": None, "v": [0, 1]}}
    assert json.loads(a["versions"]) == {"numpy": "2"} and a["split"] == "tuning"
    # without ground truth: a success has unknown (NaN) errors, a failure still infinite ones
    c, d = rows_from_results(None, row, "est", settings, results, "{}")
    assert math.isnan(c["rotation_error_deg"]) and math.isinf(d["center_error"])
    # the earlier argument order still works
    assert rows_from_results(row.to_dict(), "est", settings, results, prob.gt_pose, "{}", "dsift") == [
        {**r, "versions": "{}"} for r in rows
    ]
    df = write(rows, tmp_path / "sub" / "r.parquet")
    back = read(tmp_path / "sub" / "r.parquet")
    pd.testing.assert_frame_equal(df, back)
    assert back["inliers"].dtype == np.int64 and back["success"].dtype == bool
    assert list(read([tmp_path / "sub" / "r.parquet"] * 2)["pair_id"]) == ["p"] * 4
    empty = write([], tmp_path / "empty.parquet")
    assert list(empty.columns) == COLUMNS and len(read(tmp_path / "empty.parquet")) == 0
    pd.DataFrame({"pair_id": ["p"]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="other.parquet: not a result-rows file"):
        read(tmp_path / "other.parquet")
