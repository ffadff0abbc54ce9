"""Reading MegaDepth-style scenes with pycolmap (never a hand-written parser).

Two layouts are recognised under ``<root>/<scene>/``:

- undistorted (COLMAP image_undistorter, PINHOLE): ``sparse/`` holds the model, ``images/`` the images;
- the MegaDepth SfM release (SIMPLE_RADIAL): ``sparse/manhattan/<k>/`` holds one model per ``k``; each becomes its own
  scene named ``<scene>_<k>``; images in ``images/``.

A scene is an ``Scene``: cameras and poses in this project's conventions (nre.geometry), and the observations.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nre.geometry import Camera, Pose

log = logging.getLogger("nre.sfm")

MODEL_FILES = ("cameras", "images", "points3D")


class SceneError(ValueError):
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


@functools.lru_cache(maxsize=32)  # a chunk's job reads each of its scenes once
def load_scene(model_dir: str | Path, image_dir: str | Path, name: str | None = None, check_images: bool = True):
    """Read a COLMAP model with pycolmap into a ``Scene`` (cached)."""
    import pycolmap

    model_dir, image_dir = Path(model_dir), Path(image_dir)
    _check_files(model_dir)
    try:
        rec = pycolmap.Reconstruction(str(model_dir))
    except Exception as e:
        raise SceneError(f"{model_dir}: corrupt COLMAP model ({type(e).__name__}: {e})") from e
    if rec.num_reg_images() == 0 or rec.num_points3D() == 0:
        raise SceneError(f"{model_dir}: empty model ({rec.num_reg_images()} images, {rec.num_points3D()} points)")
    cams = {cid: Camera.from_pycolmap(c) for cid, c in rec.cameras.items()}
    images = {}
    missing = []
    for im in rec.images.values():
        if not im.has_pose:
            continue
        path = image_dir / im.name
        if check_images and not path.exists():
            missing.append(im.name)
            continue
        pids = np.array([p.point3D_id for p in im.get_observation_points2D()], dtype=np.int64)
        images[im.name] = SceneImage(
            im.name, cams[im.camera_id], Pose.from_pycolmap(im.cam_from_world()), np.unique(pids), path
        )
    if missing:
        raise SceneError(
            f"{model_dir}: {len(missing)} image(s) referenced by the model are absent from {image_dir} "
            f"(first: {missing[:3]})"
        )
    pid = np.array(sorted(rec.points3D), dtype=np.int64)
    xyz = np.stack([rec.points3D[p].xyz for p in pid]) if len(pid) else np.zeros((0, 3))
    return Scene(name or model_dir.parent.name, model_dir, image_dir, images, pid, xyz)
