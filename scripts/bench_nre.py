"""Speed of the NRE estimator on synthetic maps (2 threads): MSAC, coarse GNC, fine GNC, the whole coarse-to-fine
estimator at 1k / 3k / 10k points, and its time as a ratio to poselib's LO-RANSAC on the same argmax matches,
measured side by side in one run. Usage: python scripts/bench_nre.py [--repeats 3]"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from baselines import registry
from nre.estimator import NreOptions, map_minima, nre_coarse_to_fine
from nre.gnc import Terms, refine
from nre.msac import DenseTableScorer, msac, sampling_weights
from nre.problem import Matches, Problem
from nre.synthetic import make_problem


def best_of(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    P = make_problem(0, n=1000, outlier_ratio=0.8)
    print(f"coarse maps: 1000 x {P.coarse.shape}, sparse {P.coarse.nbytes / 1e6:.2f} MB, nnz {P.coarse.nnz}")
    xy, mins = map_minima(P.coarse)
    scorer = DenseTableScorer(P.coarse, P.points3d, P.camera)
    w = sampling_weights(mins, np.ones(P.coarse.n), np.isfinite(xy).all(1))
    t, r = best_of(lambda: msac(P.points3d, xy, P.camera, scorer, w, np.random.default_rng(0), 5000), args.repeats)
    print(
        f"MSAC 5000 samples ({r.n_hypotheses} P3P poses scored over all 1000 maps): {t:.3f} s "
        f"(P3P {r.timings['p3p_s']:.3f} s, scoring {r.timings['scoring_s']:.3f} s)"
    )
    terms = Terms.from_sparse(P.coarse)
    t, g = best_of(lambda: refine(r.pose, P.points3d, P.camera, terms), args.repeats)
    print(f"coarse GNC: {t * 1e3:.1f} ms, {g.iterations} iterations ({g.stop_reason})")
    prob = Problem(
        "b", P.points3d, P.camera, 0, gt_pose=P.pose, coarse_maps=P.coarse, extras={"fine_source": P.fine_source()}
    )
    res = nre_coarse_to_fine(prob)
    d = res[2].diagnostics
    print(
        f"fine GNC: {(d['stage_s'] - d['local_maps_s']) * 1e3:.1f} ms, {d['iterations']} iterations; "
        f"local maps {d['local_maps_s'] * 1e3:.1f} ms, {d['map_bytes_fine'] / 1e6:.2f} MB"
    )
    print("\npoints  NRE c2f (s)  poselib LO-RANSAC (s)  ratio")
    lo = registry.get("lo_ransac_poselib")()
    for n in (1000, 3000, 10000):
        Pn = make_problem(1, n=n, outlier_ratio=0.8)
        pr = Problem(
            "b",
            Pn.points3d,
            Pn.camera,
            0,
            coarse_maps=Pn.coarse,
            extras={"fine_source": Pn.fine_source()},
            matches=Matches(Pn.peak_xy, np.ones(n)),
        )
        t_nre, _ = best_of(lambda pr=pr: nre_coarse_to_fine(pr, NreOptions()), args.repeats)
        t_lo, _ = best_of(lambda pr=pr: lo.run(pr, [{"threshold": 8.0}]), args.repeats)
        print(f"{n:6d}  {t_nre:11.3f}  {t_lo:21.3f}  {t_nre / t_lo:5.1f}")


if __name__ == "__main__":
    main()
