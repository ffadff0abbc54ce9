"""Table 3 timing jobs (``nre.eval.timing.timing_job``): estimators timed on the run's map caches, features
extracted only when an estimator needs them, a missing cache computed in memory instead; Fig. 4 map pictures drawn
without any result; and jobs that need no features never load torch."""

import pandas as pd
import pytest
from helpers import REPO, TINY_MD, tiny_maps, tiny_pairs

from nre.errors import OptionError
from nre.estimators.runner import estimate_pairs
from nre.eval.timing import timing_job
from nre.features.dsift import DenseSift


@pytest.fixture(scope="module")
def pairs_and_maps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("timing")
    pairs, maps = tmp / "pairs.csv", tmp / "maps"
    tiny_pairs(pairs, 3)
    tiny_maps(pairs, maps, threads=None)
    return pairs, maps


calls: list = []  # levels of every DenseSift.extract call of the current _timing run


def _timing(pairs, out, estimators: dict, maps=None, monkeypatch=None) -> tuple[pd.DataFrame, list]:
    """A timing job of the estimators alone; its rows and the levels of every DenseSift.extract call."""
    calls.clear()
    orig = DenseSift.extract

    def spy(self, image, levels=None):
        calls.append(tuple(levels or self.levels))
        return orig(self, image, levels)

    monkeypatch.setattr(DenseSift, "extract", spy)
    timing_job(pairs=pairs, root=TINY_MD, out=out, estimators=estimators, stages=False, n_pairs=2, max_points=200,
               threads=1, maps_dir=maps)  # fmt: skip
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


def test_an_unknown_estimator_stops_the_job_before_any_measurement(pairs_and_maps, tmp_path):
    pairs, maps = pairs_and_maps
    with pytest.raises(OptionError, match="x: --estimators options iterations: .*no option"):
        timing_job(pairs=pairs, root=TINY_MD, out=tmp_path / "t.csv", estimators={"x": {"cls": "oracle",
                   "options": {"iterations": 3}}}, stages=False, maps_dir=maps)  # fmt: skip
    assert not (tmp_path / "t.csv").exists()


def test_map_pictures_alone_need_no_results(pairs_and_maps, tmp_path):
    """The workflow draws Fig. 4 in its own job, before any estimator result exists (``nre tables --no-tables``)."""
    from nre.eval.outputs import write_outputs

    pairs, _ = pairs_and_maps
    ev = tmp_path / "eval"
    write_outputs(eval_dir=ev, tables=False, map_pictures=2, pairs=pairs, root=TINY_MD, max_points=200)
    assert sorted(p.name for p in ev.iterdir()) == ["fig4_maps_0.pdf", "fig4_maps_0.png", "fig4_maps_1.pdf",
                                                     "fig4_maps_1.png"]  # fmt: skip


def _fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return its last output line."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
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
    """Importing torch is ~2.5 s, most of a RANSAC job: estimate and timing jobs on cached maps must not load it,
    neither in the job's process nor in its worker. A job that does use torch still runs with the threads it was
    given (set before torch loads)."""
    pairs, maps = pairs_and_maps
    est = dict(pairs=str(pairs), root=str(TINY_MD), maps_dir=str(maps), max_points=200)
    spec = {"oracle": {"cls": "oracle"}, "magsac_pp": {"cls": "magsac_pp"}}
    tim = dict(pairs=str(pairs), root=str(TINY_MD), max_points=200, n_pairs=1, stages=False, maps_dir=str(maps))
    flag = tmp_path / "torch_loaded.txt"
    estimate = "from nre.estimators.runner import estimate_pairs as job\n"
    timing = "from nre.eval.timing import timing_job as job\n"
    for call, kw in (
        (estimate, dict(est, estimator="lo_ransac_poselib", threads=1, out=str(tmp_path / "p.parquet"))),
        (estimate, dict(est, estimator="gc_ransac", grid={"threshold": [8]}, out=str(tmp_path / "g.parquet"))),
        (timing, dict(tim, estimators=spec, threads=1, out=str(tmp_path / "t.csv"))),
    ):
        code = _spy(flag, "'torch' in sys.modules") + call + f"job(**{kw!r}); print('torch' in sys.modules)"
        assert _fresh(code) == "False", kw
    assert set(flag.read_text().split()) == {"False"} and len(flag.read_text().split()) == 3 + 3 + 2
    assert pd.read_parquet(tmp_path / "p.parquet")["success"].any()
    assert len(pd.read_csv(tmp_path / "t.csv")) == 2
    kw = dict(est, estimator="re_gauss", grid={"sigma": [5]}, threads=1, options={"msac_iterations": 100})
    threads = tmp_path / "threads.txt"
    code = _spy(threads, "sys.modules['torch'].get_num_threads()") + estimate
    _fresh(code + f"job(**{dict(kw, out=str(tmp_path / 'r.parquet'))!r}); print('ok')")
    assert threads.read_text().split() == ["1"] * 3


def test_a_ransac_job_checks_the_backend_of_the_maps_it_reads(pairs_and_maps, tmp_path):
    """Without a backend object (no torch), the rows' features label must still match the caches' backend."""
    pairs, maps = pairs_and_maps
    est = dict(pairs=pairs, root=TINY_MD, maps_dir=maps, max_points=200, estimator="lo_ransac_poselib")
    est["grid"] = {"threshold": [8]}
    estimate_pairs(features="nre_compact", out=tmp_path / "bad.parquet", **est)
    bad = pd.read_parquet(tmp_path / "bad.parquet")
    assert len(bad) == 3 and not bad["success"].any()
    assert bad["failure_reason"].str.contains("made with the dsift backend, not nre_compact").all()
    estimate_pairs(features="dsift", out=tmp_path / "good.parquet", **est)
    assert pd.read_parquet(tmp_path / "good.parquet")["success"].all()
