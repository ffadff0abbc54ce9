"""Scenes from photographs whose cameras are known: 3D points triangulated at the fixed ground-truth poses.

Two sources, one result: ``OUT/<scene>/sparse`` (a COLMAP model, PINHOLE cameras) + ``OUT/<scene>/images``, the
MegaDepth layout ``nre.data.scenes`` reads, so pairs, maps and estimators run on it unchanged.

- Strecha et al. (CVPR 2008) scenes: ``<root>/<scene>/images/NNNN.jpg`` and ``<root>/<scene>/cameras/NNNN.jpg.camera``
  (``gt_dense_cameras/`` in openMVG's SfM_quality_evaluation copy): ``read_strecha_camera``, ``read_strecha_scene``,
  ``list_strecha_scenes``, ``build_strecha_scenes``.
- a COLMAP model whose poses are trusted (a calibrated rig, a survey): ``read_colmap_views``, ``build_colmap_scene``.

The Strecha camera file holds 26 numbers: K (3 x 3, row-major), 3 radial distortion terms, R (3 x 3), C (3), width and
height. R and C place the camera in the world, x_world = R x_camera + C, so the world-to-camera pose of this project
is (R^T, -R^T C). K is given at the original 3072 x 2048 resolution and is scaled to the image actually read.

Pixel convention of the Strecha K (``STRECHA_PIXEL_CENTRE``): the centre of the top-left pixel is taken to be (0, 0),
as in this project (and OpenCV). Scaling then follows the one image <-> map transform of ``nre.geometry``:
x' + 0.5 = s (x + 0.5), so cx' = s (cx + 0.5) - 0.5, fx' = s fx; ``Camera.to_pycolmap`` adds COLMAP's 0.5 once.
Whether the file meant (0, 0) or COLMAP's (0.5, 0.5) for that centre cannot be told from the photographs: the
two differ by a quarter pixel at half resolution, below what the triangulated points resolve (docs/strecha.md).

The build (``triangulate_known_poses``), with pycolmap 4.2 (never a free SfM, never a bundle adjustment of poses):
SIFT extraction image by image into a COLMAP database whose cameras are then set to the known intrinsics; exhaustive
matching with two-view geometric verification (the known poses play no part in it); ``pycolmap.triangulate_points``
on a reconstruction holding the known cameras and poses (it refines points only; the poses are checked to come back
unchanged); undistortion when the cameras have distortion. Then the consistency check: the written model read back
as every later stage reads it (``nre.geometry``), the reprojection error of every observation against the given
cameras. A scene whose median or 90th percentile error or number of points is out of bounds fails with an
``InputError`` naming the scene and the numbers (its ``sparse/`` is removed; ``triangulation/`` keeps the report, the
database and the model for inspection): that is what a wrong pose convention or intrinsics scaling produces.

Determinism: with ``threads=1`` (the default) a rerun writes the same model bit for bit (tested): every RANSAC takes
``seed`` and one thread fixes the order of floating-point sums.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nre.errors import InputError
from nre.geometry import Camera, Pose

log = logging.getLogger("nre.scene")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".ppm", ".pgm")
STRECHA_CAMERA_DIRS = ("cameras", "gt_dense_cameras")  # our copy, openMVG's SfM_quality_evaluation
STRECHA_PIXEL_CENTRE = 0.0  # coordinate of the top-left pixel's centre in the Strecha K (see the module doc)
SCENE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")  # as the config schema's scene names
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
ZERO_DISTORTION_IS_PINHOLE = ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV")  # not the fisheye models


@dataclass(frozen=True)
class Thresholds:
    """Bounds of the consistency check. SIFT matches of photographs whose cameras are right reproject within a few
    tenths of a pixel; the triangulator keeps observations within 4 px, so cameras that do not fit the photographs
    leave few points, spread over 0-4 px."""

    max_median_px: float = 1.0
    max_p90_px: float = 2.0
    min_points: int = 100


@dataclass
class SceneReport:
    scene: str
    source: str  # where the cameras came from
    images: int
    points: int
    observations: int
    mean_track_length: float
    median_reprojection_error_px: float | None  # None: no observation
    p90_reprojection_error_px: float | None
    mean_reprojection_error_px: float | None
    keypoints: int  # SIFT features over all images
    verified_pairs: int  # image pairs with a verified two-view geometry
    ok: bool  # the consistency check passed
    thresholds: dict
    seconds: dict  # per stage
    out_dir: str
    image_size: dict = field(default_factory=dict)  # name -> (W, H) of the written images

    def summary(self) -> str:
        return (
            f"scene {self.scene}: {self.images} images, {self.points} points ({self.observations} observations, "
            f"track length {self.mean_track_length:.2f}), reprojection error median "
            f"{self.median_reprojection_error_px:.3f} px, 90% {self.p90_reprojection_error_px:.3f} px; "
            + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
            + f" -> {self.out_dir}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- reading
def image_size(path: Path) -> tuple[int, int]:
    """(W, H) from the image header; InputError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"{path}: unreadable image ({e})") from None


def list_images(images_dir: Path) -> list[str]:
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: image folder does not exist")
    names = sorted(p.name for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise InputError(f"{images_dir}: no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}) in the folder")
    return names


def read_strecha_camera(path: str | Path, image_size: tuple[int, int] | None = None) -> tuple[Camera, Pose]:
    """One Strecha ``.camera`` file -> (PINHOLE camera in this project's convention, world-to-camera pose).

    ``image_size`` (W, H) of the image actually read: K is scaled from the file's width and height to it (None:
    the file's own resolution). Anything wrong is an ``InputError`` naming the file and the problem."""
    path = Path(path)
    try:
        v = np.array(path.read_text().split(), dtype=float)
    except OSError as e:
        raise InputError(f"{path}: cannot read camera file ({e.strerror or e})") from None
    except ValueError as e:
        raise InputError(f"{path}: not a Strecha camera file: non-numeric value ({e})") from None
    if v.size != 26:
        raise InputError(
            f"{path}: not a Strecha camera file: {v.size} numbers, expected 26 (K 3x3, 3 distortion terms, R 3x3, "
            "C 3, width height)"
        )
    if not np.all(np.isfinite(v)):
        raise InputError(f"{path}: non-finite value in the camera file")
    K, dist, R, C, (W, H) = v[:9].reshape(3, 3), v[9:12], v[12:21].reshape(3, 3), v[21:24], v[24:26]
    if W != int(W) or H != int(H) or W < 1 or H < 1:
        raise InputError(f"{path}: width and height must be positive integers, got {W:g} {H:g}")
    W, H = int(W), int(H)
    if not (K[0, 0] > 0 and K[1, 1] > 0 and K[1, 0] == 0 and np.array_equal(K[2], [0, 0, 1])):
        raise InputError(f"{path}: K is not an upper-triangular intrinsics matrix with positive focal lengths: "
                         f"{K.tolist()}")  # fmt: skip
    if abs(K[0, 1]) > 1e-6 * K[0, 0]:
        raise InputError(f"{path}: K has a skew of {K[0, 1]:g}, which a PINHOLE camera cannot represent")
    if np.any(dist != 0):
        raise InputError(
            f"{path}: non-zero radial distortion {dist.tolist()}: only undistorted photographs are read (undistort "
            "them first, or give a COLMAP model with the distortion: nre scene colmap)"
        )
    dev = float(np.abs(R.T @ R - np.eye(3)).max())
    if dev > 1e-3 or np.linalg.det(R) <= 0:
        raise InputError(f"{path}: R is not a rotation (|R^T R - I| = {dev:.2g}, det {np.linalg.det(R):.3g})")
    U, _, Vt = np.linalg.svd(R)  # the nearest rotation: the file prints 6 digits
    R = U @ Vt
    camera = Camera.pinhole(K, W, H)
    camera.params[2:] -= STRECHA_PIXEL_CENTRE
    if image_size is not None:
        w, h = (int(x) for x in image_size)
        sx, sy = w / W, h / H
        if abs(sx * H - h) > 1 or abs(sy * W - w) > 1:
            raise InputError(f"{path}: the image is {w}x{h} but the camera is {W}x{H}: not one scaling of it")
        camera = camera.scaled(sx, sy, width=w, height=h)
    return camera, Pose(R.T, -R.T @ C)


def strecha_cameras_dir(scene_dir: Path) -> Path | None:
    for d in STRECHA_CAMERA_DIRS:
        if (Path(scene_dir) / d).is_dir():
            return Path(scene_dir) / d
    return None


def _camera_file(cam_dir: Path, name: str) -> Path | None:
    """``<name>.camera``, else the one ``<stem>.<ext>.camera`` (an image converted to another format)."""
    exact = cam_dir / f"{name}.camera"
    if exact.is_file():
        return exact
    stem = Path(name).stem
    found = sorted(cam_dir.glob(f"{glob_escape(stem)}.*.camera"))
    return found[0] if len(found) == 1 else None


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)


def list_strecha_scenes(root: str | Path, names: list[str] | None = None) -> list[str]:
    """The scene folders of ``root`` in the Strecha layout (``images/`` + ``cameras/`` or ``gt_dense_cameras/``),
    sorted; ``names`` restricts them (each must exist)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: folder of calibrated scenes does not exist")
    found = sorted(p.name for p in root.iterdir() if (p / "images").is_dir() and strecha_cameras_dir(p))
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise InputError(f"{root}: no scene {missing[0]} (<scene>/images + <scene>/cameras); found: "
                             f"{', '.join(found) or 'none'}")  # fmt: skip
        found = list(dict.fromkeys(names))
    if not found:
        hint = " (it is itself a scene: give its parent folder)" if strecha_cameras_dir(root) else ""
        raise InputError(f"{root}: no scene folder with images/ and cameras/ (or gt_dense_cameras/){hint}")
    bad = [n for n in found if not SCENE_NAME.fullmatch(n)]
    if bad:
        raise InputError(f"{root / bad[0]}: scene name may only use letters, digits, _ . + - (not first: . + -)")
    return found


def read_strecha_scene(scene_dir: str | Path) -> dict[str, tuple[Camera, Pose]]:
    """image name -> (camera scaled to the image's size, world-to-camera pose) for every image of a Strecha scene.
    An image without a camera file is an error; camera files without an image are left out (logged)."""
    scene_dir = Path(scene_dir)
    cam_dir = strecha_cameras_dir(scene_dir)
    if cam_dir is None:
        raise InputError(f"{scene_dir}: no cameras/ (or gt_dense_cameras/) folder")
    views = {}
    for name in list_images(scene_dir / "images"):
        f = _camera_file(cam_dir, name)
        if f is None:
            raise InputError(f"{scene_dir / 'images' / name}: no camera file {cam_dir / (name + '.camera')}")
        views[name] = read_strecha_camera(f, image_size(scene_dir / "images" / name))
    extra = len(list(cam_dir.glob("*.camera"))) - len(views)
    if extra > 0:
        log.info("scene %s: %d camera file(s) without an image left out", scene_dir.name, extra)
    return views


def read_colmap_views(model_dir: str | Path, images_dir: str | Path) -> dict[str, tuple[object, Pose]]:
    """image name -> (pycolmap camera, world-to-camera pose) for the posed images of a COLMAP model that are in
    ``images_dir``. The model's 3D points are optional (they are triangulated again). A camera whose size differs
    from its image is rescaled to it (the same scaling for every COLMAP model)."""
    import pycolmap

    from nre.data.scenes import check_model_files

    model_dir, images_dir = Path(model_dir), Path(images_dir)
    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: model folder does not exist")
    kind = ".bin" if (model_dir / "images.bin").exists() else ".txt"
    for f in ("cameras", "images"):
        if not (model_dir / f"{f}{kind}").exists():
            raise InputError(f"{model_dir}: missing {f}.bin / {f}.txt")
    read_dir = model_dir
    if not (model_dir / f"points3D{kind}").exists():  # pycolmap reads a model with all three files
        import tempfile

        read_dir = Path(tempfile.mkdtemp(prefix="nre_model_"))
        for f in model_dir.iterdir():
            if f.is_file():
                shutil.copy(f, read_dir / f.name)
        (read_dir / f"points3D{kind}").write_bytes(b"\0" * 8 if kind == ".bin" else b"")
    try:
        check_model_files(read_dir)
        rec = pycolmap.Reconstruction(str(read_dir))
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{model_dir}: corrupt COLMAP model ({type(e).__name__}: {e})") from None
    finally:
        if read_dir != model_dir:
            shutil.rmtree(read_dir, ignore_errors=True)
    names = set(list_images(images_dir))
    views, unposed, missing = {}, 0, []
    for im in rec.images.values():
        if not im.has_pose:
            unposed += 1
            continue
        if im.name not in names:
            missing.append(im.name)
            continue
        cam = pycolmap.Camera(rec.cameras[im.camera_id].todict())
        w, h = image_size(images_dir / im.name)
        if (cam.width, cam.height) != (w, h):
            if abs(w / cam.width * cam.height - h) > 1:
                raise InputError(f"{images_dir / im.name}: the image is {w}x{h} but its camera {im.camera_id} in "
                                 f"{model_dir} is {cam.width}x{cam.height}: not one scaling of it")  # fmt: skip
            cam.rescale(w, h)
        views[im.name] = (cam, Pose.from_pycolmap(im.cam_from_world()))
    if missing:
        log.warning("%s: %d posed image(s) not in %s left out, e.g. %s", model_dir, len(missing), images_dir,
                    missing[0])  # fmt: skip
    if unposed:
        log.info("%s: %d image(s) without a pose left out", model_dir, unposed)
    if len(views) < 2:
        raise InputError(f"{model_dir}: {len(views)} posed image(s) found in {images_dir}, need at least 2")
    return views


# ---------------------------------------------------------------------------------------------- the check
def model_reprojection_errors(model_dir: str | Path) -> tuple[np.ndarray, int]:
    """(reprojection error in pixels of every observation, number of 3D points) of a COLMAP model, read back with
    pycolmap and projected with ``nre.geometry`` (this project's conventions): a point behind its camera counts as
    an infinite error."""
    import pycolmap

    rec = pycolmap.Reconstruction(str(model_dir))
    ids = np.array(sorted(rec.points3D), dtype=np.int64)
    if not len(ids):
        return np.zeros(0), 0
    xyz = np.stack([rec.points3D[i].xyz for i in ids])
    errors = []
    for im in rec.images.values():
        obs = im.get_observation_points2D()
        if not len(obs):
            continue
        xy = np.array([p.xy for p in obs]) - 0.5  # COLMAP's pixel centres -> this project's
        X = xyz[np.searchsorted(ids, np.array([p.point3D_id for p in obs], dtype=np.int64))]
        cam = Camera.from_pycolmap(rec.cameras[im.camera_id])
        uv, front = cam.project(X, Pose.from_pycolmap(im.cam_from_world()))
        errors.append(np.where(front, np.linalg.norm(uv - xy, axis=1), np.inf))
    return np.concatenate(errors) if errors else np.zeros(0), len(ids)


def _rounded(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None  # JSON has no infinity: no points, no error


def _stats(errors: np.ndarray) -> tuple[float, float, float]:
    if not len(errors):
        return float("inf"), float("inf"), float("inf")
    med, p90 = np.percentile(errors, [50, 90])
    return float(med), float(p90), float(np.mean(errors))


# ---------------------------------------------------------------------------------------------- the build
def _pycolmap_camera(camera):
    """A pycolmap copy of ``camera``; a perspective model whose distortion is all zero becomes the PINHOLE camera it
    is (COLMAP's undistorter would keep its model)."""
    import pycolmap

    cam = camera.to_pycolmap() if isinstance(camera, Camera) else pycolmap.Camera(camera.todict())
    if cam.model.name in ZERO_DISTORTION_IS_PINHOLE and cam.is_undistorted():
        K = cam.calibration_matrix()
        cam = pycolmap.Camera(model="PINHOLE", width=cam.width, height=cam.height,
                              params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])  # fmt: skip
    return cam


def _stage_images(names, images_dir: Path, cams: dict, dest: Path, max_image_size: int | None) -> dict:
    """Copy (or, above ``max_image_size``, downscale with area averaging) the images into ``dest``, rescaling their
    cameras; returns name -> (W, H) written."""
    import cv2

    from nre.features.images import resize_image, resized_size

    dest.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for i, n in enumerate(names):
        cam = cams[n]
        size = resized_size((cam.width, cam.height), max_image_size)
        if size == (cam.width, cam.height):
            shutil.copyfile(images_dir / n, dest / n)
        else:
            img = cv2.imread(str(images_dir / n), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise InputError(f"{images_dir / n}: unreadable image")
            small, _ = resize_image(img, size=size)
            if not cv2.imwrite(str(dest / n), small, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise InputError(f"{dest / n}: cannot write the resized image")
            cam.rescale(*size)
            log.info("images %d/%d: %s %dx%d -> %dx%d", i + 1, len(names), n, *image_size(images_dir / n), *size)
        sizes[n] = size
    return sizes


def triangulate_known_poses(
    images_dir: str | Path,
    views: dict,
    out_root: str | Path,
    scene: str,
    *,
    source: str = "",
    max_image_size: int | None = None,
    max_features: int = 8192,
    seed: int = 0,
    threads: int = 1,
    thresholds: Thresholds | None = None,
    overwrite: bool = False,
) -> SceneReport:
    """Build ``out_root/<scene>`` (MegaDepth layout) from the images of ``images_dir`` and their known cameras and
    poses: ``views`` maps image name -> (camera: ``nre.geometry.Camera`` or pycolmap camera, sized to the image as
    read; world-to-camera ``Pose``). ``max_image_size`` downscales larger images (and their cameras) first.
    Raises ``InputError`` when the consistency check fails (see the module doc); the report is written to
    ``out_root/<scene>/triangulation/report.json`` either way."""
    import pycolmap

    th = thresholds or Thresholds()
    images_dir = Path(images_dir)
    if not SCENE_NAME.fullmatch(scene):
        raise InputError(f"scene name {scene!r} may only use letters, digits, _ . + - (not first: . + -)")
    names = sorted(views)
    if len(names) < 2:
        raise InputError(f"scene {scene}: {len(names)} image(s) with a known camera, need at least 2")
    cams = {n: _pycolmap_camera(views[n][0]) for n in names}
    poses = {n: views[n][1] for n in names}
    for n in names:
        size = image_size(images_dir / n)
        if size != (cams[n].width, cams[n].height):
            raise InputError(f"{images_dir / n}: the image is {size[0]}x{size[1]} but its camera is "
                             f"{cams[n].width}x{cams[n].height}")  # fmt: skip
    out_dir = Path(out_root) / scene
    work = out_dir / "triangulation"
    if out_dir.exists():
        if not overwrite:
            raise InputError(f"{out_dir}: already exists (pass --overwrite to rebuild it)")
        shutil.rmtree(out_dir)
    work.mkdir(parents=True)
    undistorted = all(c.model.name in PINHOLE_MODELS for c in cams.values())
    threads, secs = int(threads), {}
    pycolmap.set_random_seed(int(seed))
    log.info("scene %s: %d images with known cameras (%s)", scene, len(names), source or images_dir)

    t0 = time.perf_counter()
    if undistorted:  # the photographs are final: features are extracted from the copies in the output
        stage = out_dir / "images"
        sizes = _stage_images(names, images_dir, cams, stage, max_image_size)
    elif max_image_size is not None:
        stage = work / "images"
        sizes = _stage_images(names, images_dir, cams, stage, max_image_size)
    else:
        stage, sizes = images_dir, {n: (cams[n].width, cams[n].height) for n in names}
    secs["images"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    db_path = work / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"  # replaced by the known camera below
    ext = pycolmap.FeatureExtractionOptions()
    ext.num_threads = threads
    ext.max_image_size = max(max(s) for s in sizes.values())  # features at the images' own resolution
    ext.sift.max_num_features = int(max_features)
    # one image per call shows progress; COLMAP spreads images (not one image) over threads, so with more threads
    # all images go in one call
    batches = [[n] for n in names] if threads == 1 else [names]
    done = 0
    for batch in batches:
        t1 = time.perf_counter()
        try:
            pycolmap.extract_features(
                db_path, stage, image_names=batch, camera_mode=pycolmap.CameraMode.PER_IMAGE, reader_options=reader,
                extraction_options=ext, device=pycolmap.Device.cpu,
            )  # fmt: skip
        except Exception as e:
            raise InputError(f"{stage}: feature extraction of {batch[0]}... failed ({type(e).__name__}: {e})") from None
        done += len(batch)
        log.info("scene %s: features %d/%d %s (%.1f s)", scene, done, len(names), batch[-1], time.perf_counter() - t1)
    db = pycolmap.Database.open(db_path)
    try:
        rec = pycolmap.Reconstruction()
        by_name = {im.name: im for im in db.read_all_images()}
        if sorted(by_name) != names:
            raise InputError(f"{stage}: feature extraction skipped {sorted(set(names) - set(by_name))}")
        keypoints = 0
        for n in names:
            im = by_name[n]
            cam = pycolmap.Camera(cams[n].todict())
            cam.camera_id = im.camera_id
            cam.has_prior_focal_length = True  # verification then uses the calibrated (essential matrix) model
            db.update_camera(cam)
            rec.add_camera_with_trivial_rig(cam)
            rec.add_image_with_trivial_frame(
                pycolmap.Image(name=n, camera_id=im.camera_id, image_id=im.image_id), poses[n].to_pycolmap()
            )
            keypoints += db.num_keypoints_for_image(im.image_id)
    finally:
        db.close()
    secs["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    match = pycolmap.FeatureMatchingOptions()
    match.num_threads = threads
    verify = pycolmap.TwoViewGeometryOptions()
    verify.ransac.random_seed = int(seed)
    for i, n in enumerate(names[:-1]):  # image i against every later image: all pairs, with progress
        t1 = time.perf_counter()
        pairs = work / "pairs.txt"
        pairs.write_text("".join(f"{n} {m}\n" for m in names[i + 1 :]))
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = pairs
        pycolmap.match_image_pairs(db_path, matching_options=match, pairing_options=pairing,
                                   verification_options=verify, device=pycolmap.Device.cpu)  # fmt: skip
        log.info("scene %s: matching %d/%d %s against %d images (%.1f s)", scene, i + 1, len(names) - 1, n,
                 len(names) - 1 - i, time.perf_counter() - t1)  # fmt: skip
    pairs.unlink()
    db = pycolmap.Database.open(db_path)
    verified = int(db.num_verified_image_pairs())
    db.close()
    secs["matching"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log.info("scene %s: triangulating at the fixed poses (%d verified image pairs)", scene, verified)
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = threads
    opts.random_seed = int(seed)
    opts.mapper.num_threads = threads
    opts.mapper.random_seed = int(seed)
    opts.triangulation.random_seed = int(seed)
    opts.extract_colors = True
    model_dir = work / "model"
    model_dir.mkdir()
    tri = pycolmap.triangulate_points(rec, db_path, stage, model_dir, clear_points=True, options=opts,
                                      refine_intrinsics=False)  # fmt: skip
    for im in tri.images.values():  # fixed means fixed: a pycolmap that moved a pose would change the benchmark
        n = im.name
        moved = np.abs(np.asarray(im.cam_from_world().matrix()) - poses[n].matrix[:3]).max()
        params = np.abs(np.asarray(tri.cameras[im.camera_id].params) - np.asarray(cams[n].params)).max()
        if moved > 1e-9 or params > 1e-9:
            raise RuntimeError(f"scene {scene}: pycolmap moved the fixed pose / camera of {n} ({moved:g}, {params:g})")
    secs["triangulation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if undistorted:
        (out_dir / "sparse").mkdir()
        tri.write(out_dir / "sparse")
    else:
        log.info("scene %s: undistorting %d images (PINHOLE) into %s", scene, len(names), out_dir)
        pycolmap.undistort_images(out_dir, model_dir, stage, output_type="COLMAP", num_threads=threads)
        shutil.rmtree(out_dir / "stereo", ignore_errors=True)
        for script in out_dir.glob("run-colmap-*.sh"):
            script.unlink()
        sizes = {n: image_size(out_dir / "images" / n) for n in names}
        models = {c.model.name for c in pycolmap.Reconstruction(str(out_dir / "sparse")).cameras.values()}
        if models - {"PINHOLE"}:
            raise InputError(f"scene {scene}: COLMAP's undistortion left {sorted(models - {'PINHOLE'})} cameras "
                             "(a fisheye model without distortion?): give PINHOLE or OPENCV cameras")  # fmt: skip
    secs["output"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    errors, n_points = model_reprojection_errors(out_dir / "sparse")
    med, p90, mean = _stats(errors)
    ok = bool(med <= th.max_median_px and p90 <= th.max_p90_px and n_points >= th.min_points)
    secs["check"] = time.perf_counter() - t0
    report = SceneReport(
        scene=scene,
        source=source or str(images_dir),
        images=len(names),
        points=n_points,
        observations=len(errors),
        mean_track_length=round(len(errors) / max(n_points, 1), 4),
        median_reprojection_error_px=_rounded(med),
        p90_reprojection_error_px=_rounded(p90),
        mean_reprojection_error_px=_rounded(mean),
        keypoints=keypoints,
        verified_pairs=verified,
        ok=ok,
        thresholds=asdict(th),
        seconds={k: round(v, 2) for k, v in secs.items()},
        out_dir=str(out_dir),
        image_size=sizes,
    )
    (work / "report.json").write_text(json.dumps(report.to_dict(), indent=1))
    if not ok:
        shutil.rmtree(out_dir / "sparse")  # no later stage may read a model that fails its own cameras
        raise InputError(
            f"scene {scene}: the triangulated points do not fit the given cameras: reprojection error median "
            f"{med:.3g} px (max {th.max_median_px:g}), 90th percentile {p90:.3g} px (max {th.max_p90_px:g}), "
            f"{n_points} points (min {th.min_points}) from {verified} verified image pairs; a wrong pose convention "
            f"or intrinsics scaling does this (report: {work / 'report.json'})"
        )
    log.info("%s", report.summary())
    return report


def build_strecha_scenes(
    root: str | Path, out_root: str | Path, scenes: list[str] | None = None, **options
) -> list[SceneReport]:
    """Every scene of a Strecha-layout ``root`` (or those named in ``scenes``) into ``out_root/<scene>``; options as
    ``triangulate_known_poses``. All camera files are read first (a bad one stops the run before any work); a scene
    failing its consistency check does not stop the others, and the run then fails naming every failed scene."""
    root = Path(root)
    names = list_strecha_scenes(root, scenes)
    views = {s: read_strecha_scene(root / s) for s in names}
    reports, failed = [], []
    for i, s in enumerate(names):
        log.info("scene %d/%d: %s", i + 1, len(names), s)
        try:
            rep = triangulate_known_poses(root / s / "images", views[s], out_root, s, source=f"strecha {root / s}",
                                          **options)  # fmt: skip
            reports.append(rep)
        except InputError as e:
            if len(names) == 1:
                raise
            log.error("%s", e)
            failed.append(str(e))
    if failed:
        raise InputError(f"{len(failed)} of {len(names)} scenes failed: " + " | ".join(failed))
    return reports


def build_colmap_scene(
    images_dir: str | Path, model_dir: str | Path, out_root: str | Path, scene: str, **options
) -> SceneReport:
    """A COLMAP model with trusted poses (cameras + posed images; points optional) re-triangulated at its fixed poses
    from the photographs of ``images_dir`` into ``out_root/<scene>``; options as ``triangulate_known_poses``."""
    views = read_colmap_views(model_dir, images_dir)
    return triangulate_known_poses(images_dir, views, out_root, scene, source=f"colmap {model_dir}", **options)
