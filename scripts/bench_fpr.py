"""FPR's hot path, side by side in one run: the bilinear look-up with gradients on an (h, w, D) map by flat-row
``take`` (what ``baselines.fpr`` does) against 2-D fancy indexing ``fmap[y, x]`` (what it did before), on the
embedded default's fine dense-SIFT map size, and checks that both give the same bits.

Usage: python scripts/bench_fpr.py [--h 96] [--w 128] [--d 128] [--n 1000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from baselines.fpr import _bilinear_hwd


def fancy(fmap, xy):
    """The previous gather: 2-D advanced indexing of the four corners."""
    h, w, _ = fmap.shape
    x = np.clip(np.nan_to_num(xy[:, 0]), 0, w - 1 - 1e-6)
    y = np.clip(np.nan_to_num(xy[:, 1]), 0, h - 1 - 1e-6)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    a = (x - x0)[:, None].astype(fmap.dtype)
    b = (y - y0)[:, None].astype(fmap.dtype)
    f00, f01, f10, f11 = fmap[y0, x0], fmap[y0, x1], fmap[y1, x0], fmap[y1, x1]
    dx0, d10 = f01 - f00, f10 - f00
    ddx = f11 - f10 - dx0
    gx = dx0 + b * ddx
    gy = d10 + a * ddx
    return f00 + b * d10 + a * gx, gx, gy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--h", type=int, default=96)
    ap.add_argument("--w", type=int, default=128)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    fmap = rng.standard_normal((args.h, args.w, args.d)).astype(np.float32)
    xy = rng.uniform([-2, -2], [args.w + 1, args.h + 1], (args.n, 2))
    new = _bilinear_hwd(fmap, xy)[:3]
    old = fancy(fmap, xy)
    assert all(np.array_equal(p, q) for p, q in zip(new, old)), "the two gathers differ"
    times = {"take (flat rows)": [], "fancy fmap[y, x]": []}
    for _ in range(args.repeat):  # interleaved: both see the same machine load
        t0 = time.perf_counter()
        _bilinear_hwd(fmap, xy)
        t1 = time.perf_counter()
        fancy(fmap, xy)
        t2 = time.perf_counter()
        times["take (flat rows)"].append(t1 - t0)
        times["fancy fmap[y, x]"].append(t2 - t1)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:18s} {v:7.3f} ms (median of {args.repeat})")
    print(f"ratio fancy / take: {med['fancy fmap[y, x]'] / med['take (flat rows)']:.2f} (identical bits: yes)")


if __name__ == "__main__":
    main()
