"""Two implementation choices compared side by side in one process (same inputs, same machine load):

1. The coarse mass of coarse-to-fine NRE's local maps (``nre.maps.local.coarse_mass`` / ``window_mass``): read from
   the sparse coarse maps vs from a dense copy of every coarse map (``nre.estimators.testing.dense_coarse_mass``).
   Synthetic coarse maps of N points on a stride-8 grid of a W x H image; peak memory by tracemalloc.
2. An in-memory problem (``nre.maps.cache.build_problem``, what ``nre localize`` and Table 3 build) then single-level
   NRE: the dense-level maps built once and kept vs recomputed by the estimator.

    python scripts/bench_efficiency.py [--width 1600 --height 1064 --points 1000 --repeat 3] [--pairs CSV --root R]
                                       [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def measure(fn, repeat):
    times, peak, out = [], 0, None
    for _ in range(repeat):
        tracemalloc.start()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return statistics.median(times), peak / 2**20, out


def coarse_mass_item(args) -> dict:
    from nre.estimators.testing import dense_coarse_mass, make_problem
    from nre.geometry import Pose
    from nre.maps.local import coarse_mass

    P = make_problem(0, n=args.points, outlier_ratio=0.5, size=(args.width, args.height), coarse_stride=8)
    pose = Pose(P.pose.R, P.pose.t + np.array([0.05, -0.03, 0.0]))
    t_new, m_new, a = measure(lambda: coarse_mass(P.coarse, pose, P.points3d, P.camera), args.repeat)
    t_old, m_old, b = measure(lambda: dense_coarse_mass(P.coarse, pose, P.points3d, P.camera), args.repeat)
    return {
        "grid": list(P.coarse.shape),
        "points": args.points,
        "stored cells": int(P.coarse.nnz),
        "sparse: s": t_new,
        "sparse: peak MB": m_new,
        "dense copy: s": t_old,
        "dense copy: peak MB": m_old,
        "identical": bool(np.array_equal(a, b)),
    }


def build_problem_item(args) -> dict:
    from nre.data.pairdata import PairData
    from nre.estimators import registry
    from nre.features import get_backend
    from nre.maps.cache import build_problem

    if args.pairs:  # the first test pair of a pair table (e.g. a real scene's)
        import pandas as pd

        from nre.data.pairs import load_pair

        row = pd.read_csv(args.pairs, dtype=str).query("split == 'test'").iloc[0]
        pair, name = load_pair(args.root, row), f"{args.pairs}: {row['pair_id']}"
    else:
        pair, name = PairData.load_npz(REPO / "tests/data/sample_pair/pair.npz"), "tests/data/sample_pair"
    backend = get_backend("dsift")
    est = registry.get("nre_single")(msac_iterations=1000)

    def kept():
        prob = build_problem(pair, backend, args.points, 0)
        return est.run(prob, [{}])[0][0].pose

    def recomputed():
        prob = build_problem(pair, backend, args.points, 0)
        prob.dense_maps = None  # the former path: single-level NRE computes the dense maps again
        return est.run(prob, [{}])[0][0].pose

    t_new, _, a = measure(kept, args.repeat)
    t_old, _, b = measure(recomputed, args.repeat)
    return {
        "pair": name,
        "image": list(pair.target_camera.size),
        "kept: s": t_new,
        "recomputed: s": t_old,
        "same pose": bool(np.array_equal(a.R, b.R) and np.array_equal(a.t, b.t)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=1064)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pairs", default=None, help="pair table: time item 2 on its first test pair (default: sample)")
    ap.add_argument("--root", default=None, help="scene root of --pairs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    res = {"coarse_mass": coarse_mass_item(args), "build_problem + nre_single": build_problem_item(args)}
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
