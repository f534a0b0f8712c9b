"""One way to print a number: durations, metric values, learning rates, costs.

Everything a user reads about a sweep (the live view, the summary, `scaleout status` and
`leaderboard`, the report, the MLflow leaderboard page) formats through here, so a value reads
the same wherever it appears. Missing values (None, NaN, pd.NA) print as "-".
"""

from __future__ import annotations

import math
import numbers
from datetime import datetime
from typing import Any

MISSING = "-"
# Columns whose values are detection metrics (scores and errors in [0, 1] or so).
METRICS = frozenset({"objective", "NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE"})


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, and pd.NA (whose comparison is NA, truthy-refusing)
    except TypeError:
        return True


def fmt_duration(seconds: float | None) -> str:
    """`m:ss` under an hour, `h:mm:ss` above."""
    if _missing(seconds):
        return MISSING
    seconds = int(seconds)  # type: ignore[arg-type]
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_metric(value: float | None) -> str:
    """NDS, mAP and the objective: four decimals (0.4312)."""
    return MISSING if _missing(value) else f"{float(value):.4f}"  # type: ignore[arg-type]


def fmt_score(value: float | None) -> str:
    """A metric in a sentence (the headline, the live bar): three decimals (0.384), the
    precision the reference scores are stated in."""
    return MISSING if _missing(value) else f"{float(value):.3f}"  # type: ignore[arg-type]


def fmt_pct(value: float | None, *, signed: bool = False) -> str:
    """A percentage given in percent (92.1 -> "92%"; signed: "-43%", "+4%")."""
    if _missing(value):
        return MISSING
    return f"{float(value):+.0f}%" if signed else f"{float(value):.0f}%"  # type: ignore[arg-type]


def fmt_share(value: float | None, *, signed: bool = False) -> str:
    """A share given as a fraction, in percent (0.77 -> "77%")."""
    return MISSING if _missing(value) else fmt_pct(100.0 * float(value), signed=signed)  # type: ignore[arg-type]


def fmt_trial_equivalents(value: float | None) -> str:
    """Trial-equivalents (a full-length trial at the target = 1): one decimal (4.6)."""
    return MISSING if _missing(value) else f"{float(value):.1f}"  # type: ignore[arg-type]


def fmt_lr(value: float | None) -> str:
    """Learning rates and lr ratios, which span decades: 8.94e-04."""
    return MISSING if _missing(value) else f"{float(value):.2e}"  # type: ignore[arg-type]


def fmt_gpu_hours(value: float | None) -> str:
    """Two decimals (355.20); a tiny sweep's fractions in e-notation rather than 0.00."""
    if _missing(value):
        return MISSING
    v = float(value)  # type: ignore[arg-type]
    return f"{v:.2f}" if v == 0 or abs(v) >= 0.01 else f"{v:.2e}"


def fmt_trial(number: int | str) -> str:
    """t007: the trial's name in run and job names, the leaderboard's CSV and JSON."""
    if isinstance(number, str) and number.startswith("t"):
        return number
    return f"t{int(number):03d}"


def fmt_counts(counts: dict[str, int]) -> str:
    """{"complete": 3, "fail": 1} -> "3 complete, 1 fail"."""
    return ", ".join(f"{n} {state}" for state, n in counts.items())


def is_lr(key: str) -> bool:
    return key in ("lr", "min_lr_ratio") or key.startswith("lr_") or key.endswith("_lr")


def fmt_value(value: Any, key: str = "") -> str:
    """One table cell, by its column's name: trials as t007, lr-like values in e-notation,
    metrics to four decimals, times as h:mm:ss, GPU-hours to two decimals; other numbers
    whole when they are, else to four significant decimals."""
    if _missing(value):
        return MISSING
    if key == "trial":
        return fmt_trial(value)
    if isinstance(value, datetime):  # pd.Timestamp too
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if type(value).__name__ in ("bool", "bool_"):  # Python's and numpy's
        return "yes" if value else "no"
    if not isinstance(value, numbers.Real):
        return str(value)
    if key.endswith("wall_time_s"):
        return fmt_duration(value)
    if key.endswith("gpu_hours") or key.endswith("hours_here"):
        return fmt_gpu_hours(value)
    if key == "pct_of_reference":
        return f"{float(value):.1f}%"
    if key == "trial_equivalents":
        return f"{float(value):.2f}"
    if isinstance(value, numbers.Integral):
        return str(value)
    value = float(value)
    if is_lr(key):
        return fmt_lr(value)
    if key in METRICS:
        return fmt_metric(value)
    if value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    if math.isfinite(value) and (abs(value) >= 1000 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4f}"
