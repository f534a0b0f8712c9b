"""Log parsing: mmcv log.json / text, mmengine scalars.json, merge across resumed runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from scaleout.core.errors import UsageError
from scaleout.trainers import logs
from scaleout.trainers.mmcv import read_mmcv_logs
from scaleout.trainers.mmengine import read_scalars

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"


@pytest.mark.parametrize("folder", ["bevformer", "bevformer_text"])
def test_bevformer_logs_after_a_resume(folder):
    m = read_mmcv_logs(LOGS / folder, global_batch=160)
    assert sorted(m.epochs) == [1, 2, 3]
    assert [m.epochs[e]["NDS"] for e in (1, 2, 3)] == [0.2111, 0.2874, 0.3312]
    assert m.latest("mAP") == 0.2407
    assert m.epochs[3]["mATE"] == 0.7021
    assert m.epochs[3]["pts_bbox_NuScenes/NDS"] == 0.3312  # raw keys kept
    assert math.isnan(m.epochs[1]["pts_bbox_NuScenes/traffic_cone_vel_err"])
    # the half-written last line (epoch 4, iter 100) is ignored
    assert m.train["epoch"] == 4 and m.train["loss"] == 12.9988
    assert m.iters_done == 3 * 176 + 50
    # first record of each run is start-up; the rest average ~1.2 s
    assert m.iter_time_s == pytest.approx(1.2, abs=0.01)
    assert m.samples_per_s == pytest.approx(160 / m.iter_time_s)
    assert len(m.sources) == 2


def test_mmengine_scalars_two_runs_and_a_partial_line():
    m = read_scalars(LOGS / "mmengine", global_batch=8)
    assert {e: v["NDS"] for e, v in m.epochs.items()} == {1: 0.2001, 2: 0.2602}
    assert m.epochs[2]["NuScenes metric/pred_instances_3d_NuScenes/mAP"] == 0.1888
    assert m.epochs[2]["mAP"] == 0.1888
    assert m.iters_done == 250 and m.train["loss"] == 14.4
    assert m.iter_time_s == pytest.approx((0.3009 + 0.3011 + 0.2991 + 0.3002) / 4)


def test_an_empty_or_missing_work_dir_is_no_metrics(tmp_path):
    for reader in (read_mmcv_logs, read_scalars):
        m = reader(tmp_path / "nothing")
        assert (m.epochs, m.iters_done, m.samples_per_s) == ({}, 0, None)


def test_later_run_wins_per_epoch():
    a = logs.parse_mmcv_json(
        logs.mmcv_json_line({"mode": "val", "epoch": 2, "iter": 5, "pts_bbox_NuScenes/NDS": 0.1}),
        "a",
    )
    b = logs.parse_mmcv_json(
        logs.mmcv_json_line({"mode": "val", "epoch": 2, "iter": 5, "pts_bbox_NuScenes/NDS": 0.2}),
        "b",
    )
    assert logs.merge([a, b]).epochs[2]["NDS"] == 0.2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", []),
        ('{"a": 1}\n{"a": 2', [{"a": 1}]),  # being written
        ('{"a": 1}\nnot json\n{"a": NaN}\n', [{"a": 1}, {"a": math.nan}]),
        ('{"a": 1}\n\n[1, 2]\n', [{"a": 1}]),
    ],
)
def test_json_records(text, expected):
    got = logs.json_records(text)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys()


@pytest.mark.parametrize(
    "raw, canonical",
    [
        ({"pts_bbox_NuScenes/NDS": 0.5}, {"NDS": 0.5}),
        ({"img_bbox_NuScenes/NDS": 0.3, "pts_bbox_NuScenes/NDS": 0.5}, {"NDS": 0.5}),
        ({"NuScenes metric/pred_instances_3d_NuScenes/mAAE": 0.2}, {"mAAE": 0.2}),
        ({"pts_bbox_NuScenes/car_AP_dist_0.5": 0.2}, {}),
    ],
)
def test_canonical_names(raw, canonical):
    got = logs.canonical(raw)
    assert {k: v for k, v in got.items() if k in logs.CANONICAL} == canonical


def test_text_lines_round_trip():
    line = logs.mmcv_text_train_line(3, 50, 176, {"lr": 9.95e-4, "time": 1.2, "loss": 13.5})
    val = logs.mmcv_text_val_line(3, 38, {"pts_bbox_NuScenes/NDS": 0.33})
    run = logs.parse_mmcv_text(line + val)
    assert run.train[0]["loss"] == 13.5 and run.iters_per_epoch == 176
    assert run.val[3]["NDS"] == 0.33


def test_require_names_the_logs_and_the_key():
    m = read_mmcv_logs(LOGS / "bevformer")
    assert logs.require(m, "NDS") == 0.3312
    with pytest.raises(UsageError, match=r"20230301_101500.log.json.*objective 'mIoU' never"):
        logs.require(m, "mIoU")
    with pytest.raises(UsageError, match=r"no log files found.*no validation results yet"):
        logs.require(read_scalars(Path("/nonexistent")), "NDS")
