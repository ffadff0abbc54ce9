"""Camera geometry: world-to-camera poses (``pose``), camera models and the one image <-> map transform
(``camera``), P3P (``p3p``)."""

from nre.geometry.camera import (
    CAMERA_MODELS,
    MIN_DEPTH,
    Camera,
    img_to_map,
    map_scale,
    map_to_img,
)
from nre.geometry.pose import (
    Pose,
    PoseError,
    R_to_quat_wxyz,
    pose_error,
    quat_wxyz_to_R,
    rotation_angle_deg,
    skew,
    so3_exp,
)

__all__ = [
    "CAMERA_MODELS",
    "MIN_DEPTH",
    "Camera",
    "Pose",
    "PoseError",
    "R_to_quat_wxyz",
    "img_to_map",
    "map_scale",
    "map_to_img",
    "pose_error",
    "quat_wxyz_to_R",
    "rotation_angle_deg",
    "skew",
    "so3_exp",
]
