"""Trials ranked by the objective, straight from the study (the source of truth).

One row per trial with the columns a user ranks by; `scaleout leaderboard`, the sweep
summary and the analysis DataFrame all start from `leaderboard_rows`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from scaleout.sweep.search import Attr

COLUMNS = (
    "rank",
    "trial",
    "state",
    "origin",
    "objective",
    "NDS",
    "mAP",
    "lr",
    "warmup_iters",
    "min_lr_ratio",
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


def trial_row(t: FrozenTrial, objective: str) -> dict[str, Any]:
    ua = t.user_attrs
    p = ua.get(Attr.PARAMS) or {}
    r = ua.get(Attr.RESULT) or {}
    attempts = ua.get(Attr.ATTEMPT, 1 if ua.get(Attr.JOB) else 0)
    return {
        "rank": None,
        "trial": t.number,
        "state": t.state.name,
        "origin": ua.get(Attr.ORIGIN, "sampled"),
        "objective": t.value if t.state == TrialState.COMPLETE else r.get(objective),
        "NDS": r.get("NDS"),
        "mAP": r.get("mAP"),
        "lr": p.get("lr"),
        "warmup_iters": p.get("warmup_iters"),
        "min_lr_ratio": p.get("min_lr_ratio"),
        "gpus": p.get("gpus"),
        "samples_per_gpu": p.get("samples_per_gpu"),
        "global_batch": p.get("global_batch"),
        "epochs": r.get("epochs"),
        "attempts": attempts,
        "wall_time_s": r.get("wall_time_s"),
        "gpu_hours": r.get("gpu_hours"),
        "samples_per_s": r.get("samples_per_s"),
        "mlflow_run_id": ua.get(Attr.RUN_ID),
    }


def leaderboard_rows(
    trials: list[FrozenTrial], objective: str, direction: str, *, include_waiting: bool = False
) -> list[dict[str, Any]]:
    """Completed trials first, best first; then pruned (by last reported value), failed,
    running. Ranks count completed trials only."""
    rows = [
        trial_row(t, objective) for t in trials if include_waiting or t.state != TrialState.WAITING
    ]
    sign = -1.0 if direction == "maximize" else 1.0
    order = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "FAIL": 3, "WAITING": 4}

    def key(row: dict[str, Any]) -> tuple[int, float, int]:
        v = row["objective"]
        return (
            order.get(row["state"], 5),
            sign * v if isinstance(v, float) and math.isfinite(v) else math.inf,
            row["trial"],
        )

    rows.sort(key=key)
    rank = 0
    for row in rows:
        if row["state"] == "COMPLETE":
            rank += 1
            row["rank"] = rank
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    return buf.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps([{k: row.get(k) for k in COLUMNS} for row in rows], indent=2)


def rich_table(rows: list[dict[str, Any]], objective: str, *, limit: int | None = None) -> Any:
    from rich.table import Table

    t = Table(title=None)
    cols = [
        ("#", "rank"),
        ("trial", "trial"),
        ("state", "state"),
        ("origin", "origin"),
        (objective, "objective"),
        ("mAP", "mAP"),
        ("lr", "lr"),
        ("warmup", "warmup_iters"),
        ("min_lr_ratio", "min_lr_ratio"),
        ("GPUs", "gpus"),
        ("tries", "attempts"),
        ("wall", "wall_time_s"),
        ("GPU-h", "gpu_hours"),
    ]
    if objective == "mAP":
        cols = [c for c in cols if c[1] != "mAP"]
    for title, _ in cols:
        t.add_column(title, justify="left" if title in ("trial", "state", "origin") else "right")
    for row in rows[:limit]:
        t.add_row(*(_cell(k, row.get(k)) for _, k in cols))
    return t


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "trial":
        return f"t{value:03d}"
    if key in ("lr", "min_lr_ratio"):
        return f"{value:.2e}"
    if key in ("objective", "mAP", "NDS"):
        return f"{value:.4f}"
    if key == "wall_time_s":
        from scaleout.results.format import fmt_duration

        return fmt_duration(value)
    if key == "gpu_hours":
        return f"{value:.2f}"
    return str(value)
