"""Measure how hard the embedded default is: poselib LO-RANSAC on dense-SIFT argmax matches, failure rate
(rotation error > 10 deg) per category. Usage: python scripts/check_difficulty.py ROOT [--n-pairs 90] [--split test]"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nre.data.pairs import load_pair, sample_pairs
from nre.estimators import registry
from nre.features import get_backend
from nre.geometry import pose_error
from nre.maps.cache import build_problem


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--n-pairs", type=int, default=90)
    ap.add_argument("--split", default="test")
    ap.add_argument("--threshold", type=float, default=8.0)
    ap.add_argument("--max-points", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    import yaml

    scenes = yaml.safe_load(open(f"{args.root}/scenes.yaml"))["splits"][args.split]
    df = sample_pairs(args.root, scenes, args.n_pairs, args.split, 50, "rotation", 0)
    be = get_backend("dsift")
    est = registry.get("lo_ransac_poselib")()
    rows = []
    t0 = time.perf_counter()
    for _, row in df.iterrows():
        pair = load_pair(args.root, row).capped(args.max_points, 0)
        prob = build_problem(pair, be, 0)
        [[r]] = est.run(prob, [{"threshold": args.threshold}])
        uv, ok = pair.target_camera.project(pair.points3d, pair.target_pose)
        inl = np.mean(np.linalg.norm(prob.matches.xy - uv, axis=1) < 8)
        rows.append((row["category"], row["distance"], pose_error(r.pose, pair.target_pose).rotation_deg, inl))
    print(f"{len(rows)} pairs in {time.perf_counter() - t0:.0f} s")
    for cat in ("easy", "medium", "hard"):
        sel = [r for r in rows if r[0] == cat]
        d = np.array([r[1] for r in sel])
        e = np.array([r[2] for r in sel])
        inl = np.array([r[3] for r in sel])
        print(
            f"{cat:7s} n={len(sel):4d} distance {d.min():5.1f}-{d.max():5.1f} deg  fail(>10deg)={np.mean(e > 10):.2f}  "
            f"median err={np.median(e):.2f} deg  inlier ratio={np.median(inl):.2f}"
        )


if __name__ == "__main__":
    main()
