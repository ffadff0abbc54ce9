"""``nre sfm``: build a scene in the undistorted MegaDepth layout from a folder of photographs (pycolmap SfM,
``nre.data.reconstruct.build_scene``)."""

from __future__ import annotations

HELP = "reconstruct a folder of photographs with pycolmap into OUT/<scene> (undistorted MegaDepth layout)"
DESCRIPTION = (
    "pycolmap SIFT extraction, exhaustive matching, incremental mapping, then undistortion of the largest "
    "reconstruction into OUT/<scene>/sparse (PINHOLE) + OUT/<scene>/images, the layout every other command reads. "
    "With --threads 1 (default) a rerun gives the same model bit for bit."
)


def add_arguments(p):
    p.add_argument("images", help="folder of photographs (jpg, png, ...)")
    p.add_argument("out", help="output root: the scene is written to OUT/<scene>")
    p.add_argument("--scene", default=None, help="scene name (default: the image folder's name, or its parent's "
                   "when the folder is called 'images')")  # fmt: skip
    p.add_argument("--camera-model", default="SIMPLE_RADIAL", help="COLMAP camera model (default SIMPLE_RADIAL)")
    p.add_argument("--single-camera", action="store_true", help="one camera shared by every image")
    p.add_argument("--max-image-size", type=int, default=1600, help="SIFT extraction size bound (px)")
    p.add_argument("--max-features", type=int, default=8192, help="SIFT features per image")
    p.add_argument("--min-registered", type=int, default=3, help="fail when fewer images register")
    p.add_argument("--seed", type=int, default=0, help="seed of every RANSAC of the pipeline")
    p.add_argument("--threads", type=int, default=1, help="threads (more is faster but not bit-reproducible)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT/<scene>")
    p.add_argument("--report", default=None, help="write the report (JSON) here (default OUT/<scene>/sfm/report.json)")


def run(args) -> int:
    from nre.data.reconstruct import build_scene

    build_scene(
        images=args.images,
        out=args.out,
        scene=args.scene,
        camera_model=args.camera_model,
        single_camera=args.single_camera,
        max_image_size=args.max_image_size,
        max_features=args.max_features,
        min_registered=args.min_registered,
        seed=args.seed,
        threads=args.threads,
        overwrite=args.overwrite,
        report=args.report,
    )
    return 0
