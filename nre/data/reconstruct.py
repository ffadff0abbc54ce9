"""``nre sfm``: a MegaDepth-layout scene from a folder of photographs, with pycolmap (never a home-made SfM).

Pipeline (pycolmap 4.2 API): SIFT extraction into a COLMAP database -> exhaustive matching with geometric
verification -> incremental mapping -> the largest reconstruction undistorted (``pycolmap.undistort_images``) into
``OUT/<scene>/sparse/`` (PINHOLE) + ``OUT/<scene>/images/``, the undistorted layout ``nre.data.scenes`` reads. The
database and the distorted models stay in ``OUT/<scene>/sfm/`` (``database.db``, ``models/<k>/``).

Determinism: with ``threads=1`` (the default) two runs on the same machine give the same model bit for bit
(checked by ``tests/test_reconstruct.py`` on the committed images): every RANSAC (two-view verification, the
mapper's pose estimation and triangulation) takes its seed from ``seed`` (``pycolmap.set_random_seed`` and the
options' ``random_seed``), and one thread fixes the order in which the mapper's parallel parts (bundle adjustment,
matching workers) combine floating-point sums. More threads are faster (extraction and matching scale, the mapper
mostly not) but may change the model in the last digits, and thus registered images / points on hard sets.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nre.errors import InputError

log = logging.getLogger("nre.sfm")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".ppm", ".pgm")


class SfmError(InputError, RuntimeError):
    """The reconstruction cannot be made or is unusable; the message names the folder and what is wrong."""


@dataclass
class SfmReport:
    scene: str
    images: int  # photographs in the input folder
    registered: int  # images of the chosen (largest) reconstruction
    points: int
    mean_reprojection_error_px: float
    mean_track_length: float
    reconstructions: int  # models the mapper made (the largest is kept)
    seconds: dict  # per stage
    out_dir: str
    undistorted_size: dict  # image name -> (W, H) after undistortion

    def summary(self) -> str:
        s = self.seconds
        return (
            f"scene {self.scene}: {self.registered}/{self.images} images registered, {self.points} points, "
            f"mean reprojection error {self.mean_reprojection_error_px:.3f} px, track length "
            f"{self.mean_track_length:.2f}; {self.reconstructions} model(s); "
            + ", ".join(f"{k} {v:.1f} s" for k, v in s.items())
            + f" -> {self.out_dir}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def list_images(images_dir: Path) -> list[str]:
    """Image file names (sorted) directly in ``images_dir``; a clear error when there are none."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise SfmError(f"{images_dir}: image folder does not exist")
    names = sorted(p.name for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise SfmError(f"{images_dir}: no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}) in the folder")
    return names


def _check_readable(images_dir: Path, names: list[str]) -> None:
    import cv2

    bad = [n for n in names if cv2.imread(str(images_dir / n), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None]
    if bad:
        raise SfmError(f"{images_dir}: {len(bad)} unreadable image(s) (first: {bad[:3]})")


def reconstruct(
    images_dir: str | Path,
    out_root: str | Path,
    scene: str | None = None,
    *,
    camera_model: str = "SIMPLE_RADIAL",
    single_camera: bool = False,
    max_image_size: int = 1600,
    max_features: int = 8192,
    min_registered: int = 3,
    seed: int = 0,
    threads: int = 1,
    overwrite: bool = False,
) -> SfmReport:
    """Build ``out_root/<scene>`` (undistorted MegaDepth layout) from the photographs of ``images_dir``.

    ``scene`` defaults to the image folder's parent name when the folder is called ``images``, else its own name.
    ``max_image_size`` bounds SIFT extraction only (the undistorted images keep their full resolution, as
    MegaDepth's). Fails (SfmError) when fewer than ``min_registered`` images register. ``camera_model`` is any
    COLMAP model; ``single_camera`` shares one camera (one set of intrinsics) between all images."""
    import pycolmap

    images_dir = Path(images_dir).resolve()
    names = list_images(images_dir)
    _check_readable(images_dir, names)
    if scene is None:
        scene = images_dir.parent.name if images_dir.name == "images" else images_dir.name
    if min_registered < 2:
        raise SfmError(f"min_registered must be at least 2, got {min_registered}")
    if len(names) < min_registered:
        raise SfmError(f"{images_dir}: {len(names)} image(s), fewer than the {min_registered} needed")
    out_dir = Path(out_root) / scene
    work = out_dir / "sfm"
    if out_dir.exists():
        if not overwrite:
            raise SfmError(f"{out_dir}: already exists (pass --overwrite to rebuild it)")
        shutil.rmtree(out_dir)
    (work / "models").mkdir(parents=True)
    db = work / "database.db"
    threads = int(threads)
    pycolmap.set_random_seed(int(seed))
    secs: dict[str, float] = {}

    t0 = time.perf_counter()
    log.info("sfm %s: extracting SIFT features from %d images (%s)", scene, len(names), images_dir)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    ext = pycolmap.FeatureExtractionOptions()
    ext.num_threads = threads
    ext.max_image_size = int(max_image_size)
    ext.sift.max_num_features = int(max_features)
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE
    try:
        pycolmap.extract_features(
            db, images_dir, image_names=names, camera_mode=mode, reader_options=reader,
            extraction_options=ext, device=pycolmap.Device.cpu,
        )  # fmt: skip
    except Exception as e:
        raise SfmError(f"{images_dir}: feature extraction failed ({type(e).__name__}: {e})") from e
    secs["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log.info(
        "sfm %s: matching %d image pairs (exhaustive) and verifying them", scene, len(names) * (len(names) - 1) // 2
    )
    match = pycolmap.FeatureMatchingOptions()
    match.num_threads = threads
    verify = pycolmap.TwoViewGeometryOptions()
    verify.ransac.random_seed = int(seed)
    pycolmap.match_exhaustive(db, matching_options=match, verification_options=verify, device=pycolmap.Device.cpu)
    secs["matching"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log.info("sfm %s: incremental mapping", scene)
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = threads
    opts.random_seed = int(seed)
    opts.mapper.random_seed = int(seed)
    opts.mapper.num_threads = threads
    opts.min_model_size = min(opts.min_model_size, min_registered)
    opts.extract_colors = False
    counter = {"n": 0}

    def _initial_pair():
        counter["n"] = 2
        log.info("sfm %s: initial pair registered (2/%d images)", scene, len(names))

    def _next_image():  # called after each further registration (a new model restarts with its initial pair)
        counter["n"] += 1
        log.info("sfm %s: %d/%d images registered", scene, counter["n"], len(names))

    models = pycolmap.incremental_mapping(
        db, images_dir, work / "models", options=opts, initial_image_pair_callback=_initial_pair,
        next_image_callback=_next_image,
    )  # fmt: skip
    secs["mapping"] = time.perf_counter() - t0
    if not models:
        raise SfmError(f"{images_dir}: no reconstruction (too few verified matches between the {len(names)} images)")
    key = max(models, key=lambda k: (models[k].num_reg_images(), models[k].num_points3D(), -k))
    rec = models[key]
    if rec.num_reg_images() < min_registered:
        raise SfmError(
            f"{images_dir}: only {rec.num_reg_images()} of {len(names)} images registered in the largest "
            f"reconstruction (need {min_registered})"
        )
    model_dir = work / "models" / str(key)
    if not model_dir.is_dir():  # the pipeline writes every model; write the chosen one if it did not
        model_dir.mkdir(parents=True)
        rec.write(model_dir)

    t0 = time.perf_counter()
    log.info("sfm %s: undistorting %d images (PINHOLE) into %s", scene, rec.num_reg_images(), out_dir)
    undist = pycolmap.UndistortCameraOptions()
    pycolmap.undistort_images(
        out_dir, model_dir, images_dir, output_type="COLMAP", undistort_options=undist, num_threads=threads
    )
    for extra in ("stereo",):  # MVS set-up written by the undistorter: not part of the MegaDepth layout
        shutil.rmtree(out_dir / extra, ignore_errors=True)
    for script in out_dir.glob("run-colmap-*.sh"):
        script.unlink()
    secs["undistortion"] = time.perf_counter() - t0

    und = pycolmap.Reconstruction(str(out_dir / "sparse"))
    sizes = {im.name: (und.cameras[im.camera_id].width, und.cameras[im.camera_id].height) for im in und.images.values()}
    bad = {c.model.name for c in und.cameras.values()} - {"PINHOLE"}
    if bad:
        raise SfmError(f"{out_dir / 'sparse'}: undistorted model has non-PINHOLE cameras {sorted(bad)}")
    report = SfmReport(
        scene=scene,
        images=len(names),
        registered=int(und.num_reg_images()),
        points=int(und.num_points3D()),
        mean_reprojection_error_px=float(rec.compute_mean_reprojection_error()),
        mean_track_length=float(rec.compute_mean_track_length()),
        reconstructions=len(models),
        seconds={k: round(v, 2) for k, v in secs.items()},
        out_dir=str(out_dir),
        undistorted_size=sizes,
    )
    log.info("%s", report.summary())
    return report


def build_scene(
    *,
    images: str | Path,
    out: str | Path,
    scene: str | None = None,
    camera_model: str = "SIMPLE_RADIAL",
    single_camera: bool = False,
    max_image_size: int = 1600,
    max_features: int = 8192,
    min_registered: int = 3,
    seed: int = 0,
    threads: int = 1,
    overwrite: bool = False,
    report: str | Path | None = None,
) -> SfmReport:
    """``reconstruct`` (``nre sfm``), its report written as JSON to ``report`` (default
    OUT/<scene>/sfm/report.json) and its summary logged. pycolmap's own (glog) progress only with debug logging
    (``nre -v``); the stage-by-stage progress of this module always."""
    import json

    import pycolmap

    pycolmap.logging.minloglevel = 0 if logging.getLogger().isEnabledFor(logging.DEBUG) else 1
    rep = reconstruct(
        images, out, scene, camera_model=camera_model, single_camera=single_camera, max_image_size=max_image_size,
        max_features=max_features, min_registered=min_registered, seed=seed, threads=threads, overwrite=overwrite,
    )  # fmt: skip
    path = Path(report) if report else Path(rep.out_dir) / "sfm" / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rep.to_dict(), indent=1))
    log.info(rep.summary())
    return rep
