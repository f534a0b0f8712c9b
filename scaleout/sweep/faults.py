"""Crash points: where the tests kill the controller for real (SIGKILL, no cleanup).

`SCALEOUT_CRASH_AT=<point>[:<n>]` makes the n-th pass (default 1st) through `crash_point(point)`
kill the process. Unset, it costs one dict lookup. The points sit between the writes that a
resume must reconcile: after ask, after submit (handle not yet stored), before tell.
"""

from __future__ import annotations

import os
import signal

_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get("SCALEOUT_CRASH_AT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
