"""Feature extraction time for one 640 x 480 image, per level: compact NRE networks vs the paper's architecture
(random weights) vs dense SIFT (and optionally S2DNet), measured side by side (interleaved repeats, median) so that
the ratios are meaningful on a noisy shared machine.

    python scripts/bench_features.py [--threads 2] [--repeats 5] [--image PATH] [--s2dnet] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--image", default=None, help="an image (resized to 640 x 480); default: random texture")
    ap.add_argument("--s2dnet", action="store_true", help="also time S2DNet (VGG16 at full resolution: slow)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from nre.features import get_backend
    from nre.features.nets.nre_nets import COMPACT_WEIGHTS

    if args.image:
        import cv2

        from nre.data.images import read_image

        img = cv2.resize(read_image(args.image), (640, 480), interpolation=cv2.INTER_AREA)
    else:
        img = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)

    shipped = all(p.exists() for p in COMPACT_WEIGHTS.values())
    backends = {
        "nre_compact": get_backend("nre_compact")
        if shipped
        else get_backend("nre_compact", coarse_weights=None, fine_weights=None, random_init=True),
        "nre_official_arch": get_backend("nre_official", random_init=True, fine_max_size=None),
        "dsift": get_backend("dsift"),
    }
    if args.s2dnet:
        backends["s2dnet"] = get_backend("s2dnet", random_init=True)
    times = {(b, lv): [] for b in backends for lv in ("coarse", "fine")}
    shapes = {}
    for name, b in backends.items():  # warm-up
        for lv in ("coarse", "fine"):
            shapes[(name, lv)] = tuple(b.extract(img, (lv,))[lv].desc.shape)
    for _ in range(args.repeats):
        for name, b in backends.items():
            for lv in ("coarse", "fine"):
                t0 = time.perf_counter()
                b.extract(img, (lv,))
                times[(name, lv)].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    rows = []
    for lv in ("coarse", "fine"):
        ref = med[("nre_compact", lv)]
        for name in backends:
            rows.append(
                {
                    "level": lv,
                    "backend": name,
                    "desc_shape": list(shapes[(name, lv)]),
                    "median_s": round(med[(name, lv)], 4),
                    "ratio_to_compact": round(med[(name, lv)] / ref, 2),
                }
            )
    print(f"640 x 480 image, {args.threads} threads, median of {args.repeats} (compact weights shipped: {shipped})")
    print(f"{'level':7s} {'backend':18s} {'desc (D,h,w)':18s} {'median s':>9s} {'x compact':>9s}")
    for r in rows:
        print(
            f"{r['level']:7s} {r['backend']:18s} {str(tuple(r['desc_shape'])):18s} {r['median_s']:9.3f} "
            f"{r['ratio_to_compact']:9.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "repeats": args.repeats, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
