"""Median run time of every registered estimator per setting and per whole sweep on pairs of a data root, and
NRE's time as a ratio to poselib's LO-RANSAC on the same argmax matches (measured in one run, 2 threads).
Usage: python scripts/bench_estimators.py ROOT [--n-pairs 30] [--max-points 1000]"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml

from baselines import registry
from nre.cache import build_problem
from nre.data.pairs import load_pair, sample_pairs
from nre.features import get_backend


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--n-pairs", type=int, default=30)
    ap.add_argument("--max-points", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    scenes = yaml.safe_load(open(f"{args.root}/scenes.yaml"))["splits"]["test"]
    df = sample_pairs(args.root, scenes, args.n_pairs, "test", 50, "rotation", 1)
    be = get_backend("dsift")
    names = [n for n in registry.available() if n != "imported"]
    per_setting = {n: [] for n in names}
    per_sweep = {n: [] for n in names}
    maps_t = []
    for _, row in df.iterrows():
        pair = load_pair(args.root, row).capped(args.max_points, 0)
        t0 = time.perf_counter()
        prob = build_problem(pair, be, 0)
        maps_t.append(time.perf_counter() - t0)
        for n in names:
            est = registry.get(n)()
            settings = est.settings()
            prob.features = type(prob.features)(be, pair)  # fresh descriptors: each estimator pays its own features
            t0 = time.perf_counter()
            est.run(prob, settings)
            dt = time.perf_counter() - t0
            per_sweep[n].append(dt)
            per_setting[n].append(dt / len(settings))
    print(
        f"{len(df)} pairs, <= {args.max_points} points; maps (features + coarse maps + dense argmax) median "
        f"{np.median(maps_t):.3f} s per pair"
    )
    ref = np.median(per_setting["lo_ransac_poselib"])
    print(f"{'estimator':20s} {'settings':>8s} {'per setting (s)':>16s} {'per sweep (s)':>14s} {'/ poselib':>10s}")
    for n in names:
        k = len(registry.get(n)().settings())
        m = np.median(per_setting[n])
        print(f"{n:20s} {k:8d} {m:16.4f} {np.median(per_sweep[n]):14.4f} {m / ref:10.1f}")


if __name__ == "__main__":
    main()
