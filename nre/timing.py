"""Table 3: time and memory per stage, measured on a few pairs by a job that runs alone (wall and CPU time)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from nre.geometry import map_to_img
from nre.maps import dense_maps


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

    from nre.estimator import NreOptions, nre_coarse_to_fine
    from nre.features.access import PairFeatures
    from nre.pair import read_image
    from nre.problem import Matches, Problem

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
