"""Trials ranked by the objective, straight from the study (the source of truth).

One row per trial with the columns a user ranks by; `scaleout leaderboard` and the sweep
summary print these rows (the frame's `queries.leaderboard` is the same ranking in pandas:
both follow `workspace.best_first`). The knob columns are the plan's (`SweepStore.knobs`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from scaleout.results.format import fmt_value
from scaleout.sweep.workspace import CORE_KNOBS, TrialRecord, best_first

_HEAD = ("rank", "trial", "state", "origin", "objective", "NDS", "mAP")
_TAIL = (
    "gpus",
    "samples_per_gpu",
    "global_batch",
    "epochs",
    "attempts",
    "wall_time_s",
    "gpu_hours",
    "samples_per_s",
    "mlflow_run_id",
)


def columns(knobs: Sequence[str] = CORE_KNOBS) -> tuple[str, ...]:
    """The CSV/JSON columns for a plan's knobs."""
    return (*_HEAD, *knobs, *_TAIL)


COLUMNS = columns()


def trial_row(
    r: TrialRecord, rank: int | None = None, knobs: Sequence[str] = CORE_KNOBS
) -> dict[str, Any]:
    p, res = r.params, r.result
    return {
        "rank": rank,
        "trial": r.number,
        "state": r.state,
        "origin": r.origin,
        "objective": r.value,
        "NDS": res.get("NDS"),
        "mAP": res.get("mAP"),
        **{k: p.get(k) for k in knobs},
        "gpus": p.get("gpus"),
        "samples_per_gpu": p.get("samples_per_gpu"),
        "global_batch": p.get("global_batch"),
        "epochs": res.get("epochs"),
        "attempts": r.attempts,
        "wall_time_s": res.get("wall_time_s"),
        "gpu_hours": res.get("gpu_hours"),
        "samples_per_s": res.get("samples_per_s"),
        "mlflow_run_id": r.run_id,
    }


def leaderboard_rows(
    trials: Iterable[Any],
    objective: str,
    direction: str,
    *,
    include_waiting: bool = False,
    knobs: Sequence[str] = CORE_KNOBS,
) -> list[dict[str, Any]]:
    """Completed trials first, best first; then pruned (by last reported value), running,
    failed. Ranks count completed trials only. `trials`: `TrialRecord`s (from
    `SweepStore.records`) or Optuna FrozenTrials."""
    records = [
        t if isinstance(t, TrialRecord) else TrialRecord.from_trial(t, objective) for t in trials
    ]
    records = [r for r in records if include_waiting or r.state != "WAITING"]
    return [trial_row(r, rank, knobs) for rank, r in best_first(records, direction)]


def to_csv(rows: list[dict[str, Any]], knobs: Sequence[str] = CORE_KNOBS) -> str:
    cols = columns(knobs)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(cols), extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in cols})
    return buf.getvalue()


def to_json(rows: list[dict[str, Any]], knobs: Sequence[str] = CORE_KNOBS) -> str:
    cols = columns(knobs)
    return json.dumps([{k: row.get(k) for k in cols} for row in rows], indent=2)


# Table headers shorter than the keys, where a terminal needs the room.
_TITLES = {"rank": "#", "warmup_iters": "warmup", "gpus": "GPUs", "attempts": "tries"}
_TITLES |= {"wall_time_s": "wall", "gpu_hours": "GPU-h"}


def rich_table(
    rows: list[dict[str, Any]],
    objective: str,
    *,
    limit: int | None = None,
    knobs: Sequence[str] = CORE_KNOBS,
) -> Any:
    from rich.table import Table

    keys = ["rank", "trial", "state", "origin", "objective", "mAP", *knobs]
    keys += ["gpus", "attempts", "wall_time_s", "gpu_hours"]
    if objective == "mAP":
        keys.remove("mAP")
    t = Table(title=None)
    for k in keys:
        title = objective if k == "objective" else _TITLES.get(k, k)
        t.add_column(title, justify="left" if k in ("trial", "state", "origin") else "right")
    for row in rows[:limit]:
        t.add_row(*(fmt_value(row.get(k), k) for k in keys))
    return t
