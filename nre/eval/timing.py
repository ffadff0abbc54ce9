"""Table 3: time and memory per stage and per estimator, measured on a few test pairs by a job that runs alone.

Run it alone (the workflow's rules take every core, so no other job competes): wall and CPU time are measured with
``time.perf_counter`` / ``time.process_time`` around each stage, the threads used are recorded. Stages: coarse / fine
features of the target, source descriptors, coarse sparse maps, dense argmax, and NRE's initialisation, coarse and
fine refinement (``time_pair``); then each estimator at its default setting on the same in-memory maps (cache
loading excluded, ``time_estimators``).

With ``maps_dir`` (the workflow passes the run's map caches) the estimators are timed on the cached maps that
``nre estimate`` reads, and the target and source descriptors are extracted before the clock starts, only for an
estimator that needs them: a RANSAC timing job then computes no features at all (nor loads torch). A pair without a
current cache falls back to computing its maps in memory (said in the log). ``timing_job`` is ``nre timing``,
``merge_timings`` its ``--merge`` (Table 3 from the jobs' CSVs)."""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("nre.timing")


class _Clock:
    def __init__(self):
        self.rows = []

    def run(self, stage, fn, memory=None):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        self.rows.append(
            {
                "stage": stage,
                "wall_s": time.perf_counter() - w0,
                "cpu_s": time.process_time() - c0,
                "memory_bytes": memory(out) if memory else np.nan,
            }
        )
        return out


def time_pair(pair, backend, seed: int = 0) -> pd.DataFrame:
    """Per-stage timings of one (capped) pair: features, maps, dense argmax, and NRE's three stages."""
    import torch

    from nre.data.images import read_image
    from nre.estimators.problem import Matches, Problem
    from nre.features.access import PairFeatures
    from nre.geometry import map_to_img
    from nre.maps.dense import dense_maps
    from nre.solver.nre import nre_coarse_to_fine
    from nre.solver.options import NreOptions

    clk = _Clock()
    img = read_image(pair.target_image)
    feats = PairFeatures(backend, pair)
    if getattr(backend, "describes_points", False):  # network pass once, levels from it (nre.features.base)
        prep = clk.run("features network", lambda: backend.prepare(img), lambda p: p.base_nbytes)
        tc = clk.run("features coarse", lambda: prep.dense("coarse"), lambda f: f.desc.numel() * 4)
        td = clk.run("features fine", lambda: prep.dense("fine"), lambda f: f.desc.numel() * 4)
        feats._prepared["target"] = prep  # the fine stage's windows reuse it
    else:
        tc = clk.run(
            "features coarse", lambda: backend.extract(img, ("coarse",))["coarse"], lambda f: f.desc.numel() * 4
        )
        td = clk.run("features fine", lambda: backend.extract(img, ("fine",))["fine"], lambda f: f.desc.numel() * 4)
    feats._tgt.update({"coarse": tc, "fine": td})
    clk.run("source descriptors", lambda: (feats.source_descriptors("coarse"), feats.source_descriptors("fine")))
    src_c, src_f = feats.source_descriptors("coarse"), feats.source_descriptors("fine")
    coarse, cstats = clk.run("coarse maps", lambda: dense_maps(src_c, tc.desc, 1.0, tc.scale), lambda r: r[0].nbytes)
    _, dstats = clk.run("dense argmax", lambda: dense_maps(src_f, td.desc, 1.0, td.scale, sparse=False), lambda r: 0)
    full = pair.n * td.desc.shape[1] * td.desc.shape[2] * 4  # what full-resolution dense fine maps would take
    clk.rows.append({"stage": "(dense fine maps, not built)", "wall_s": np.nan, "cpu_s": np.nan, "memory_bytes": full})
    prob = Problem(
        pair.pair_id,
        pair.points3d,
        pair.target_camera,
        seed,
        gt_pose=pair.target_pose,
        matches=Matches(map_to_img(dstats.argmax_xy, td.scale), dstats.score, dstats.entropy),
        coarse_maps=coarse,
        coarse_stats=cstats,
        features=feats,
    )
    w0, c0 = time.perf_counter(), time.process_time()
    res = nre_coarse_to_fine(prob, NreOptions())
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    d0, d1, d2 = (r.diagnostics for r in res)
    init = d0.get("p3p_s", 0) + d0.get("scoring_s", 0)
    fine = d2.get("stage_s", np.nan)
    coarse_gnc = d1.get("stage_s", np.nan)
    mem = {
        "initialisation (MSAC + P3P)": d0.get("map_bytes_coarse", np.nan),
        "coarse refinement (GNC)": d0.get("map_bytes_coarse", np.nan),
        "local fine maps + fine refinement (GNC)": d2.get("map_bytes_fine", np.nan),
    }
    for stage, w in (
        ("initialisation (MSAC + P3P)", init),
        ("coarse refinement (GNC)", coarse_gnc),
        ("local fine maps + fine refinement (GNC)", fine),
    ):
        clk.rows.append(
            {"stage": stage, "wall_s": w, "cpu_s": w * cpu / wall if wall > 0 else np.nan, "memory_bytes": mem[stage]}
        )
    out = pd.DataFrame(clk.rows)
    out.insert(0, "pair_id", pair.pair_id)
    out["threads"] = torch.get_num_threads()
    return out


def table3(timing: pd.DataFrame) -> pd.DataFrame:
    g = timing.groupby("stage", sort=False)
    return pd.DataFrame(
        {
            "median wall (s)": g["wall_s"].median(),
            "median CPU (s)": g["cpu_s"].median(),
            "median memory (MB)": g["memory_bytes"].median() / 1e6,
            "threads": g["threads"].first(),
            "pairs": g.size(),
        }
    ).reset_index()


def time_estimators(problem, estimators: list, seed: int) -> list[dict]:
    """One row per configured estimator (``nre.estimators.runner.Configured``): wall / CPU time of its default
    setting on ``problem``, its descriptors extracted before the clock (``run_on_problem(features_first=True)``)."""
    from nre.estimators.runner import run_on_problem

    rows = []
    for c in estimators:
        setting = c.default_setting()
        row = {"stage": f"estimator {c.label}", "memory_bytes": float("nan")}
        try:
            run = run_on_problem(c.estimator, problem, [setting], seed=seed, features_first=True)
            row.update(wall_s=run.wall_s, cpu_s=run.cpu_s, setting=json.dumps(setting, sort_keys=True))
            row["success"] = bool(run.results[0][-1].success)
        except Exception as e:  # timing is a measurement: record (a failing feature extraction), never crash
            row.update(wall_s=float("nan"), cpu_s=float("nan"), error=f"{type(e).__name__}: {e}")
        rows.append(row)
    return rows


def _problem(pair, maps_dir, features: str, backend, make_backend, seed: int):
    """The pair's Problem from its map cache in ``maps_dir`` if it is there and current (``backend`` None: no
    descriptors wanted), else computed in memory with ``make_backend()``."""
    from nre.maps.cache import build_problem, cache_path, load_problem

    if maps_dir:
        path = cache_path(maps_dir, pair.pair_id)
        try:
            return load_problem(pair, path, seed, backend, features=features)
        except (OSError, KeyError, ValueError) as e:  # nre.maps.cache.CacheError is a ValueError
            log.warning("%s: %s: %s; computing the maps of %s in memory", path, type(e).__name__, e, pair.pair_id)
    return build_problem(pair, backend or make_backend(), seed)


def timing_job(
    *,
    pairs: str | Path,
    root: str | Path,
    out: str | Path,
    features: str = "dsift",
    features_options: dict | None = None,
    estimators: dict[str, dict] | None = None,
    stages: bool = True,
    n_pairs: int = 10,
    max_points: int = 1000,
    seed: int = 0,
    threads: int | None = 2,
    maps_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Time the pipeline ``stages`` and the ``estimators`` ({label: {"cls", "grid", "options"}}) on the first
    ``n_pairs`` test pairs of the pair table; write the per-pair timings to ``out`` (CSV) and Table 3 next to it
    (``table3.*``); return Table 3."""
    from nre.data.pairs import load_pair, read_pair_table
    from nre.errors import InputError
    from nre.estimators.runner import configure
    from nre.features import get_backend
    from nre.progress import Progress
    from nre.threads import set_threads

    set_threads(threads)
    configured = [
        configure(spec.get("cls") or label, options=spec.get("options"), grid=spec.get("grid"), label=label,
                  where=("--estimators options", "--estimators grid"))
        for label, spec in (estimators or {}).items()
    ]  # fmt: skip
    table = read_pair_table(pairs, ("pair_id", "split"))
    table = table[table["split"] == "test"].head(n_pairs)
    if table.empty:
        raise InputError(f"{pairs}: no test pairs to time")
    make_backend = functools.cache(lambda: get_backend(features, **(features_options or {})))
    # timing RANSAC libraries on cached maps needs no features: no backend, no torch in the job
    needs_features = any("features" in c.cls.needs for c in configured)
    backend = make_backend() if stages or not maps_dir or needs_features else None
    progress = Progress(log, f"timing {', '.join(c.label for c in configured) or 'stages'}", len(table))
    rows = []
    for _, r in table.iterrows():
        pair = load_pair(root, r).capped(max_points, seed)
        if stages:
            rows.append(time_pair(pair, backend, seed).assign(pair_id=r["pair_id"]))
        if configured:
            problem = _problem(pair, maps_dir, features, backend, make_backend, seed)
            e = pd.DataFrame(time_estimators(problem, configured, seed))
            torch = sys.modules.get("torch")
            e["pair_id"], e["threads"] = r["pair_id"], torch.get_num_threads() if torch else threads
            rows.append(e)
        progress.step()
    t3 = write_timings(pd.concat(rows, ignore_index=True), out)
    progress.done(f"-> {out}")
    return t3


def merge_timings(paths: list[str | Path], out: str | Path, info=None) -> pd.DataFrame:
    """Concatenate the timing CSVs of several jobs into ``out`` and write Table 3 next to it (``info``: the study
    information, for the estimators' display names); return Table 3."""
    frames = [pd.read_csv(f, dtype={"pair_id": str}) for f in paths]
    return write_timings(pd.concat(frames, ignore_index=True), out, info)


def table3_display(t3: pd.DataFrame, info=None) -> pd.DataFrame:
    """Table 3 for people: ``estimator <display name>`` rows (the CSV keeps the keys)."""
    from nre.eval.study import Study

    study = Study.load(info)
    names = [
        f"estimator {study.label(s[len('estimator ') :])}" if s.startswith("estimator ") else s for s in t3["stage"]
    ]
    return t3.assign(stage=names)


def write_timings(timings: pd.DataFrame, out: str | Path, info=None) -> pd.DataFrame:
    """Per-pair timings to ``out`` (CSV), Table 3 to ``table3.{csv,md,tex,html}`` beside it (logged)."""
    from nre.eval.tables import write_table

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    timings.to_csv(out, index=False)
    t3 = table3(timings)
    write_table(t3, Path(out).with_name("table3"), display=table3_display(t3, info), title="Table 3")
    log.info("Table 3 (%s):\n%s", Path(out).with_name("table3.md"), t3.to_string(index=False))
    return t3
