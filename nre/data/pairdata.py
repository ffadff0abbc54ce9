"""One image pair: the query's 3D points (seen in the source), both cameras and poses.

The on-disk format is the official NRE repository's sample npz: ``source_image``, ``target_image`` (paths, resolved
relative to the npz's folder, else by file name in that folder), ``p3D`` (N x 3 world points seen in the source),
``source_P``, ``target_P`` (4 x 4 world-to-camera), ``source_K``, ``target_K`` (3 x 3), ``source_dist``,
``target_dist`` (OpenCV k1 k2 p1 p2). Its K follows OpenCV's convention (pixel centres at integer coordinates),
which is this project's convention too. Optional extra keys written by this project: ``pair_id``,
``source_size``/``target_size`` (W, H).
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nre.data.images import read_image_file
from nre.errors import FileFormatError, InputError
from nre.geometry import Camera, Pose
from nre.seeding import rng_for

# A pair id names files (<maps-dir>/<pair_id>.npz): letters, digits and _ . + = @ , - only, not starting with a dot
# or a dash, so that it can never leave its folder ("../x", "/abs", "a/b") nor read as a command-line option.
# nre pairs builds ids as <scene>__<source stem>__<target stem>.
PAIR_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@,-]{0,199}")


def check_pair_id(pair_id) -> str:
    """``pair_id`` as a string if it is a safe file name stem (``PAIR_ID_RE``), else an ``InputError``."""
    pid = str(pair_id)
    if not PAIR_ID_RE.fullmatch(pid):
        raise InputError(
            f"unsafe pair id {pid!r}: ids name cache files, so they may only use letters, digits and _ . + = @ , - "
            "(not first: . -), at most 200 characters"
        )
    return pid


REQUIRED_KEYS = ("source_image", "target_image", "p3D", "source_P", "target_P", "source_K", "target_K")
KEYS = (*REQUIRED_KEYS, "source_dist", "target_dist")  # the dist keys are optional (no distortion)


@dataclass
class PairData:
    pair_id: str
    source_image: Path
    target_image: Path
    points3d: np.ndarray  # (N, 3)
    source_camera: Camera
    target_camera: Camera
    source_pose: Pose
    target_pose: Pose  # ground truth
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.points3d)

    def capped(self, max_points: int | None, seed: int) -> PairData:
        """A seeded random subset of at most ``max_points`` query points (seed derived from seed and pair id)."""
        if max_points is None or self.n <= max_points:
            return self
        idx = np.sort(rng_for(seed, "points", self.pair_id).choice(self.n, max_points, replace=False))
        return PairData(
            self.pair_id,
            self.source_image,
            self.target_image,
            self.points3d[idx],
            self.source_camera,
            self.target_camera,
            self.source_pose,
            self.target_pose,
            {**self.meta, "point_index": idx},
        )

    def save_npz(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            pair_id=self.pair_id,
            source_image=str(self.source_image),
            target_image=str(self.target_image),
            p3D=self.points3d,
            source_P=self.source_pose.matrix,
            target_P=self.target_pose.matrix,
            source_K=self.source_camera.K,
            target_K=self.target_camera.K,
            source_dist=self.source_camera.dist,
            target_dist=self.target_camera.dist,
            source_size=np.array(self.source_camera.size),
            target_size=np.array(self.target_camera.size),
        )

    @classmethod
    def load_npz(cls, path: str | Path) -> PairData:
        """The pair of an npz file in the official sample format (module docstring). A missing file or a folder is
        an OSError naming it; another file, missing keys or a malformed array a ``FileFormatError`` naming it."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "no such pair file", str(path))
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a pair file (npz)", str(path))
        try:
            z = np.load(path, allow_pickle=False)
        except Exception:
            raise FileFormatError(f"{path}: not a pair file (an npz with keys {', '.join(KEYS)})") from None
        if not hasattr(z, "files"):  # a single .npy array
            raise FileFormatError(f"{path}: not a pair file (an npz with keys {', '.join(KEYS)}), but one array")
        missing = [k for k in REQUIRED_KEYS if k not in z.files]
        if missing:
            raise FileFormatError(f"{path}: not a pair file: missing keys {missing} (has {sorted(z.files)})")
        images = {}
        for side in ("source", "target"):
            images[side] = _resolve_image(path, str(z[f"{side}_image"]))
        p3d = np.asarray(z["p3D"], dtype=float)
        if p3d.ndim != 2 or p3d.shape[1] != 3:
            raise FileFormatError(f"{path}: p3D must be N x 3, got {p3d.shape}")
        cams, poses = {}, {}
        for side in ("source", "target"):
            if f"{side}_size" in z.files:
                W, H = (int(v) for v in z[f"{side}_size"])
            else:
                W, H = _image_size(images[side])
            dist = z[f"{side}_dist"] if f"{side}_dist" in z.files else None
            try:
                cams[side] = Camera.from_K_dist(z[f"{side}_K"], dist, W, H)
                poses[side] = Pose.from_matrix(z[f"{side}_P"])
            except (ValueError, IndexError) as e:  # a malformed K, dist or P
                raise FileFormatError(f"{path}: {side} camera or pose: {e}") from None
        pair_id = str(z["pair_id"]) if "pair_id" in z.files else path.stem
        return cls(
            pair_id,
            images["source"],
            images["target"],
            p3d,
            cams["source"],
            cams["target"],
            poses["source"],
            poses["target"],
        )


def _resolve_image(npz_path: Path, name: str) -> Path:
    p = Path(name)
    for cand in (p if p.is_absolute() else npz_path.parent / p, npz_path.parent / p.name):
        if cand.exists():
            return cand
    raise FileNotFoundError(
        errno.ENOENT, f"image {name!r} not found (tried relative to {npz_path.parent} and by name)", str(npz_path)
    )


def _image_size(path: Path) -> tuple[int, int]:
    import cv2

    img = read_image_file(path, cv2.IMREAD_UNCHANGED)
    return img.shape[1], img.shape[0]
