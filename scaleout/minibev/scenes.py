"""Synthetic surround-camera scenes: objects of the 10 nuScenes classes, rendered into 6 cameras.

Every sample is a pure function of (seed, split, index), so the train and validation splits
are fixed, any process or rank can build any sample, and no data is ever downloaded.

A scene holds 3D boxes on the ground around the ego car, each with a nuScenes class, a size
drawn around that class's real mean size, a yaw, a velocity and a nuScenes attribute. The
rendering is a painter's algorithm over the projected box extents: farther objects are drawn
first so nearer ones occlude them; brightness falls with depth; the class is the hue; a light
stripe marks the front of an object and a dark one its back, so yaw is visible. A previous
frame 0.5 s earlier (objects moved by their velocity, ego moved by its own motion) gives the
temporal attention something to do: velocity is only observable from the pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaleout.minibev.geometry import CameraRig, box_corners, prev_to_cur, project
from scaleout.minibev.nuscenes_metric import CLASSES

ATTRIBUTES = (
    "cycle.with_rider",
    "cycle.without_rider",
    "pedestrian.moving",
    "pedestrian.sitting_lying_down",
    "pedestrian.standing",
    "vehicle.moving",
    "vehicle.parked",
    "vehicle.stopped",
)
# Mean (w, l, h) per class, metres, close to the nuScenes training-set means.
SIZE_PRIORS = np.array(
    [
        [1.95, 4.62, 1.73],
        [2.52, 6.94, 2.84],
        [2.94, 11.0, 3.47],
        [2.90, 12.3, 3.87],
        [2.73, 6.37, 3.19],
        [0.67, 0.73, 1.77],
        [0.77, 2.11, 1.15],
        [0.61, 1.70, 1.05],
        [0.41, 0.41, 1.07],
        [2.49, 0.48, 0.98],
    ]
)
# Flatter than nuScenes' frequencies (cars are ~45% there) so that every class is learnable
# in a few thousand samples; mAP averages classes, so an unseen class would cap it.
CLASS_WEIGHTS = np.array([0.18, 0.09, 0.07, 0.06, 0.06, 0.14, 0.08, 0.08, 0.12, 0.12])
CLASS_COLOURS = np.array(
    [
        [0.95, 0.20, 0.20],
        [0.20, 0.85, 0.20],
        [0.20, 0.30, 0.95],
        [0.90, 0.90, 0.20],
        [0.95, 0.55, 0.10],
        [0.90, 0.25, 0.90],
        [0.20, 0.90, 0.90],
        [0.55, 0.30, 0.95],
        [1.00, 0.65, 0.55],
        [0.65, 0.65, 0.65],
    ]
)
# Moving probability and speed range (m/s) per class.
MOTION = [(0.5, 3, 6), (0.5, 3, 5), (0.5, 3, 5), (0.3, 2, 4), (0.3, 1, 3)]
MOTION += [(0.6, 0.8, 1.6), (0.5, 3, 6), (0.5, 2, 4), (0.0, 0, 0), (0.0, 0, 0)]
FRAME_DT = 0.5  # seconds between the previous and the current frame (nuScenes keyframes)
N_FIELDS = 11  # x, y, z, w, l, h, yaw, vx, vy, label, attribute (-1 = none)


@dataclass(frozen=True)
class SceneConfig:
    """What a split looks like. `bev_range` is the half-width of the BEV square in metres."""

    bev_range: float = 24.0
    min_objects: int = 4
    max_objects: int = 10
    min_radius: float = 3.0
    noise: float = 0.03


def sample_objects(rng: np.random.Generator, cfg: SceneConfig) -> np.ndarray:
    """Objects (n, N_FIELDS) in the current ego frame, non-overlapping, inside the BEV disk."""
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    rows: list[np.ndarray] = []
    radius = cfg.bev_range - 1.0
    for _ in range(n):
        label = int(rng.choice(len(CLASSES), p=CLASS_WEIGHTS / CLASS_WEIGHTS.sum()))
        w, l, h = SIZE_PRIORS[label] * np.clip(1 + 0.08 * rng.standard_normal(3), 0.8, 1.2)  # noqa: E741
        for _attempt in range(20):
            r = math.sqrt(rng.uniform(cfg.min_radius**2, radius**2))  # uniform over the area
            phi = rng.uniform(-math.pi, math.pi)
            x, y = r * math.cos(phi), r * math.sin(phi)
            reach = max(w, l) / 2
            if all(
                math.hypot(x - o[0], y - o[1]) > 0.8 * (reach + max(o[3], o[4]) / 2) for o in rows
            ):
                break
        else:
            continue
        # Vehicles follow the road with right-hand traffic: heading forward on the right of the
        # ego lane, backwards on the left (as on most nuScenes streets), a few the wrong way.
        # Barriers line the road; people, cycles and cones face anywhere.
        if label <= 4:
            with_traffic = rng.random() < 0.85
            yaw = (0.0 if (y < 0) == with_traffic else math.pi) + 0.15 * rng.standard_normal()
        elif label == 9:
            yaw = rng.choice([0.0, math.pi]) + 0.2 * rng.standard_normal()
        else:
            yaw = rng.uniform(-math.pi, math.pi)
        yaw = math.atan2(math.sin(yaw), math.cos(yaw))
        p_move, v_lo, v_hi = MOTION[label]
        speed = rng.uniform(v_lo, v_hi) if rng.random() < p_move else 0.0
        attr, h = _attribute(label, speed, y, h, rng)
        vx, vy = speed * math.cos(yaw), speed * math.sin(yaw)
        rows.append(np.array([x, y, h / 2, w, l, h, yaw, vx, vy, label, attr]))
    return np.stack(rows) if rows else np.zeros((0, N_FIELDS))


def _attribute(
    label: int, speed: float, y: float, h: float, rng: np.random.Generator
) -> tuple[int, float]:
    """The nuScenes attribute, chosen so that it is observable (speed, lane, height)."""
    if label <= 4:  # vehicles: parked at the roadside, stopped in the ego lane
        if speed > 0.5:
            return ATTRIBUTES.index("vehicle.moving"), h
        return ATTRIBUTES.index("vehicle.parked" if abs(y) > 3.0 else "vehicle.stopped"), h
    if label in (6, 7):  # a rider makes the box taller, as in nuScenes annotations
        if speed > 0.5 or rng.random() < 0.4:
            return ATTRIBUTES.index("cycle.with_rider"), h + 0.6
        return ATTRIBUTES.index("cycle.without_rider"), h
    if label == 5:
        if speed > 0.3:
            return ATTRIBUTES.index("pedestrian.moving"), h
        if rng.random() < 0.2:
            return ATTRIBUTES.index("pedestrian.sitting_lying_down"), 0.9
        return ATTRIBUTES.index("pedestrian.standing"), h
    return -1, h


def previous_frame(objects: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same objects FRAME_DT earlier, in the previous ego frame, and prev->cur (3, 3)."""
    ego_dx = rng.uniform(0.0, 10.0) * FRAME_DT
    ego_dyaw = rng.uniform(-0.15, 0.15)
    mat = prev_to_cur(ego_dx, ego_dyaw)
    prev = objects.copy()
    xy = objects[:, :2] - FRAME_DT * objects[:, 7:9]
    inv = np.linalg.inv(mat)
    prev[:, :2] = xy @ inv[:2, :2].T + inv[:2, 2]
    rot = math.atan2(inv[1, 0], inv[0, 0])
    prev[:, 6] = objects[:, 6] + rot
    prev[:, 7:9] = objects[:, 7:9] @ inv[:2, :2].T
    return prev, mat


def render(
    objects: np.ndarray, rig: CameraRig, rng: np.random.Generator, noise: float
) -> np.ndarray:
    """(cams, 3, H, W) uint8 images of the objects seen by each camera."""
    H, W = rig.height, rig.width
    lidar2img = rig.lidar2img
    rows = np.arange(H, dtype=np.float64)[:, None]
    # Sky above the horizon, a ground that brightens towards the car: a weak depth cue.
    ground = np.clip(0.15 + 0.5 * (rows - H / 2) / H, 0.15, 0.5)
    base = np.where(rows < H / 2, 0.45, ground)
    imgs = np.broadcast_to(base, (rig.num_cams, 3, H, W)).copy()
    imgs[:, 2] += np.where(rows < H / 2, 0.15, 0.0)
    if len(objects):
        order = np.argsort(-np.hypot(objects[:, 0], objects[:, 1]))  # far first
        for obj in objects[order]:
            _paint(imgs, obj, lidar2img, H, W)
    imgs += noise * rng.standard_normal(imgs.shape)
    return (np.clip(imgs, 0, 1) * 255).round().astype(np.uint8)


def _paint(imgs: np.ndarray, obj: np.ndarray, lidar2img: np.ndarray, H: int, W: int) -> None:
    x, y, z, w, l, h, yaw = obj[:7]  # noqa: E741 - the nuScenes names
    label = int(obj[9])
    corners = box_corners(x, y, z, w, l, h, yaw)
    heading = np.array([math.cos(yaw), math.sin(yaw), 0.0]) * l / 2
    centre = np.array([x, y, z])
    ends = np.stack([centre + heading, centre - heading])
    uv, depth = project(np.concatenate([corners, ends]), lidar2img)
    visible = (depth[:, :8] > 0.1).sum(axis=1) >= 2
    for cam in np.flatnonzero(visible):
        front = depth[cam, :8] > 0.1
        u0, v0 = np.floor(uv[cam, :8][front].min(axis=0)).astype(int)
        u1, v1 = np.ceil(uv[cam, :8][front].max(axis=0)).astype(int)
        u0, u1, v0, v1 = max(u0, 0), min(u1, W), max(v0, 0), min(v1, H)
        if u0 >= u1 or v0 >= v1:
            continue
        dist = float(depth[cam, :8][front].mean())
        shade = min(max(1.15 - dist / 40.0, 0.35), 1.0)
        imgs[cam, :, v0:v1, u0:u1] = (CLASS_COLOURS[label] * shade)[:, None, None]
        # A light stripe at the projected front, a dark one at the back: the yaw cue.
        for end, value in ((1, 0.05), (0, 1.0)):
            if depth[cam, 8 + end] > 0.1:
                u = min(max(int(uv[cam, 8 + end, 0]), u0), u1 - 1)
                vm = (v0 + v1) // 2
                imgs[cam, :, vm:v1, u] = value


def make_sample(seed: int, split: int, index: int, rig: CameraRig, cfg: SceneConfig) -> dict:
    """One sample: current and previous images, objects, and the prev->cur ego transform."""
    rng = np.random.default_rng([seed, split, index])
    objects = sample_objects(rng, cfg)
    prev_objects, prev2cur = previous_frame(objects, rng)
    cur = render(objects, rig, rng, cfg.noise)
    prev = render(prev_objects, rig, rng, cfg.noise)
    return {"imgs": np.stack([prev, cur]), "objects": objects, "prev2cur": prev2cur}
