"""Camera rig and frame transforms of the synthetic scenes (pure numpy).

Frames follow nuScenes: the ego frame has x forward, y left, z up (metres); a camera frame
has x right, y down, z forward. `lidar2img` maps homogeneous ego points to
(u * depth, v * depth, depth, 1), exactly the matrix BEVFormer's spatial cross-attention
uses to project its pillar reference points, so the model code is the same as for real data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

# nuScenes camera names with their yaw in the ego frame (degrees, counter-clockwise from
# forward) and horizontal field of view. The back camera is the wide one, as on the real car.
CAMERAS: tuple[tuple[str, float, float], ...] = (
    ("CAM_FRONT", 0.0, 70.0),
    ("CAM_FRONT_RIGHT", -55.0, 70.0),
    ("CAM_BACK_RIGHT", -110.0, 70.0),
    ("CAM_BACK", 180.0, 110.0),
    ("CAM_BACK_LEFT", 110.0, 70.0),
    ("CAM_FRONT_LEFT", 55.0, 70.0),
)
CAMERA_HEIGHT = 1.5  # metres above the ground, roughly the nuScenes roof mount
CAMERA_RADIUS = 0.8  # cameras sit on a ring around the roof centre


@dataclass(frozen=True)
class CameraRig:
    """Six pinhole cameras: `intrinsics` (6, 3, 3), `cam2ego` (6, 4, 4), image size H x W."""

    height: int
    width: int
    intrinsics: np.ndarray
    cam2ego: np.ndarray

    @property
    def num_cams(self) -> int:
        return len(self.intrinsics)

    @cached_property
    def lidar2img(self) -> np.ndarray:
        """(6, 4, 4) ego -> image projection, K [R^T | -R^T t] padded to 4 x 4."""
        mats = np.zeros((self.num_cams, 4, 4))
        for i in range(self.num_cams):
            ego2cam = np.linalg.inv(self.cam2ego[i])
            k4 = np.eye(4)
            k4[:3, :3] = self.intrinsics[i]
            mats[i] = k4 @ ego2cam
        return mats


def make_rig(height: int, width: int) -> CameraRig:
    """The surround rig at a given image resolution (square pixels, principal point centred)."""
    intrinsics, cam2ego = [], []
    for _, yaw_deg, fov_deg in CAMERAS:
        fx = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
        intrinsics.append(np.array([[fx, 0, width / 2.0], [0, fx, height / 2.0], [0, 0, 1]]))
        yaw = math.radians(yaw_deg)
        forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
        down = np.array([0.0, 0.0, -1.0])
        pose = np.eye(4)
        pose[:3, :3] = np.stack([right, down, forward], axis=1)  # columns: camera axes in ego
        pose[:3, 3] = [CAMERA_RADIUS * math.cos(yaw), CAMERA_RADIUS * math.sin(yaw), CAMERA_HEIGHT]
        cam2ego.append(pose)
    return CameraRig(height, width, np.stack(intrinsics), np.stack(cam2ego))


def project(points: np.ndarray, lidar2img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ego points (..., 3) into every camera: pixel (cams, ..., 2) and depth (cams, ...)."""
    homo = np.concatenate([points, np.ones((*points.shape[:-1], 1))], axis=-1)
    cam = np.einsum("cij,...j->c...i", lidar2img, homo)
    depth = cam[..., 2]
    uv = cam[..., :2] / np.maximum(depth, 1e-5)[..., None]
    return uv, depth


def box_corners(x, y, z, w, l, h, yaw) -> np.ndarray:  # noqa: E741 - nuScenes names
    """The 8 corners (8, 3) of a box whose centre is (x, y, z); l runs along the heading."""
    dx = np.array([1, 1, 1, 1, -1, -1, -1, -1]) * l / 2.0
    dy = np.array([1, -1, 1, -1, 1, -1, 1, -1]) * w / 2.0
    dz = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * h / 2.0
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([x + c * dx - s * dy, y + s * dx + c * dy, z + dz], axis=-1)


def rot2d(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def prev_to_cur(ego_dx: float, ego_dyaw: float) -> np.ndarray:
    """(3, 3) homogeneous BEV transform from the previous ego frame into the current one.

    The ego drove `ego_dx` metres forward and turned `ego_dyaw` radians since the previous
    frame, so the previous ego origin sits behind the current one. This is what BEVFormer
    derives from the CAN bus to shift and rotate its previous BEV.
    """
    mat = np.eye(3)
    # Previous origin in the current frame: drive backwards along the mean heading.
    back = rot2d(-ego_dyaw / 2.0) @ np.array([-ego_dx, 0.0])
    mat[:2, :2] = rot2d(-ego_dyaw)
    mat[:2, 2] = back
    return mat
