from __future__ import annotations

import math

import numpy as np

from scaleout.minibev.geometry import CAMERAS, box_corners, make_rig, prev_to_cur, project
from scaleout.minibev.scenes import CLASS_COLOURS, SceneConfig, make_sample, render


def test_same_seed_same_sample_and_other_index_differs():
    rig, cfg = make_rig(16, 32), SceneConfig()
    a, b = make_sample(7, 0, 3, rig, cfg), make_sample(7, 0, 3, rig, cfg)
    assert np.array_equal(a["imgs"], b["imgs"]) and np.array_equal(a["objects"], b["objects"])
    c = make_sample(7, 0, 4, rig, cfg)
    assert not np.array_equal(a["objects"], c["objects"])
    val = make_sample(7, 1, 3, rig, cfg)  # the validation split is not the training split
    assert not np.array_equal(a["objects"], val["objects"])


def test_objects_are_plausible():
    rig, cfg = make_rig(16, 32), SceneConfig(bev_range=24.0)
    for i in range(30):
        obj = make_sample(0, 0, i, rig, cfg)["objects"]
        assert cfg.min_objects // 2 <= len(obj) <= cfg.max_objects
        assert np.all(np.hypot(obj[:, 0], obj[:, 1]) < cfg.bev_range)
        assert np.all(obj[:, 3:6] > 0) and np.allclose(obj[:, 2], obj[:, 5] / 2)
        static = np.isin(obj[:, 9], [8, 9])  # cones and barriers never move
        assert np.all(obj[static, 7:9] == 0) and np.all(obj[static, 10] == -1)


def test_point_projects_into_the_camera_that_faces_it():
    rig = make_rig(16, 32)
    names = [c[0] for c in CAMERAS]
    for name, yaw_deg, _ in CAMERAS:
        yaw = math.radians(yaw_deg)
        point = np.array([[10 * math.cos(yaw), 10 * math.sin(yaw), 1.5]])  # at camera height
        uv, depth = project(point, rig.lidar2img)
        cam = names.index(name)
        # Straight ahead of a camera at its own height: the principal point, ~9.2 m deep.
        assert np.allclose(uv[cam, 0], [16, 8], atol=1e-6)
        assert abs(depth[cam, 0] - (10 - 0.8)) < 1e-6
        opposite = names.index({"CAM_FRONT": "CAM_BACK"}.get(name, name))
        if name == "CAM_FRONT":
            assert depth[opposite, 0] < 0  # behind the back camera


def test_rendered_object_shows_its_class_colour_in_the_front_camera():
    rig = make_rig(16, 32)
    car = np.array([[8.0, 0.0, 0.865, 1.95, 4.62, 1.73, math.pi / 2, 0, 0, 0, 6]])
    imgs = render(car, rig, np.random.default_rng(0), noise=0.0)
    front = imgs[0].astype(float) / 255
    u, v = 16, 9  # the car's centre lies just below the principal point
    assert np.allclose(front[:, v, u - 3], CLASS_COLOURS[0] * (1.15 - 8.0 / 40), atol=0.06)
    empty = render(car[:0], rig, np.random.default_rng(0), noise=0.0)
    assert not np.array_equal(imgs[0], empty[0]) and np.array_equal(imgs[3], empty[3])


def test_prev_to_cur_moves_a_static_point_backwards():
    mat = prev_to_cur(ego_dx=5.0, ego_dyaw=0.0)
    # A pole 10 m ahead in the previous frame is 5 m ahead after driving 5 m.
    assert np.allclose(mat @ np.array([10.0, 0, 1]), [5.0, 0, 1])
    corners = box_corners(0, 0, 0, 2, 4, 1, 0.0)
    assert np.allclose(corners.max(0), [2, 1, 0.5]) and np.allclose(corners.min(0), [-2, -1, -0.5])
