"""One way to print a number: each kind of value, as every view of a sweep prints it."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from scaleout.results.format import (
    fmt_counts,
    fmt_duration,
    fmt_gpu_hours,
    fmt_lr,
    fmt_metric,
    fmt_value,
)


@pytest.mark.parametrize(
    ("fn", "value", "text"),
    [
        (fmt_duration, 59.9, "0:59"),
        (fmt_duration, 3725, "1:02:05"),
        (fmt_duration, None, "-"),
        (fmt_duration, math.nan, "-"),
        (fmt_metric, 0.43125, "0.4313"),
        (fmt_metric, pd.NA, "-"),
        (fmt_lr, 8.944e-4, "8.94e-04"),
        (fmt_gpu_hours, 355.2, "355.20"),
        (fmt_gpu_hours, 0.0, "0.00"),
        (fmt_gpu_hours, 0.00052, "5.20e-04"),  # a tiny sweep's cost, not "0.00"
    ],
)
def test_each_kind(fn, value, text):
    assert fn(value) == text


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("trial", 7, "t007"),
        ("trial", np.int64(12), "t012"),
        ("lr", 2e-3, "2.00e-03"),
        ("min_lr_ratio", 2.5e-5, "2.50e-05"),
        ("lr_sqrt", 8.944e-4, "8.94e-04"),
        ("tuned_lr", 4e-3, "4.00e-03"),
        ("NDS", 0.0, "0.0000"),  # a metric stays a metric when it is whole
        ("objective", 0.31, "0.3100"),
        ("mATE", np.float64(0.71234), "0.7123"),
        ("wall_time_s", 3600.0, "1:00:00"),
        ("trial_wall_time_s", 61, "1:01"),
        ("gpu_hours", 12.345, "12.35"),
        ("warmup_iters", 48, "48"),
        ("warmup_iters", 48.0, "48"),
        ("weight_decay", 0.05, "0.0500"),
        ("k", 20.0, "20"),
        ("in_range", True, "yes"),
        ("in_range", np.bool_(False), "no"),
        ("origin", "sqrt", "sqrt"),
        ("started", pd.Timestamp("2026-01-02 03:04:05"), "2026-01-02 03:04:05"),
        ("finished", datetime(2026, 1, 2, 3, 4, 5), "2026-01-02 03:04:05"),
        ("finished", pd.NaT, "-"),
        ("x", 12345.6, "1.235e+04"),
        ("x", 2e-4, "2.000e-04"),
        ("x", None, "-"),
    ],
)
def test_a_cell_by_its_column(key, value, text):
    assert fmt_value(value, key) == text


def test_counts():
    assert fmt_counts({"complete": 3, "fail": 1}) == "3 complete, 1 fail"
    assert fmt_counts({}) == ""
