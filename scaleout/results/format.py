"""One way to print a number: durations, metric values, learning rates, costs.

Everything a user reads about a sweep (the live view, the summary, the leaderboard, the report)
formats through here, so a value reads the same wherever it appears.
"""

from __future__ import annotations


def fmt_duration(seconds: float | None) -> str:
    """`m:ss` under an hour, `h:mm:ss` above; "-" for unknown."""
    if seconds is None or seconds != seconds:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
