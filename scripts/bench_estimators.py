"""Median run time of every registered estimator per setting and per whole sweep, side by side in one run, with each
as a ratio to poselib's LO-RANSAC on the same argmax matches.

Two inputs:
- ``--synthetic N``: N synthetic matches-only problems (``nre.estimators.testing.matches_problem``: 1000 matches, 50%
  outliers, 1 px noise by default); only the estimators that need nothing but matches run (RE baselines, Eq. 11,
  oracle). Also prints the median rotation error at the default setting.
- ``ROOT``: pairs of a data root (e.g. the embedded default's), maps computed in-process with dsift; every estimator.

Usage: python scripts/bench_estimators.py --synthetic 20 [--n-points 1000] [--outliers 0.5]
       python scripts/bench_estimators.py ROOT [--n-pairs 30] [--max-points 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nre.estimators import registry
from nre.geometry import pose_error
from nre.seeding import derive_seed


def _problems_synthetic(args):
    from nre.estimators.testing import matches_problem as synthetic_problem

    for i in range(args.synthetic):
        prob, _ = synthetic_problem(1000 + i, n=args.n_points, outliers=args.outliers, noise=1.0)
        yield prob, None


def _problems_root(args):
    import yaml

    from nre.data.pairs import load_pair, sample_pairs
    from nre.features import get_backend
    from nre.maps.cache import build_problem

    scenes = yaml.safe_load(open(f"{args.root}/scenes.yaml"))["splits"]["test"]
    df = sample_pairs(args.root, scenes, args.n_pairs, "test", 50, "rotation", 1)
    be = get_backend("dsift")
    for _, row in df.iterrows():
        pair = load_pair(args.root, row).capped(args.max_points, 0)
        yield build_problem(pair, be, 0), (be, pair)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?")
    ap.add_argument("--synthetic", type=int, default=0, help="number of synthetic problems (instead of ROOT)")
    ap.add_argument("--n-points", type=int, default=1000)
    ap.add_argument("--outliers", type=float, default=0.5)
    ap.add_argument("--n-pairs", type=int, default=30)
    ap.add_argument("--max-points", type=int, default=1000)
    args = ap.parse_args()
    if not args.synthetic and not args.root:
        ap.error("give ROOT or --synthetic N")
    torch.set_num_threads(2)
    names = [n for n, c in registry.available().items() if n != "imported"]
    if args.synthetic:
        names = [n for n in names if registry.get(n).needs <= {"matches"}]
    per_setting = {n: [] for n in names}
    per_sweep = {n: [] for n in names}
    errors = {n: [] for n in names}
    problems = _problems_synthetic(args) if args.synthetic else _problems_root(args)
    n_prob = 0
    for prob, feat in problems:
        n_prob += 1
        for n in names:
            est = registry.get(n)()
            settings = est.settings()
            if feat is not None and prob.features is not None:  # each estimator pays its own descriptors
                prob.features = type(prob.features)(*feat)
            prob.seed = derive_seed(0, prob.pair_id, n)
            t0 = time.perf_counter()
            res = est.run(prob, settings)
            dt = time.perf_counter() - t0
            per_sweep[n].append(dt)
            per_setting[n].append(dt / len(settings))
            final = res[settings.index(est.default_setting())][-1] if est.default_setting() in settings else res[0][-1]
            errors[n].append(pose_error(final.pose if final.success else None, prob.gt_pose).rotation_deg)
    src = (
        f"{n_prob} synthetic problems, {args.n_points} matches, {args.outliers:.0%} outliers, 1 px noise"
        if args.synthetic
        else f"{n_prob} pairs of {args.root}, <= {args.max_points} points"
    )
    print(src)
    ref = np.median(per_setting["lo_ransac_poselib"])
    print(
        f"{'estimator':20s} {'settings':>8s} {'per setting (s)':>16s} {'per sweep (s)':>14s} {'/ poselib':>10s} "
        f"{'med rot err (deg)':>18s}"
    )
    for n in names:
        k = len(registry.get(n)().settings())
        m = np.median(per_setting[n])
        print(f"{n:20s} {k:8d} {m:16.4f} {np.median(per_sweep[n]):14.4f} {m / ref:10.1f} {np.median(errors[n]):18.4f}")


if __name__ == "__main__":
    main()
