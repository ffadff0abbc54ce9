"""Single-core cost of the workflow's jobs on a sample of pairs, side by side in one run: ``nre maps`` per backend,
then ``nre estimate`` per estimator of a config (its grid and options), each in its own process with one thread,
as the workflow runs them. Prints seconds per pair and the projected single-core seconds for the whole config.

Usage: python scripts/profile_jobs.py --config config/config.yaml --n-pairs 40 [--estimators fpr nre_single]
       [--profile DIR]  (cProfile output per job in DIR)  [--contiguous START] (consecutive pairs, as in a chunk)
Environment: NRE_FEATURE_MEMO_MB=0 turns the jobs' feature memo off (compare both in one session).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--n-pairs", type=int, default=40)
    ap.add_argument("--estimators", nargs="*", default=None)
    ap.add_argument("--features", nargs="*", default=None)
    ap.add_argument("--work", default="work/profile")
    ap.add_argument("--profile", default=None, help="directory for cProfile outputs (one per job)")
    ap.add_argument("--skip-maps", action="store_true")
    ap.add_argument(
        "--contiguous",
        type=int,
        default=None,
        metavar="START",
        help="profile the N consecutive pairs from row START (as in a chunk: images shared between pairs)",
    )
    args = ap.parse_args()
    cfg = yaml.safe_load(open(args.config))
    out = Path(cfg["out"])
    table = pd.read_csv(out / "pairs.csv", dtype={"pair_id": str})
    if args.contiguous is not None:  # a slice of consecutive pairs, as a chunk of the workflow sees them
        sub = table.iloc[args.contiguous : args.contiguous + args.n_pairs]
    else:  # spread over every scene (no image shared by two sampled pairs: the feature memo never hits)
        step = max(1, len(table) // args.n_pairs)
        sub = table.iloc[::step].head(args.n_pairs)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sub.to_csv(work / "pairs.csv", index=False)
    root = cfg["data"]["root"]
    feats = args.features or list(cfg["features"])
    prof = Path(args.profile) if args.profile else None
    if prof:
        prof.mkdir(parents=True, exist_ok=True)

    def run(name, cmd):
        pre = [sys.executable, "-m", "cProfile", "-o", str(prof / f"{name}.prof")] if prof else [sys.executable]
        t0 = time.perf_counter()
        r = subprocess.run(pre + ["-m", "nre.cli"] + cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode:
            print(r.stderr[-2000:])
        return dt

    total = 0.0
    n_all = len(table)
    print(f"{len(sub)} pairs of {n_all}; seconds per pair, projected single-core seconds for all pairs")
    for f in feats:
        fo = json.dumps(cfg["features"][f].get("options", {}))
        mdir = work / "maps" / f
        if not args.skip_maps:
            dt = run(
                f"maps_{f}",
                [
                    "maps",
                    "--pairs",
                    str(work / "pairs.csv"),
                    "--root",
                    root,
                    "--features",
                    f,
                    "--features-options",
                    fo,
                    "--max-points",
                    str(cfg["max_points"]),
                    "--seed",
                    str(cfg["seed"]),
                    "--threads",
                    "1",
                    "--out-dir",
                    str(mdir),
                    "--force",
                ]
                + ([] if f == cfg["table1_features"] else ["--no-matches"]),  # as the workflow: coarse maps only
            )
            total += dt / len(sub) * n_all
            print(f"maps {f:14s} {dt / len(sub):7.3f} s/pair {dt / len(sub) * n_all:8.0f} s")
    t1 = cfg["table1_features"]
    for name, spec in cfg["estimators"].items():
        spec = spec or {}
        cls = spec.get("class", name)
        if args.estimators and name not in args.estimators:
            continue
        for f in feats:
            if f != t1 and cls != "nre_c2f":
                continue
            cmd = [
                "estimate",
                "--pairs",
                str(work / "pairs.csv"),
                "--root",
                root,
                "--maps-dir",
                str(work / "maps" / f),
                "--features",
                f,
                "--features-options",
                json.dumps(cfg["features"][f].get("options", {})),
                "--estimator",
                cls,
                "--name",
                name,
                "--options",
                json.dumps(spec.get("options", {})),
                "--max-points",
                str(cfg["max_points"]),
                "--seed",
                str(cfg["seed"]),
                "--threads",
                "1",
                "--out",
                str(work / "rows" / f"{f}_{name}.parquet"),
            ]
            if spec.get("grid"):
                cmd += ["--grid", json.dumps(spec["grid"])]
            dt = run(f"{f}_{name}", cmd)
            total += dt / len(sub) * n_all
            print(f"{name:16s} {f:8s} {dt / len(sub):7.3f} s/pair {dt / len(sub) * n_all:8.0f} s", flush=True)
    print(f"total projected single-core: {total:.0f} s = {total / 60:.1f} min ({total / 120:.1f} min on 2 cores)")


if __name__ == "__main__":
    main()
