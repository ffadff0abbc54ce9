"""`nre timing` (Table 3): estimators timed on the run's map caches, features extracted only when an estimator needs
them, a missing cache computed in memory instead; and Fig. 4 map pictures drawn without any result."""

import json
from pathlib import Path

import pandas as pd
import pytest

from nre.cli import main
from nre.features.dsift import DenseSift

TINY_MD = Path(__file__).resolve().parent / "data" / "megadepth_tiny"


@pytest.fixture(scope="module")
def pairs_and_maps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("timing")
    pairs, maps = tmp / "pairs.csv", tmp / "maps"
    base = ["--root", str(TINY_MD), "--max-points", "200"]
    assert main(["pairs", "--root", str(TINY_MD), "--scenes", "0016", "--n-pairs", "3", "--min-covisible", "20",
                 "--n-tuning", "0", "--out", str(pairs)]) == 0  # fmt: skip
    assert main(["maps", "--pairs", str(pairs), *base, "--out-dir", str(maps), "--manifest", str(maps / "m.csv")]) == 0
    return pairs, maps


calls: list = []  # levels of every DenseSift.extract call of the current _timing run


def _timing(pairs, out, estimators: dict, maps=None, monkeypatch=None) -> tuple[pd.DataFrame, list]:
    """Run `nre timing --no-stages` and return its rows and the levels of every DenseSift.extract call."""
    calls.clear()
    orig = DenseSift.extract

    def spy(self, image, levels=None):
        calls.append(tuple(levels or self.levels))
        return orig(self, image, levels)

    monkeypatch.setattr(DenseSift, "extract", spy)
    args = ["timing", "--pairs", str(pairs), "--root", str(TINY_MD), "--max-points", "200", "--n-pairs", "2"]
    args += ["--no-stages", "--estimators", json.dumps(estimators), "--threads", "1", "--out", str(out)]
    if maps is not None:
        args += ["--maps-dir", str(maps)]
    assert main(args) == 0
    return pd.read_csv(out, dtype={"pair_id": str}), list(calls)


def test_ransac_timing_on_cached_maps_computes_no_features(pairs_and_maps, tmp_path, monkeypatch):
    pairs, maps = pairs_and_maps
    spec = {"lo_ransac_poselib": {"cls": "lo_ransac_poselib"}}
    cached, calls = _timing(pairs, tmp_path / "a.csv", spec, maps, monkeypatch)
    assert calls == []  # the maps come from the caches: no extraction at all
    assert len(cached) == 2 and cached["success"].all() and (cached["wall_s"] > 0).all()
    built, calls = _timing(pairs, tmp_path / "b.csv", spec, None, monkeypatch)
    assert len(calls) >= 4  # without caches both images of both pairs are extracted (the spy sees them)
    n_built = len(calls)
    assert built["success"].all() and list(built["pair_id"]) == list(cached["pair_id"])
    # a missing cache: that pair's maps are computed in memory (features for it alone), the other one still cached
    first = cached["pair_id"].iloc[0]
    (maps / f"{first}.npz").rename(maps / "moved.npz")
    try:
        mixed, calls = _timing(pairs, tmp_path / "m.csv", spec, maps, monkeypatch)
    finally:
        (maps / "moved.npz").rename(maps / f"{first}.npz")
    assert mixed["success"].all() and len(mixed) == 2 and 2 <= len(calls) < n_built


def test_feature_estimators_get_their_features_before_the_clock(pairs_and_maps, tmp_path, monkeypatch):
    """FPR needs descriptors: they are extracted once per pair and image, outside its timed call, so its time is
    the refinement alone; a pair without a cache falls back to computing its maps (and is still timed)."""
    pairs, maps = pairs_and_maps
    spec = {"fpr": {"cls": "fpr", "grid": {"loss": ["cauchy"], "scale": [0.4]}}, "oracle": {"cls": "oracle"}}
    first = pd.read_csv(pairs, dtype={"pair_id": str}).query("split == 'test'")["pair_id"].iloc[0]
    from baselines.fpr import FeaturemetricRefinement as FPR

    inside = []  # extract calls made during FPR's timed call
    orig_run = FPR.run

    def run(self, problem, settings=None):
        n = len(calls)
        out = orig_run(self, problem, settings)
        inside.append(len(calls) - n)
        return out

    monkeypatch.setattr(FPR, "run", run)
    (maps / f"{first}.npz").rename(maps / "moved.npz")
    try:
        rows, got = _timing(pairs, tmp_path / "c.csv", spec, maps, monkeypatch)
    finally:
        (maps / "moved.npz").rename(maps / f"{first}.npz")
    assert inside == [0, 0]
    assert len(rows) == 4 and rows["success"].all(), rows
    assert set(rows["stage"]) == {"estimator fpr", "estimator oracle"}
    # per pair: target and source, each level once (dsift extracts one level per call) -- no re-extraction inside
    # the timed FPR call, and the fallback pair's in-memory features are reused rather than extracted again
    per_image = len(DenseSift.levels)
    assert len(got) == 2 * 2 * per_image, got


def test_map_pictures_alone_need_no_results(pairs_and_maps, tmp_path):
    """The workflow draws Fig. 4 in its own job, before any estimator result exists: `nre tables --no-tables`."""
    pairs, _ = pairs_and_maps
    ev = tmp_path / "eval"
    args = ["tables", "--no-tables", "--eval-dir", str(ev), "--map-pictures", "2", "--pairs", str(pairs)]
    assert main([*args, "--root", str(TINY_MD), "--max-points", "200"]) == 0
    assert sorted(p.name for p in ev.iterdir()) == ["fig4_maps_0.pdf", "fig4_maps_0.png", "fig4_maps_1.pdf",
                                                     "fig4_maps_1.png"]  # fmt: skip


def _fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return its last output line."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout.strip().splitlines()[-1]


def _spy(flag, expr: str) -> str:
    """Code that makes every ``Estimator.run`` append ``expr`` to the file ``flag``: it runs where the estimator
    runs, in the worker process of `nre estimate` (forked, so the patch is inherited) or in-process for timing."""
    return (
        "import sys\nimport nre.estimators.base as B\norig = B.Estimator.run\n"
        "def run(self, *a):\n    out = orig(self, *a)\n"
        f"    open({str(flag)!r}, 'a').write(str({expr}) + chr(10))\n    return out\n"
        "B.Estimator.run = run\n"
    )


def test_ransac_jobs_never_load_torch_and_torch_jobs_get_their_threads(pairs_and_maps, tmp_path):
    """Importing torch is ~2.5 s, most of a RANSAC job: `nre estimate` and `nre timing` on cached maps must not
    load it, neither in the job's process nor in its worker. A job that does use torch still runs with the --threads
    it was given (set before torch loads)."""
    pairs, maps = pairs_and_maps
    est = ["estimate", "--pairs", str(pairs), "--root", str(TINY_MD), "--maps-dir", str(maps), "--max-points", "200"]
    spec = json.dumps({"oracle": {"cls": "oracle"}, "magsac_pp": {"cls": "magsac_pp"}})
    tim = ["timing", "--pairs", str(pairs), "--root", str(TINY_MD), "--max-points", "200", "--n-pairs", "1"]
    tim += ["--no-stages", "--maps-dir", str(maps), "--estimators", spec, "--threads", "1"]
    flag = tmp_path / "torch_loaded.txt"
    for args in (
        [*est, "--estimator", "lo_ransac_poselib", "--threads", "1", "--out", str(tmp_path / "p.parquet")],
        [*est, "--estimator", "gc_ransac", "--grid", '{"threshold": [8]}', "--out", str(tmp_path / "g.parquet")],
        [*tim, "--out", str(tmp_path / "t.csv")],
    ):
        code = _spy(flag, "'torch' in sys.modules")
        code += f"from nre.cli import main; main({args!r}); print('torch' in sys.modules)"
        assert _fresh(code) == "False", args
    assert set(flag.read_text().split()) == {"False"} and len(flag.read_text().split()) == 3 + 3 + 2
    assert pd.read_parquet(tmp_path / "p.parquet")["success"].any()
    assert len(pd.read_csv(tmp_path / "t.csv")) == 2
    args = [*est, "--estimator", "re_gauss", "--grid", '{"sigma": [5]}', "--threads", "1"]
    args += ["--options", '{"msac_iterations": 100}', "--out", str(tmp_path / "r.parquet")]
    threads = tmp_path / "threads.txt"
    code = _spy(threads, "sys.modules['torch'].get_num_threads()") + f"from nre.cli import main; main({args!r})"
    _fresh(code + "; print('ok')")
    assert threads.read_text().split() == ["1"] * 3


def test_a_ransac_job_checks_the_backend_of_the_maps_it_reads(pairs_and_maps, tmp_path):
    """Without a backend object (no torch), the rows' --features label must still match the caches' backend."""
    pairs, maps = pairs_and_maps
    est = ["estimate", "--pairs", str(pairs), "--root", str(TINY_MD), "--maps-dir", str(maps), "--max-points", "200"]
    est += ["--estimator", "lo_ransac_poselib", "--grid", '{"threshold": [8]}']
    assert main([*est, "--features", "nre_compact", "--out", str(tmp_path / "bad.parquet")]) == 0
    bad = pd.read_parquet(tmp_path / "bad.parquet")
    assert len(bad) == 3 and not bad["success"].any()
    assert bad["failure_reason"].str.contains("made with the dsift backend, not nre_compact").all()
    assert main([*est, "--features", "dsift", "--out", str(tmp_path / "good.parquet")]) == 0
    assert pd.read_parquet(tmp_path / "good.parquet")["success"].all()
