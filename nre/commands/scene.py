"""``nre scene``: a MegaDepth-layout scene from photographs whose cameras are known (points triangulated at the
fixed poses, nre.data.calibrated): Strecha-layout scene folders, or images + a COLMAP model with trusted poses."""

from __future__ import annotations

import logging
from pathlib import Path

HELP = "triangulate photographs at their known cameras into OUT/<scene> (MegaDepth layout)"
DESCRIPTION = (
    "SIFT features, exhaustive matching and triangulation at the FIXED known poses (pycolmap; no SfM, no bundle "
    "adjustment of the poses) into OUT/<scene>/sparse (PINHOLE) + OUT/<scene>/images. The model is checked against "
    "the cameras (reprojection error, points): a scene out of bounds fails with exit status 2. A report per scene "
    "goes to OUT/<scene>/triangulation/report.json. With --threads 1 (default) a rerun gives the same model bit "
    "for bit."
)


def _common(p):
    p.add_argument("--max-image-size", type=int, default=None, help="downscale larger images (and cameras) first")
    p.add_argument("--max-features", type=int, default=8192, help="SIFT features per image")
    p.add_argument("--seed", type=int, default=0, help="seed of every RANSAC")
    p.add_argument("--threads", type=int, default=1, help="threads (more is faster; reruns are bit-identical with 1)")
    p.add_argument("--max-median-error", type=float, default=1.0, help="check: median reprojection error bound (px)")
    p.add_argument("--max-p90-error", type=float, default=2.0, help="check: 90th percentile bound (px)")
    p.add_argument("--min-points", type=int, default=100, help="check: fewest 3D points")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT/<scene>")


def add_arguments(p):
    sub = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    s = sub.add_parser("strecha", help="every scene of ROOT: <scene>/images + <scene>/cameras (or gt_dense_cameras)")
    s.add_argument("root", help="folder of scenes in the Strecha layout")
    s.add_argument("out", help="output root: each scene is written to OUT/<scene>")
    s.add_argument("--scenes", nargs="+", default=None, help="only these scenes (default: every scene found)")
    _common(s)
    c = sub.add_parser("colmap", help="images + a COLMAP model with trusted poses (points optional)")
    c.add_argument("images", help="folder of the photographs")
    c.add_argument("model", help="COLMAP model folder (cameras, images; points3D optional)")
    c.add_argument("out", help="output root: the scene is written to OUT/<scene>")
    c.add_argument("--scene", required=True, help="scene name")
    _common(c)


def run(args) -> int:
    import pycolmap

    from nre.data.calibrated import Thresholds, build_colmap_scene, build_strecha_scenes

    # pycolmap's own (glog) progress only with `nre -v`; nre's stage-by-stage progress is always shown
    pycolmap.logging.minloglevel = 0 if logging.getLogger().isEnabledFor(logging.DEBUG) else 1
    opts = dict(
        max_image_size=args.max_image_size,
        max_features=args.max_features,
        seed=args.seed,
        threads=args.threads,
        overwrite=args.overwrite,
        thresholds=Thresholds(args.max_median_error, args.max_p90_error, args.min_points),
    )
    if args.format == "strecha":
        reports = build_strecha_scenes(args.root, args.out, args.scenes, **opts)
    else:
        reports = [build_colmap_scene(args.images, args.model, args.out, args.scene, **opts)]
    for r in reports:
        print(r.summary())
        print(f"report: {Path(r.out_dir) / 'triangulation' / 'report.json'}")
    return 0
