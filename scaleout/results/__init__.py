"""Reading a sweep back: the DataFrame, queries, the leaderboard, plots, reports, and the one
writer that publishes them to MLflow.

    frame        load_sweep, load_epochs, load_sweeps: the read model (pandas)
    queries      questions of a frame: best trial, best vs the rules, totals, cost
    leaderboard  ranked rows straight from the study (CLI, summary, CSV/JSON)
    plots        matplotlib figures of a frame
    report       `scaleout report`: HTML and Markdown
    publish      the one writer: plots and leaderboard to the sweep's MLflow run
    format       one way to print a number

`from scaleout.results import load_sweep` works; the frame (pandas) is imported on first use,
so the light modules (format, leaderboard) stay light for the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it (imported when the name is first asked for)
_EXPORTS = {
    "load_sweep": "frame",
    "load_epochs": "frame",
    "load_sweeps": "frame",
    "NoFinishedTrials": "queries",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
