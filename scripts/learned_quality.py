"""Map quality of feature backends on real image pairs (testing only: nothing is fitted here).

    python scripts/learned_quality.py --out work/learned_quality.json [--backends dsift xfeat aliked]

Pairs: ``tests/data/sample_pair`` (the official-format sample npz: its 3D points), and Strecha pairs
(``/work/shared/data/strecha``, see its README: calibrated cameras, world-to-camera rotation R^T and translation
-R^T C, K scaled to the 1536 x 1024 images) of images i and i + ``--gap``, whose 3D points are SIFT matches
triangulated at the ground-truth poses (ratio test 0.8, reprojection error < 1 px in both images, in front of both
cameras). For each backend and level, ``nre.train.training.evaluate_backend`` (up to ``--points`` points per pair,
seeded): the Eq. 10 cross-entropy of the dense map at the true reprojection (the backend's temperature of that
level), the fraction whose argmax is within one cell of the truth, and within 8 px; for the fine level also in
16-cell windows around the truth (the coarse-to-fine estimator's local maps). ``--poses GAP`` instead runs
coarse-to-fine NRE per backend on Strecha pairs (i, i + GAP). One thread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from nre.data.pairdata import PairData
from nre.features import get_backend
from nre.features.images import load_image
from nre.geometry import Camera, Pose
from nre.train.training import TrainPair, evaluate_backend

REPO = Path(__file__).resolve().parent.parent
STRECHA = Path("/work/shared/data/strecha")


def sample_pair() -> TrainPair:
    p = PairData.load_npz(REPO / "tests/data/sample_pair/pair.npz")
    uv_s, ok_s = p.source_camera.project(p.points3d, p.source_pose)
    uv_t, ok_t = p.target_camera.project(p.points3d, p.target_pose)
    ok = ok_s & ok_t & p.source_camera.in_image(uv_s) & p.target_camera.in_image(uv_t)
    return TrainPair("sample_pair", load_image(p.source_image), load_image(p.target_image), uv_s[ok], uv_t[ok])


def strecha_camera(path: Path, size: tuple[int, int]) -> tuple[Camera, Pose]:
    v = np.array(path.read_text().split(), dtype=float)
    K, R, C, (W0, H0) = v[:9].reshape(3, 3), v[12:21].reshape(3, 3), v[21:24], v[24:26]
    s = np.array([size[0] / W0, size[1] / H0])
    fx, fy = K[0, 0] * s[0], K[1, 1] * s[1]
    cx, cy = (K[0, 2] + 0.5) * s[0] - 0.5, (K[1, 2] + 0.5) * s[1] - 0.5  # the one image <-> map transform
    cam = Camera("PINHOLE", size[0], size[1], [fx, fy, cx, cy])
    return cam, Pose(R.T, -R.T @ C)


def triangulated(img_a, img_b, cam_a, pose_a, cam_b, pose_b, max_err: float = 1.0) -> np.ndarray:
    """3D points of SIFT matches between two images triangulated at the known poses (reprojection < max_err px)."""
    sift = cv2.SIFT_create(8000)
    ga, gb = (cv2.cvtColor(i, cv2.COLOR_RGB2GRAY) for i in (img_a, img_b))
    ka, da = sift.detectAndCompute(ga, None)
    kb, db = sift.detectAndCompute(gb, None)
    m = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [x[0] for x in m if len(x) == 2 and x[0].distance < 0.8 * x[1].distance]
    pa = np.float64([ka[g.queryIdx].pt for g in good])
    pb = np.float64([kb[g.trainIdx].pt for g in good])

    def P(cam, pose):
        fx, fy, cx, cy = cam.params
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]) @ np.c_[pose.R, pose.t]

    X = cv2.triangulatePoints(P(cam_a, pose_a), P(cam_b, pose_b), pa.T, pb.T)
    X = (X[:3] / X[3]).T
    ua, oka = cam_a.project(X, pose_a)
    ub, okb = cam_b.project(X, pose_b)
    err = np.maximum(np.linalg.norm(ua - pa, axis=1), np.linalg.norm(ub - pb, axis=1))
    keep = oka & okb & (err < max_err)
    _, first = np.unique(np.round(pa[keep]), axis=0, return_index=True)  # one point per source pixel
    return X[keep][np.sort(first)]


def strecha_pairs(scenes: list[str], per_scene: int, gap: int = 1) -> list[TrainPair]:
    out = []
    for scene in scenes:
        d = STRECHA / scene
        names = sorted(p.name for p in (d / "images").glob("*.jpg"))
        for a, b in list(zip(names[:-gap], names[gap:]))[:per_scene]:
            ia, ib = load_image(d / "images" / a), load_image(d / "images" / b)
            ca, pa = strecha_camera(d / "cameras" / f"{a}.camera", (ia.shape[1], ia.shape[0]))
            cb, pb = strecha_camera(d / "cameras" / f"{b}.camera", (ib.shape[1], ib.shape[0]))
            X = triangulated(ia, ib, ca, pa, cb, pb)
            uv_s, _ = ca.project(X, pa)
            uv_t, _ = cb.project(X, pb)
            out.append(TrainPair(f"{scene}/{a[:-4]}-{b[:-4]}", ia, ib, uv_s, uv_t))
    return out


def strecha_pair_data(scene: str, a: str, b: str, max_points: int, seed: int):
    """A PairData of two Strecha images whose 3D points are triangulated SIFT matches (see above)."""
    from nre.data.pairdata import PairData

    d = STRECHA / scene
    ia, ib = load_image(d / "images" / f"{a}.jpg"), load_image(d / "images" / f"{b}.jpg")
    ca, pa = strecha_camera(d / "cameras" / f"{a}.jpg.camera", (ia.shape[1], ia.shape[0]))
    cb, pb = strecha_camera(d / "cameras" / f"{b}.jpg.camera", (ib.shape[1], ib.shape[0]))
    X = triangulated(ia, ib, ca, pa, cb, pb)
    pair = PairData(f"{scene}/{a}-{b}", d / "images" / f"{a}.jpg", d / "images" / f"{b}.jpg", X, ca, cb, pa, pb)
    return pair.capped(max_points, seed)


def poses(backends: dict, scenes: list[str], per_scene: int, gap: int, max_points: int, seed: int) -> dict:
    """Coarse-to-fine NRE (default options) on Strecha pairs (i, i + gap): rotation error of each stage."""
    from nre.geometry import pose_error
    from nre.maps.cache import build_problem
    from nre.solver.nre import nre_coarse_to_fine

    out = {}
    pairs = []
    for scene in scenes:
        names = sorted(p.stem for p in (STRECHA / scene / "images").glob("*.jpg"))
        pairs += [(scene, a, b) for a, b in list(zip(names[:-gap], names[gap:]))[:per_scene]]
    data = [strecha_pair_data(*p, max_points, seed) for p in pairs]
    for name, b in backends.items():
        rows = []
        for pair in data:
            t0 = time.process_time()
            prob = build_problem(pair, b, None, seed)
            res = nre_coarse_to_fine(prob)
            errs = [pose_error(r.pose if r.success else None, pair.target_pose).rotation_deg for r in res]
            rows.append({"pair": pair.pair_id, "rot_deg": errs, "cpu_s": time.process_time() - t0})
            print(f"{name:7s} {pair.pair_id:28s} " + " ".join(f"{e:7.3f}" for e in errs), flush=True)
        fine = np.array([r["rot_deg"][2] for r in rows])
        out[name] = {
            "pairs": rows,
            "fine_median_deg": float(np.median(fine)),
            "fine_below_1deg": float((fine < 1).mean()),
            "fine_below_5deg": float((fine < 5).mean()),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON of the results")
    ap.add_argument("--backends", nargs="+", default=["dsift", "xfeat", "aliked"])
    ap.add_argument("--options", default="{}", help='JSON {backend: options}, e.g. {"dsift": {"coarse_stride": 8}}')
    ap.add_argument("--scenes", nargs="*", default=["fountain-P11", "Herz-Jesus-P25", "castle-P30"])
    ap.add_argument("--per-scene", type=int, default=6, help="pairs per Strecha scene")
    ap.add_argument("--gap", type=int, default=1, help="Strecha pairs (i, i + GAP): larger is harder")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--poses", type=int, default=0, metavar="GAP", help="instead: coarse-to-fine NRE on (i, i + GAP)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    options = json.loads(args.options)
    if args.poses:
        bs = {n: get_backend(n, **options.get(n, {})) for n in args.backends}
        res = poses(bs, args.scenes, args.per_scene, args.poses, args.points, args.seed)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
        for n, r in res.items():
            print(
                f"{n}: fine median {r['fine_median_deg']:.3f} deg, < 1 deg {r['fine_below_1deg']:.2f}, "
                f"< 5 deg {r['fine_below_5deg']:.2f}"
            )
        return 0
    sets = {"sample_pair": [sample_pair()], "strecha": strecha_pairs(args.scenes, args.per_scene, args.gap)}
    res: dict = {"sets": {}}
    for k, v in sets.items():
        res["sets"][k] = {"pairs": [p.pair_id for p in v], "points": [len(p.src_xy) for p in v]}
    for name in args.backends:
        b = get_backend(name, **options.get(name, {}))
        res[name] = {"options": b.options() if hasattr(b, "options") else {}}
        for set_name, pairs in sets.items():
            t0 = time.process_time()
            res[name][set_name] = {lv: evaluate_backend(b, pairs, lv, args.points, args.seed) for lv in b.levels}
            res[name][set_name]["cpu_s"] = time.process_time() - t0
            for lv in b.levels:
                r = res[name][set_name][lv]
                local = f" local CE {r['local_loss_mean']:.3f} within1 {r['local_within1']:.3f}" if lv == "fine" else ""
                print(
                    f"{name:7s} {set_name:11s} {lv:6s} grid {r['grid']} CE {r['loss_mean']:.3f} "
                    f"within1 {r['within1']:.3f} within8px {r['within_8px']:.3f}{local}",
                    flush=True,
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
