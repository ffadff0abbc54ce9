"""Reading MegaDepth-style scenes with pycolmap (never a hand-written parser).

Two layouts are recognised under ``<root>/<scene>/``:

- undistorted (COLMAP image_undistorter, PINHOLE): ``sparse/`` holds the model, ``images/`` the images;
- the MegaDepth SfM release (SIMPLE_RADIAL): ``sparse/manhattan/<k>/`` holds one model per ``k``; each becomes its own
  scene named ``<scene>_<k>``; images in ``images/``.

A scene is an ``Scene``: cameras and poses in this project's conventions (nre.geometry), and the observations.

Bad input is contained where it is:

- the binary model files are checked against their own headers before pycolmap reads them (``check_model_files``:
  counts, record sizes, track and observation lengths, the exact file end), so a corrupt or truncated file is a
  ``SceneError`` naming the file and byte, never a multi-GB allocation in pycolmap; a failed read is remembered per
  process (``load_scene`` raises the same error again without re-reading the files);
- an image whose file is missing or whose camera model is unsupported is left out of ``Scene.images`` and recorded in
  ``Scene.excluded`` (name -> reason): only the pairs using it are affected (``nre.data.pairs``), not the scene.
"""

from __future__ import annotations

import functools
import logging
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nre.errors import InputError
from nre.geometry import Camera, Pose

log = logging.getLogger("nre.sfm")

MODEL_FILES = ("cameras", "images", "points3D")


class SceneError(InputError):
    """A scene on disk is missing, corrupt or unusable; the message names the file."""


@dataclass
class SceneImage:
    name: str
    camera: Camera
    pose: Pose
    point3d_ids: np.ndarray  # (M,) ids of the 3D points it observes (unique)
    path: Path


@dataclass
class Scene:
    name: str
    model_dir: Path
    image_dir: Path
    images: dict[str, SceneImage]
    point_ids: np.ndarray  # (P,) sorted 3D point ids
    xyz: np.ndarray  # (P, 3)
    excluded: dict[str, str] = field(default_factory=dict)  # registered images left out -> why
    excluded_point_ids: dict[str, np.ndarray] = field(default_factory=dict)  # their observed 3D point ids

    def points(self, ids: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.point_ids, ids)
        return self.xyz[idx]

    def median_depth(self) -> float:
        depths = []
        for im in self.images.values():
            if len(im.point3d_ids):
                depths.append(np.median(im.pose.transform(self.points(im.point3d_ids))[:, 2]))
        return float(np.median(depths)) if depths else float("nan")


def _model_present(d: Path) -> bool:
    return any((d / f"{f}{ext}").exists() for f in MODEL_FILES for ext in (".bin", ".txt"))


def find_models(scene_dir: Path) -> list[tuple[str, Path]]:
    """(scene name, model dir) for each model of a scene folder, in either layout."""
    scene_dir = Path(scene_dir)
    manh = scene_dir / "sparse" / "manhattan"
    if manh.is_dir():
        subs = sorted((p for p in manh.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name))
        return [(f"{scene_dir.name}_{p.name}", p) for p in subs if _model_present(p)]
    sp = scene_dir / "sparse"
    if _model_present(sp):
        return [(scene_dir.name, sp)]
    if (sp / "0").is_dir() and _model_present(sp / "0"):
        return [(scene_dir.name, sp / "0")]
    return []


def list_scenes(root: str | Path, names: list[str] | None = None) -> dict[str, tuple[Path, Path]]:
    """scene name -> (model dir, image dir) for the requested scene folders (all by default).

    A requested scene that is missing on disk is reported (warning) and skipped."""
    root = Path(root)
    if not root.is_dir():
        raise SceneError(f"{root}: data root does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if names is None else [root / n for n in names]
    out = {}
    for folder in folders:
        if not folder.is_dir():
            log.warning("scene %s: folder %s missing, skipped", folder.name, folder)
            continue
        models = find_models(folder)
        if not models:
            if names is not None:
                log.warning("scene %s: no COLMAP model under %s/sparse, skipped", folder.name, folder)
            continue
        for name, model_dir in models:
            out[name] = (model_dir, folder / "images")
    return out


def _check_files(model_dir: Path) -> None:
    for f in MODEL_FILES:
        if not ((model_dir / f"{f}.bin").exists() or (model_dir / f"{f}.txt").exists()):
            raise SceneError(f"{model_dir}: missing {f}.bin / {f}.txt")


# ---- binary model files checked against their headers (COLMAP's layout; pycolmap does the actual reading)
_U64 = struct.Struct("<Q")
_CAMERA_HEAD = 24  # camera_id i32, model_id i32, width u64, height u64; then num_params doubles
_IMAGE_HEAD = 64  # image_id u32, qvec 4 doubles, tvec 3 doubles, camera_id u32; then the name, NUL-terminated
_POINT_HEAD = 51  # point3D_id u64, xyz 3 doubles, rgb 3 u8, error double, track_length u64; then 8 bytes per element
_POINT2D = 24  # x, y doubles, point3D_id i64
_MAX_NAME = 4096


@functools.lru_cache(maxsize=1)
def _num_params() -> dict[int, int]:
    """COLMAP camera model id -> number of parameters (from pycolmap, so new models are known)."""
    import pycolmap

    out = {}
    for m in pycolmap.CameraModelId.__members__.values():
        if m.value >= 0:
            out[int(m.value)] = len(pycolmap.Camera.create_from_model_id(1, m, 1.0, 1, 1).params)
    return out


def _corrupt(path: Path, what: str) -> SceneError:
    return SceneError(f"{path}: corrupt or truncated COLMAP file: {what}")


def _header_count(path: Path, buf, min_record: int) -> int:
    size = len(buf)
    if size < 8:
        raise _corrupt(path, f"{size} bytes, shorter than its 8-byte header")
    n = _U64.unpack_from(buf, 0)[0]
    if n * min_record > size - 8:
        raise _corrupt(
            path, f"header counts {n} records (at least {n * min_record} bytes) but the file has {size} bytes"
        )
    return n


def _walk_cameras(path: Path, buf) -> None:
    n, p, size, nparams = _header_count(path, buf, _CAMERA_HEAD + 16), 8, len(buf), _num_params()
    for i in range(n):
        if p + _CAMERA_HEAD > size:
            raise _corrupt(path, f"camera {i} at byte {p} runs past the end ({size} bytes)")
        model = struct.unpack_from("<i", buf, p + 4)[0]
        if model not in nparams:
            raise _corrupt(path, f"camera {i} at byte {p} has unknown model id {model}")
        p += _CAMERA_HEAD + 8 * nparams[model]
    if p != size:
        raise _corrupt(path, f"{n} cameras end at byte {p}, the file has {size} bytes")


def _walk_images(path: Path, buf) -> None:
    n, p, size = _header_count(path, buf, _IMAGE_HEAD + 1 + 8), 8, len(buf)
    for i in range(n):
        end = buf.find(b"\0", p + _IMAGE_HEAD, min(size, p + _IMAGE_HEAD + _MAX_NAME))
        if end < 0:
            raise _corrupt(path, f"image {i} at byte {p}: no NUL-terminated name within {_MAX_NAME} bytes")
        if end + 9 > size:
            raise _corrupt(path, f"image {i} at byte {p} runs past the end ({size} bytes)")
        n2d = _U64.unpack_from(buf, end + 1)[0]
        p = end + 9 + _POINT2D * n2d
        if p > size:
            raise _corrupt(path, f"image {i} claims {n2d} 2D points, past the end of the file ({size} bytes)")
    if p != size:
        raise _corrupt(path, f"{n} images end at byte {p}, the file has {size} bytes")


def _walk_points(path: Path, buf) -> None:
    n, p, size = _header_count(path, buf, _POINT_HEAD), 8, len(buf)
    unpack = _U64.unpack_from
    for i in range(n):  # a Python loop over the points: once per scene and process (load_scene is cached)
        if p + _POINT_HEAD > size:
            raise _corrupt(path, f"point {i} at byte {p} runs past the end ({size} bytes)")
        length = unpack(buf, p + 43)[0]
        p += _POINT_HEAD + 8 * length
        if p > size:
            raise _corrupt(path, f"point {i} claims a track of {length} elements, past the end ({size} bytes)")
    if p != size:
        raise _corrupt(path, f"{n} points end at byte {p}, the file has {size} bytes")


_WALKERS = {"cameras": _walk_cameras, "images": _walk_images, "points3D": _walk_points}


def check_model_files(model_dir: str | Path) -> None:
    """Check the binary model files of ``model_dir`` against their headers (SceneError naming file and byte). Text
    models are left to pycolmap (nothing is allocated from a count there)."""
    model_dir = Path(model_dir)
    _check_files(model_dir)
    for f, walk in _WALKERS.items():
        path = model_dir / f"{f}.bin"
        if not path.exists():
            continue
        with open(path, "rb") as fh:
            size = path.stat().st_size
            if size == 0:
                raise _corrupt(path, "empty file")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                walk(path, buf)


def _signature(model_dir: Path) -> tuple:
    """Sizes and modification times of the model files: a changed file is read again."""
    sig = []
    for f in MODEL_FILES:
        for ext in (".bin", ".txt"):
            try:
                st = (model_dir / f"{f}{ext}").stat()
                sig.append((f + ext, st.st_size, st.st_mtime_ns))
            except OSError:
                pass
    return tuple(sig)


_FAILED: dict[tuple, str] = {}  # failed reads of this process: a broken scene is not re-read for every pair


def load_scene(model_dir: str | Path, image_dir: str | Path, name: str | None = None, check_images: bool = True):
    """Read a COLMAP model with pycolmap into a ``Scene`` (cached per process, and so are failures)."""
    model_dir, image_dir = Path(model_dir), Path(image_dir)
    key = (str(model_dir), str(image_dir), name, bool(check_images), _signature(model_dir))
    if key in _FAILED:
        raise SceneError(_FAILED[key])
    try:
        return _load_scene(*key)
    except SceneError as e:
        _FAILED[key] = str(e)
        raise


def _cache_clear() -> None:
    _load_scene.cache_clear()
    _FAILED.clear()


load_scene.cache_clear = _cache_clear


@functools.lru_cache(maxsize=32)  # a chunk's job reads each of its scenes once
def _load_scene(model_dir: str, image_dir: str, name: str | None, check_images: bool, _sig: tuple) -> Scene:
    import pycolmap

    model_dir, image_dir = Path(model_dir), Path(image_dir)
    check_model_files(model_dir)
    try:
        rec = pycolmap.Reconstruction(str(model_dir))
    except Exception as e:
        raise SceneError(f"{model_dir}: corrupt COLMAP model ({type(e).__name__}: {e})") from e
    if rec.num_reg_images() == 0 or rec.num_points3D() == 0:
        raise SceneError(f"{model_dir}: empty model ({rec.num_reg_images()} images, {rec.num_points3D()} points)")
    cams, bad_cams = {}, {}
    for cid, c in rec.cameras.items():
        try:
            cams[cid] = Camera.from_pycolmap(c)
        except ValueError as e:  # e.g. a fisheye model: only its images are left out
            bad_cams[cid] = f"camera {cid}: {e}"
    images, excluded, excluded_pids = {}, {}, {}
    for im in rec.images.values():
        if not im.has_pose:
            continue
        path = image_dir / im.name
        pids = np.unique(np.array([p.point3D_id for p in im.get_observation_points2D()], dtype=np.int64))
        reason = bad_cams.get(im.camera_id)
        if reason is None and check_images and not path.is_file():
            reason = f"image file missing: {path}"
        if reason is not None:
            excluded[im.name], excluded_pids[im.name] = reason, pids
            continue
        images[im.name] = SceneImage(im.name, cams[im.camera_id], Pose.from_pycolmap(im.cam_from_world()), pids, path)
    if excluded:
        first = sorted(excluded)[0]
        log.warning(
            "%s: %d of %d registered images left out (their pairs are skipped), e.g. %s: %s",
            model_dir,
            len(excluded),
            len(excluded) + len(images),
            first,
            excluded[first],
        )
    pid = np.array(sorted(rec.points3D), dtype=np.int64)
    xyz = np.stack([rec.points3D[p].xyz for p in pid]) if len(pid) else np.zeros((0, 3))
    return Scene(name or model_dir.parent.name, model_dir, image_dir, images, pid, xyz, excluded, excluded_pids)
