"""CPU seconds per image of the learned backends (xfeat, aliked) and dense SIFT, side by side, one thread, images at
a 1024 px long side (``max_size``), median over a few real images:

    python scripts/bench_learned.py [--images A.jpg B.jpg ...] [--points 1000] [--window 16] [--json OUT]

Stages per image, as the coarse-to-fine pipeline uses an image (each backend on the same image before the next
image, so that the machine's load affects them alike):
- ``network``: the per-image network pass (``prepare``: XFeat's 1/8 map; ALIKED's full-resolution feature map);
  dense SIFT has none.
- ``coarse map``: the dense coarse level (the maps job's target side).
- ``fine map``: the dense fine level, which dense SIFT needs for its source descriptors and windows; the learned
  backends skip it.
- ``source``: descriptors at ``--points`` query points (SIFT keypoints of the image) at the fine level.
- ``windows``: the local fine maps of the same points, ``--window`` x ``--window`` fine cells around each (the
  estimator's fine stage): for the learned backends the descriptors of just the windows' cells, then the local
  log-softmax; for dense SIFT the local log-softmax on its dense fine map.
``total`` is their sum; ``ratio`` is total / dsift's total on the same image (median of the per-image ratios).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

DEFAULT_IMAGES = [
    "/work/shared/data/strecha/fountain-P11/images/0004.jpg",
    "/work/shared/data/strecha/Herz-Jesus-P25/images/0010.jpg",
    "/work/shared/data/strecha/castle-P30/images/0015.jpg",
]
STAGES = ("network", "coarse map", "fine map", "source", "windows")


def cpu(fn):
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def keypoints(img: np.ndarray, n: int) -> np.ndarray:
    kps = cv2.SIFT_create(n).detect(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), None)
    xy = np.array([k.pt for k in kps], dtype=float)[:n]
    return xy


def bench_image(backend, img: np.ndarray, xy: np.ndarray, window: int) -> dict[str, float]:
    from nre.geometry import img_to_map
    from nre.maps.local import cell_window_logprob, descriptor_window_logprob

    t = dict.fromkeys(STAGES, 0.0)
    temp = backend.level_temperature("fine")
    if getattr(backend, "describes_points", False):
        prep, t["network"] = cpu(lambda: backend.prepare(img))
        _, t["coarse map"] = cpu(lambda: prep.dense("coarse"))
        src, t["source"] = cpu(lambda: prep.describe(xy, "fine") / temp)
        scale, shape = prep.grid("fine")
        o = np.round(img_to_map(xy, scale) - (window - 1) / 2).astype(np.int64)
        x0, y0 = np.clip(o[:, 0], 0, shape[1] - window), np.clip(o[:, 1], 0, shape[0] - window)
        _, t["windows"] = cpu(lambda: cell_window_logprob(src, lambda f: prep.cells("fine", f), shape, x0, y0, window))
    else:
        _, t["coarse map"] = cpu(lambda: backend.extract(img, ("coarse",)))
        fine, t["fine map"] = cpu(lambda: backend.extract(img, ("fine",))["fine"])
        src, t["source"] = cpu(lambda: fine.sample(xy) / temp)
        shape = tuple(fine.desc.shape[1:])
        o = np.round(img_to_map(xy, fine.scale) - (window - 1) / 2).astype(np.int64)
        x0, y0 = np.clip(o[:, 0], 0, shape[1] - window), np.clip(o[:, 1], 0, shape[0] - window)
        _, t["windows"] = cpu(lambda: descriptor_window_logprob(src, fine.desc, x0, y0, window))
    t["total"] = sum(t[s] for s in STAGES)
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", nargs="+", default=DEFAULT_IMAGES)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--max-size", type=int, default=1024)
    ap.add_argument("--backends", nargs="+", default=["dsift", "xfeat", "aliked"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    from nre.features import get_backend
    from nre.features.images import load_image

    opts = {"dsift": {"coarse_stride": 8}}  # the shipped configs' dense SIFT
    backends = {n: get_backend(n, max_size=args.max_size, **opts.get(n, {})) for n in args.backends}
    rows: dict[str, list[dict]] = {n: [] for n in backends}
    for path in args.images:
        img = load_image(path)
        xy = keypoints(img, args.points)
        for n, b in backends.items():
            bench_image(b, img, xy, args.window)  # warm-up (allocations, lazy inits)
            rows[n].append(bench_image(b, img, xy, args.window))
            print(
                f"{Path(path).parent.parent.name}/{Path(path).name} {n:7s} "
                + " ".join(f"{k} {v:.3f}" for k, v in rows[n][-1].items()),
                flush=True,
            )
    summary = {}
    for n in backends:
        med = {k: statistics.median(r[k] for r in rows[n]) for k in (*STAGES, "total")}
        if "dsift" in rows:
            med["ratio"] = statistics.median(r["total"] / d["total"] for r, d in zip(rows[n], rows["dsift"]))
        summary[n] = med
    print(
        f"\nmedian CPU s per image (1 thread, {args.max_size} px long side, {args.points} points, "
        f"{args.window}x{args.window} windows, {len(args.images)} images)"
    )
    print("backend  " + " ".join(f"{s:>10s}" for s in (*STAGES, "total", "ratio")))
    for n, m in summary.items():
        print(f"{n:8s} " + " ".join(f"{m.get(s, float('nan')):10.3f}" for s in (*STAGES, "total", "ratio")))
    if args.json:
        Path(args.json).write_text(json.dumps({"per_image": rows, "median": summary, "args": vars(args)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
