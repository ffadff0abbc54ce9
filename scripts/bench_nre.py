"""Speed of the NRE estimator on synthetic maps (2 threads): MSAC, coarse GNC, fine GNC, the whole coarse-to-fine
estimator at 1k / 3k / 10k points, and its time as a ratio to poselib's LO-RANSAC on the same argmax matches,
measured side by side in one run; the vectorised P3P against poselib.p3p called per sample. Wall times are the best
of --repeats; CPU times (process) are printed too, as the machine is shared.
Usage: python scripts/bench_nre.py [--repeats 3]"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nre.estimators import registry
from nre.estimators.problem import Matches, Problem
from nre.estimators.testing import SyntheticFeatures, make_problem
from nre.geometry.p3p import bearings_from_pixels, p3p_batch, p3p_poselib
from nre.maps.dense import dense_maps
from nre.solver.gnc import Terms, refine
from nre.solver.msac import DenseTableScorer, msac, sampling_weights
from nre.solver.nre import map_minima, nre_coarse_to_fine
from nre.solver.options import NreOptions


def best_of(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def cpu_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


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

    def run_msac(solver):
        return msac(P.points3d, xy, P.camera, scorer, w, np.random.default_rng(0), 5000, solver=solver)

    for solver in ("numpy", "poselib"):
        t, r = best_of(lambda s=solver: run_msac(s), args.repeats)
        c = cpu_of(lambda s=solver: run_msac(s), args.repeats)
        print(
            f"MSAC 5000 samples, P3P {solver} ({r.n_hypotheses} poses scored over all 1000 maps): {t:.3f} s "
            f"(CPU {c:.3f} s; P3P {r.timings['p3p_s']:.3f} s, scoring {r.timings['scoring_s']:.3f} s)"
        )
    rng = np.random.default_rng(1)
    S = np.array([rng.choice(1000, 3, replace=False) for _ in range(5000)])
    bear = bearings_from_pixels(P.camera, xy)
    t_np, sol = best_of(lambda: p3p_batch(bear[S], P.points3d[S]), args.repeats)
    t_pl, sol_pl = best_of(lambda: p3p_poselib(bear[S], P.points3d[S]), args.repeats)
    print(
        f"P3P on 5000 samples: numpy batch {t_np * 1e3:.1f} ms ({len(sol[0])} solutions), poselib per sample "
        f"{t_pl * 1e3:.1f} ms ({int(np.isfinite(sol_pl[1]).all(1).sum())} finite solutions): ratio {t_pl / t_np:.2f}"
    )
    terms = Terms.from_sparse(P.coarse)
    t, g = best_of(lambda: refine(r.pose, P.points3d, P.camera, terms), args.repeats)
    print(f"coarse GNC: {t * 1e3:.1f} ms, {g.iterations} iterations ({g.stop_reason}), {terms.point.size} terms")
    prob = Problem(
        "b", P.points3d, P.camera, 0, gt_pose=P.pose, coarse_maps=P.coarse, extras={"fine_source": P.fine_source()}
    )
    res = min((nre_coarse_to_fine(prob) for _ in range(args.repeats)), key=lambda x: x[2].diagnostics["stage_s"])
    d = res[2].diagnostics
    print(
        f"fine GNC: {(d['stage_s'] - d['local_maps_s']) * 1e3:.1f} ms, {d['iterations']} iterations; "
        f"local maps {d['local_maps_s'] * 1e3:.1f} ms, {d['map_bytes_fine'] / 1e6:.2f} MB"
    )
    # the same with dense-descriptor maps (SyntheticFeatures): more cells per map than the Gaussian maps above
    F = SyntheticFeatures(P, strides={"coarse": 16}, seed=0)
    cm, _ = dense_maps(F.source_descriptors("coarse"), F.target_map("coarse"), 1.0, F.target_scale("coarse"))
    print(f"descriptor coarse maps: sparse {cm.nbytes / 1e6:.2f} MB, {cm.nnz / cm.n:.1f} cells per map")
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
