"""Speed and memory of the map stages for one 640 x 480 pair with 1000 points (the paper's Table 3 setting).

    python scripts/bench_maps.py [--pair PAIR.npz] [--features dsift] [--features-options JSON] [--threads 2]
                                 [--repeat 3] [--opencv] [--json OUT]

Without --pair, the sample pair's room corner is ray-cast at 640 x 480 (tests/data/sample_pair/make_sample_pair.py,
cameras scaled by 2). Stages (median wall time over --repeat runs, all in one process so ratios are comparable):
features per image and level, source descriptor sampling, coarse dense maps -> sparse loss maps, dense-level argmax
(chunked dense maps reduced on the fly), the whole cache of a pair, and full-resolution dense maps (stride 1,
timed on a subset of points and extrapolated), with memory: descriptor maps, sparse maps, chunk working set, the
dense maps the cache avoids storing, and the compressed cache file. --opencv also times the OpenCV implementation
of dense SIFT on the same images.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def render_sample(out: Path):
    """The sample pair's scene ray-cast at 640 x 480 with 1500 points; returns its PairData."""
    import cv2

    from nre.data.pairdata import PairData

    spec = importlib.util.spec_from_file_location("mk", REPO / "tests/data/sample_pair/make_sample_pair.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    small = PairData.load_npz(REPO / "tests/data/sample_pair/pair.npz")
    cams = {"source": small.source_camera.scaled(2.0), "target": small.target_camera.scaled(2.0)}
    poses = {"source": small.source_pose, "target": small.target_pose}
    for side in ("source", "target"):
        img = mk.render(cams[side], poses[side])
        cv2.imwrite(str(out / f"{side}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return PairData(
        "bench_640x480",
        out / "source.png",
        out / "target.png",
        small.points3d,
        cams["source"],
        cams["target"],
        small.source_pose,
        small.target_pose,
    )


def timed(fn, repeat: int):
    out, times = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pair", help="pair npz (default: the sample scene rendered at 640 x 480)")
    ap.add_argument("--features", default="dsift")
    ap.add_argument("--features-options", default="{}")
    ap.add_argument("--max-points", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--full-res-points", type=int, default=64, help="points timed for the full-resolution maps")
    ap.add_argument("--opencv", action="store_true", help="also time dsift's OpenCV implementation")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from nre.data.pairdata import PairData
    from nre.features import get_backend
    from nre.features.access import PairFeatures
    from nre.features.images import load_image
    from nre.maps import cache
    from nre.maps.dense import dense_maps

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    pair = PairData.load_npz(args.pair) if args.pair else render_sample(Path(tmp.name))
    pair = pair.capped(args.max_points, 0)
    backend = get_backend(args.features, **json.loads(args.features_options))
    levels = tuple(backend.levels)
    cl, dl = levels[0], levels[-1]
    img_t, img_s = load_image(pair.target_image), load_image(pair.source_image)
    rows = []

    def add(stage, seconds, memory=None, note=""):
        rows.append(
            {"stage": stage, "seconds": seconds, "memory_MB": None if memory is None else memory / 1e6, "note": note}
        )

    feats = {}
    for lv in levels:
        f, dt = timed(lambda lv=lv: backend.extract(img_t, (lv,))[lv], args.repeat)
        feats[lv] = f
        add(f"features {lv} (one image)", dt, f.desc.numel() * 4, f"{tuple(f.desc.shape)}")
    if args.opencv and args.features == "dsift":
        ocv = get_backend("dsift", **{**json.loads(args.features_options), "impl": "opencv"})
        for lv in levels:
            _, dt = timed(lambda lv=lv: ocv.extract(img_t, (lv,))[lv], 1)
            add(f"features {lv} (one image), OpenCV impl", dt, None, "cv2.SIFT.compute on a KeyPoint grid")
    pf = PairFeatures(backend, pair)
    pf._tgt.update(feats)
    pf._src_maps.update(backend.extract(img_s))
    _, dt = timed(lambda: [pf._extract("source", lv).sample(pf.source_points_xy()[0]) for lv in levels], args.repeat)
    add("source descriptors (bilinear sampling)", dt)
    src_c, src_d = pf.source_descriptors(cl), pf.source_descriptors(dl)
    tc, td = feats[cl], feats[dl]
    (coarse, _), dt = timed(lambda: dense_maps(src_c, tc.desc, 1.0, tc.scale, True), args.repeat)
    h, w = tc.desc.shape[1:]
    add(
        f"{cl} maps -> sparse loss maps",
        dt,
        coarse.nbytes,
        f"{h}x{w}, {coarse.nnz / coarse.n:.0f} of {h * w} cells kept per map; dense: {pair.n * h * w * 4 / 1e6:.1f} MB",
    )
    chunk = 256
    hd, wd = td.desc.shape[1:]
    _, dt = timed(lambda: dense_maps(src_d, td.desc, 1.0, td.scale, False, chunk), args.repeat)
    add(
        f"{dl} dense argmax (chunks of {chunk})",
        dt,
        3 * chunk * hd * wd * 4,
        f"{hd}x{wd}; working set ~3 chunk maps; storing all: {pair.n * hd * wd * 4 / 1e6:.0f} MB",
    )
    arrays, dt = timed(lambda: cache.compute_pair_cache(pair, backend), 1)
    size = cache.save(Path(tmp.name) / "c.npz", arrays).stat().st_size
    add("whole pair cache (features of both images + maps)", dt, size, "compressed npz on disk")
    if args.features == "dsift":
        full_be = get_backend("dsift", **{**json.loads(args.features_options), "fine_stride": 1})
        ff, dt_f = timed(lambda: full_be.extract(img_t, ("fine",))["fine"], 1)
        add("features at full resolution (stride 1)", dt_f, ff.desc.numel() * 4)
        k = min(args.full_res_points, pair.n)
        src_full = ff.sample(pf.source_points_xy()[0][:k]) / backend.temperature
        H, W = ff.desc.shape[1:]
        _, dt = timed(lambda: dense_maps(src_full, ff.desc, 1.0, ff.scale, False, 32), 1)
        add(
            f"full-resolution dense maps, {pair.n} points (extrapolated from {k})",
            dt * pair.n / k,
            pair.n * H * W * 4,
            f"{H}x{W} per map, float32",
        )
    print(
        f"pair {pair.pair_id}: {pair.n} points, target {img_t.shape[1]}x{img_t.shape[0]}, "
        f"{args.features} {backend_opts(backend)}, {torch.get_num_threads()} threads"
    )
    print(f"{'stage':66s} {'seconds':>9s} {'memory MB':>10s}  note")
    for r in rows:
        mem = "" if r["memory_MB"] is None else f"{r['memory_MB']:.2f}"
        print(f"{r['stage']:66s} {r['seconds']:9.4f} {mem:>10s}  {r['note']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"pair": pair.pair_id, "n_points": pair.n, "rows": rows}, indent=2))
    return 0


def backend_opts(backend) -> str:
    return json.dumps(backend.options()) if hasattr(backend, "options") else ""


if __name__ == "__main__":
    sys.exit(main())
