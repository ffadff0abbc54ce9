"""Coarse-to-fine NRE stage by stage on a sample of pairs, for several coarse levels and fine-map scalings.

For each pair and each feature variant (a backend and its options, e.g. dsift at coarse stride 16 and 8), side by
side in one process (variants interleaved pair by pair, so that machine load hits them alike):
- ``truth_gnc``: coarse GNC started at the true pose (does the coarse objective hold the truth, or drift away?);
- ``p3p`` / ``coarse_gnc`` / ``fine_gnc``: the estimator's stages (``nre.solver.nre.nre_coarse_to_fine``), the fine
  stage once per fine-map scaling (``--norms``) and coarse-mass region (``--regions``) from the same coarse pose;
- ``fine_from_truth``: the fine stage started at the true pose (the fine objective alone);
plus the time of the coarse maps (features and maps, as in the maps job), of the estimator, and the size of the
coarse-only map cache (compressed npz, as ``nre maps --no-matches`` writes it).

Rows go to ``--out`` (CSV); a summary (failure rates at 2 / 5 / 10 deg and 0.25 / 1 / 5 units, medians) is printed,
with single-level NRE on the same pairs read from ``--single`` (a run's errors.parquet) when given.

    python scripts/c2f_stages.py --root data/synth --pairs results/default/pairs.csv --scenes test_03 test_04 \
        test_06 --category hard --n-pairs 80 --variant s16 dsift '{"coarse_stride": 16}' \
        --variant s8 dsift '{"coarse_stride": 8}' --out work/c2f/stages.csv --single results/default/errors.parquet
"""

from __future__ import annotations

import argparse
import io
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nre.data.pairs import load_pair
from nre.features import get_backend
from nre.features.base import enable_memo
from nre.geometry import pose_error
from nre.maps import cache
from nre.seeding import derive_seed
from nre.solver.gnc import Terms, refine
from nre.solver.msac import DenseTableScorer
from nre.solver.nre import eq6_cost, fine_stage, nre_coarse_to_fine
from nre.solver.options import NreOptions

ROT = (2, 5, 10)
TRANS = (0.25, 1, 5)


def cache_bytes(arrays: dict) -> int:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.tell()


def errors(pose, gt):
    if pose is None:
        return np.inf, np.inf
    e = pose_error(pose, gt)
    return float(e.rotation_deg), float(e.translation)


def run_pair(row, root, name, backend, opts, norms, regions, schedules, from_truth, max_points, seed):
    pair = load_pair(root, row)
    t0 = time.process_time()
    arrays, feats, capped = cache._compute(pair, backend, max_points, seed, matches=False)
    t_maps = time.process_time() - t0
    prob = cache.problem_from_arrays(capped, arrays, derive_seed(seed, row["pair_id"], "nre_c2f"), None)
    prob.features = feats
    feats.target_map(opts.fine_level)  # fine features extracted before the estimator's clock, as in a job
    feats.source_descriptors(opts.fine_level)
    gt = capped.target_pose
    coarse = prob.coarse_maps
    base = {
        "pair_id": row["pair_id"],
        "variant": name,
        "maps_cpu_s": t_maps,
        "cache_bytes": cache_bytes(arrays),
        "coarse_shape": "x".join(map(str, coarse.shape)),
        "coarse_nnz": coarse.nnz,
        "n_points": capped.n,
    }
    out = []
    scorer = DenseTableScorer(coarse, capped.points3d, capped.target_camera, dtype=np.float32)
    cost_truth = eq6_cost(scorer, gt)
    for sched in [tuple(opts.coarse_sigmas)] + [s for s in schedules if s != tuple(opts.coarse_sigmas)]:
        t1 = time.process_time()
        g = refine(gt, capped.points3d, capped.target_camera, Terms.from_sparse(coarse), sched, opts.max_iterations)
        d = {**base, "stage": "truth_gnc", "sched": ",".join(f"{v:g}" for v in sched)}
        d.update(cpu_s=time.process_time() - t1, cost=eq6_cost(scorer, g.pose), cost_at_truth=cost_truth)
        out.append({**d, **dict(zip(("rot", "trans"), errors(g.pose, gt)))})
    t1 = time.process_time()
    res = nre_coarse_to_fine(prob, opts)
    t_est = time.process_time() - t1
    for r in res:
        d = {**base, "stage": r.stage, "norm": opts.local_norm, "region": opts.mass_region}
        d["sched"] = ",".join(f"{v:g}" for v in opts.coarse_sigmas) if r.stage != "p3p" else "-"
        d.update(dict(zip(("rot", "trans"), errors(r.pose if r.success else None, gt))))
        d["cpu_s"] = t_est if r.stage == "fine_gnc" else np.nan
        d["cost"] = r.diagnostics.get("cost", np.nan)
        d["cost_at_truth"] = r.diagnostics.get("cost_at_truth", np.nan)
        out.append(d)
    coarse_pose = res[1].pose if res[1].success else None
    for sched in [s for s in schedules if s != tuple(opts.coarse_sigmas)]:
        d = {**base, "stage": "coarse_gnc", "sched": ",".join(f"{v:g}" for v in sched), "cost_at_truth": cost_truth}
        if res[0].success:
            g = refine(
                res[0].pose,
                capped.points3d,
                capped.target_camera,
                Terms.from_sparse(coarse),
                sched,
                opts.max_iterations,
            )
            d.update(dict(zip(("rot", "trans"), errors(g.pose, gt))), cost=eq6_cost(scorer, g.pose))
        else:
            d.update(rot=np.inf, trans=np.inf)
        out.append(d)
    for norm in norms:
        for region in regions:
            o = replace(opts, local_norm=norm, mass_region=region)
            starts = (("fine_gnc", coarse_pose), ("fine_from_truth", gt))[: 2 if from_truth else 1]
            for stage, start in starts:
                if stage == "fine_gnc" and norm == opts.local_norm and region == opts.mass_region:
                    continue  # the estimator's own row above
                d = {**base, "stage": stage, "norm": norm, "region": region}
                if start is None:
                    d.update(rot=np.inf, trans=np.inf)
                else:
                    t1 = time.process_time()
                    f = fine_stage(prob, start, coarse, o)
                    d["cpu_s"] = time.process_time() - t1
                    d.update(dict(zip(("rot", "trans"), errors(f.pose if f.success else None, gt))))
                    d["fine_nnz"] = f.diagnostics.get("fine_nnz", np.nan)
                out.append(d)
    return out


def summary(df: pd.DataFrame) -> pd.DataFrame:
    keys = ["variant", "stage", "sched", "norm", "region"]
    df = df.copy()
    for k in ("sched", "norm", "region"):
        df[k] = df[k].fillna("-")
    rows = []
    for key, g in df.groupby(keys, sort=False):
        r = dict(zip(keys, key))
        r["n"] = len(g)
        for t in ROT:
            r[f"R>{t}"] = float((g["rot"] > t).mean())
        for t in TRANS:
            r[f"t>{t}"] = float((g["trans"] > t).mean())
        r["med_R"] = float(np.median(g["rot"]))
        r["med_t"] = float(np.median(g["trans"]))
        if g["cost"].notna().any():  # Eq. 6 (coarse maps): the estimate cheaper than the truth = objective failure
            wrong = g["rot"] > 10
            r["wrong_cheaper"] = float((wrong & (g["cost"] < g["cost_at_truth"])).sum() / max(wrong.sum(), 1))
        rows.append(r)
    return pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--scenes", nargs="*", default=None)
    ap.add_argument("--category", default="hard")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n-pairs", type=int, default=80)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--variant", nargs=3, action="append", metavar=("NAME", "FEATURES", "OPTIONS_JSON"), required=True)
    ap.add_argument("--options", default="{}", help="NreOptions of nre_c2f (JSON)")
    ap.add_argument("--norms", nargs="*", default=["cells", "side", "mass"], help="fine-map scalings (none: skip)")
    ap.add_argument("--regions", nargs="*", default=["corners", "window"])
    ap.add_argument(
        "--coarse-schedules",
        nargs="*",
        default=[],
        help="extra coarse GNC sigma schedules (comma-separated cells), run from the truth and from the P3P pose",
    )
    ap.add_argument("--no-fine-from-truth", action="store_true", help="skip the fine stage started at the truth")
    ap.add_argument("--max-points", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--single", default=None, help="errors.parquet with nre_single rows for the same pairs")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    table = pd.read_csv(args.pairs, dtype={"pair_id": str})
    sel = table[(table["category"] == args.category) & (table["split"] == args.split)]
    if args.scenes:
        sel = sel[sel["scene"].isin(args.scenes)]
    sel = sel.sample(n=min(args.n_pairs, len(sel)), random_state=args.sample_seed).sort_values("pair_id")
    opts = NreOptions(**json.loads(args.options))
    schedules = [tuple(float(v) for v in s.split(",")) for s in args.coarse_schedules]
    variants = [(n, get_backend(f, **json.loads(o))) for n, f, o in args.variant]
    for _, b in variants:
        enable_memo(b, 512)
    rows = []
    t_start = time.perf_counter()
    for i, (_, row) in enumerate(sel.iterrows()):
        order = variants if i % 2 == 0 else variants[::-1]  # alternate the order: load hits variants alike
        for name, backend in order:
            rows += run_pair(
                row,
                args.root,
                name,
                backend,
                opts,
                args.norms,
                args.regions,
                schedules,
                not args.no_fine_from_truth,
                args.max_points,
                args.seed,
            )
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{len(sel)} pairs, {time.perf_counter() - t_start:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    pd.set_option("display.width", 200)
    print(f"{len(sel)} {args.split} {args.category} pairs of {sorted(sel['scene'].unique())}")
    print(summary(df).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.single:
        e = pd.read_parquet(args.single)
        e = e[(e["estimator"] == "nre_single") & e["pair_id"].isin(sel["pair_id"])]
        e = e.rename(columns={"rotation_error_deg": "rot", "translation_error": "trans"})
        e["variant"], e["stage"] = "nre_single (" + args.single + ")", "final"
        e = e[["variant", "stage", "rot", "trans"]].assign(norm="-", region="-", sched="-", cost=np.nan)
        print(summary(e).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    t = (
        df.drop_duplicates(["pair_id", "variant"])
        .groupby("variant")[["maps_cpu_s", "cache_bytes", "coarse_nnz"]]
        .mean()
    )
    t["c2f_cpu_s"] = (
        df[
            (df["stage"] == "fine_gnc")
            & df["cpu_s"].notna()
            & (df["norm"] == opts.local_norm)
            & (df["region"] == opts.mass_region)
        ]
        .groupby("variant")["cpu_s"]
        .mean()
    )
    print("mean per pair (CPU s; cache: coarse-only npz bytes):")
    print(t.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
