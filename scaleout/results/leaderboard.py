"""Trials ranked by the objective, straight from the study (the source of truth).

One row per trial with the columns a user ranks by; `scaleout leaderboard` and the sweep
summary print these rows (the frame's `queries.leaderboard` is the same ranking in pandas:
both follow `workspace.best_first`). The knob columns are the plan's (`SweepStore.knobs`).

A trial reads the same in the table, the CSV and the JSON: `t007` (`number` holds 7). The
JSON carries the sweep's metadata and its headline (`headline.Headline.to_dict`) beside the
rows. The table keeps its key columns (rank, trial, state, the objective, lr, warmup) readable
at any width and leaves out the others, least needed first, where the terminal is too narrow.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scaleout.core.errors import UsageError
from scaleout.results.format import fmt_trial, fmt_value
from scaleout.results.headline import (
    Headline,
    pct_of_reference,
    plan_digest,
    sweep_basis,
    trial_cost,
)
from scaleout.sweep.budget import ESTIMATED, GPU_HOURS
from scaleout.sweep.workspace import CORE_KNOBS, TrialRecord, best_first

_HEAD = ("rank", "trial", "number", "state", "origin", "objective", "NDS", "mAP")
_TAIL = (
    "pct_of_reference",
    "gpus",
    "samples_per_gpu",
    "global_batch",
    "epochs",
    "attempts",
    "wall_time_s",
    "trial_equivalents",
    "target_gpu_hours",
    "target_gpu_hours_basis",
    "compute_hours_here",
    "compute_unit_here",
    "samples_per_s",
    "mlflow_run_id",
)
# What `--state` picks, and the states it stands for.
STATE_FILTERS = {
    "all": None,
    "complete": ("COMPLETE",),
    "pruned": ("PRUNED",),
    "running": ("RUNNING",),
    "failed": ("FAIL",),
}
# Columns where more is better (best first when sorted by them); others sort low first.
_HIGHER_IS_BETTER = frozenset({"NDS", "mAP", "pct_of_reference", "samples_per_s"})


def columns(knobs: Sequence[str] = CORE_KNOBS) -> tuple[str, ...]:
    """The CSV/JSON columns for a plan's knobs."""
    return (*_HEAD, *knobs, *_TAIL)


COLUMNS = columns()


def trial_row(
    r: TrialRecord,
    rank: int | None = None,
    knobs: Sequence[str] = CORE_KNOBS,
    *,
    plan: Mapping[str, Any] | None = None,
    basis: str | None = None,
) -> dict[str, Any]:
    """One trial's row. With the plan: its % of the reference and its cost figures (a
    running trial's from its epochs so far, priced as `basis`, the sweep's)."""
    p, res = r.params, r.result
    cost = trial_cost(r, plan or {}, basis)
    objective = ((plan or {}).get("objective") or {}).get("metric", "NDS")
    value = r.value
    if value is None and r.intermediate:  # pruned (or running): its last reported value
        value = r.intermediate[max(r.intermediate)]
    return {
        "rank": rank,
        "trial": fmt_trial(r.number),
        "number": r.number,
        "state": r.state,
        "origin": r.origin,
        "objective": value,
        "NDS": res.get("NDS"),
        "mAP": res.get("mAP"),
        **{k: p.get(k) for k in knobs},
        "pct_of_reference": pct_of_reference(value, plan or {}, objective),
        "gpus": p.get("gpus"),
        "samples_per_gpu": p.get("samples_per_gpu"),
        "global_batch": p.get("global_batch"),
        "epochs": res.get("epochs", max(r.intermediate, default=None)),
        "attempts": r.attempts,
        "wall_time_s": res.get("wall_time_s"),
        "trial_equivalents": cost.trial_equivalents if r.state != "WAITING" else None,
        "target_gpu_hours": cost.target_gpu_hours,
        "target_gpu_hours_basis": cost.basis,
        "compute_hours_here": cost.compute_hours_here,
        "compute_unit_here": cost.compute_unit_here,
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
    plan: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Completed trials first, best first; then pruned (by last reported value), running,
    failed. Ranks count completed trials only. `trials`: `TrialRecord`s (from
    `SweepStore.records`) or Optuna FrozenTrials; `plan` (plan.json's dict) adds the % of
    the reference and the cost figures."""
    records = [
        t if isinstance(t, TrialRecord) else TrialRecord.from_trial(t, objective) for t in trials
    ]
    records = [r for r in records if include_waiting or r.state != "WAITING"]
    basis = sweep_basis(records)
    return [
        trial_row(r, rank, knobs, plan=plan, basis=basis)
        for rank, r in best_first(records, direction)
    ]


def select(
    rows: list[dict[str, Any]],
    *,
    state: str = "all",
    sort: str | None = None,
    objective: str = "NDS",
    direction: str = "maximize",
    knobs: Sequence[str] = CORE_KNOBS,
) -> list[dict[str, Any]]:
    """The rows `--state` keeps, in the order `--sort` asks: by that column, best first for
    scores (the objective in the sweep's direction, NDS, mAP, % of the reference), lowest
    first for everything else; trials without a value last. Ranks stay the objective's."""
    if state not in STATE_FILTERS:
        raise UsageError(f"--state {state!r}: choose one of {', '.join(STATE_FILTERS)}")
    states = STATE_FILTERS[state]
    out = [r for r in rows if states is None or r["state"] in states]
    if sort is None:
        return out
    key = "objective" if sort == objective else sort
    allowed = [c for c in columns(knobs) if c not in ("number", "mlflow_run_id")]
    if key not in allowed:
        raise UsageError(
            f"--sort {sort!r}: not a leaderboard column",
            hint="sort by one of: "
            + ", ".join(objective if c == "objective" else c for c in allowed),
        )
    if key == "trial":
        key = "number"
    descending = key in _HIGHER_IS_BETTER or (key == "objective" and direction == "maximize")

    def order(row: dict[str, Any]) -> tuple[int, Any]:
        v = row.get(key)
        if v is None or v != v:
            return (1, 0)
        if isinstance(v, (int, float)):
            return (0, -v if descending else v)
        return (0, str(v))

    return sorted(out, key=order)


def metadata(name: str, plan: Mapping[str, Any], head: Headline | None = None) -> dict[str, Any]:
    """What the JSON says of the sweep beside its rows: its objective, the plan it ran (a
    digest of plan.json), the reference recipe (with its own scores and their sources), the
    target, and the headline's figures."""
    ref = dict(plan.get("reference") or {})
    sources = plan.get("reference_sources") or {}
    return {
        "sweep": name,
        "objective": plan["objective"]["metric"],
        "direction": plan["objective"]["direction"],
        "plan_digest": plan_digest(plan),
        "target": plan.get("target"),
        "reference": {
            **ref,
            "metric_sources": {
                k.removeprefix("metric."): v for k, v in sources.items() if k.startswith("metric.")
            },
        },
        "headline": head.to_dict() if head is not None else None,
    }


def to_csv(rows: list[dict[str, Any]], knobs: Sequence[str] = CORE_KNOBS) -> str:
    cols = columns(knobs)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(cols), extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in cols})
    return buf.getvalue()


def to_json(
    rows: list[dict[str, Any]],
    knobs: Sequence[str] = CORE_KNOBS,
    *,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """The rows as a JSON list; with `meta` (`metadata`), an object: the sweep's metadata
    and headline, then the rows under `trials`."""
    cols = columns(knobs)
    trials = [{k: row.get(k) for k in cols} for row in rows]
    return json.dumps(trials if meta is None else {**meta, "trials": trials}, indent=2)


# -- the table --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    key: str
    title: str
    justify: str = "right"


def fit_table(
    cols: Sequence[Column],
    cells: Sequence[Sequence[str]],
    *,
    width: int | None,
    keep: Sequence[str],
    priority: Sequence[str] = (),
) -> Any:
    """A rich Table of `cells` that fits `width` without squeezing a value into `0.…`: the
    `keep` columns always (they fold rather than truncate where even they do not fit), then
    the others in `priority` order (the rest after them) while they fit. The columns keep
    their order in `cols`; a caption names what was left out."""
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    def build(keys: set[str], caption: str | None = None) -> Table:
        t = Table(caption=caption, caption_justify="left")
        idx = [i for i, c in enumerate(cols) if c.key in keys]
        for i in idx:
            c = cols[i]
            t.add_column(c.title, justify=c.justify, no_wrap=c.key not in keep, overflow="fold")  # type: ignore[arg-type]
        for row in cells:
            t.add_row(*(row[i] for i in idx))
        return t

    chosen = {c.key for c in cols if c.key in keep}
    if width is None:
        return build({c.key for c in cols})
    console = Console(width=10_000, file=io.StringIO())
    order = [*priority, *(c.key for c in cols if c.key not in priority)]
    dropped = []
    for key in order:
        if key in chosen or key not in {c.key for c in cols}:
            continue
        trial = build(chosen | {key})
        if Measurement.get(console, console.options, trial).maximum <= width:
            chosen.add(key)
        else:
            dropped.append(key)
    caption = None
    if dropped:
        titles = [c.title for c in cols if c.key in dropped]
        caption = f"{len(titles)} more column(s) at a wider terminal: {', '.join(titles)}"
    return build(chosen, caption)


# Table headers shorter than the keys, where a terminal needs the room.
_TITLES = {"rank": "#", "warmup_iters": "warmup", "gpus": "GPUs", "attempts": "tries"}
_TITLES |= {"wall_time_s": "wall", "pct_of_reference": "% of ref", "trial_equivalents": "trial-eq"}
# Always shown, readable at any width (issue 18: rank, trial, NDS, lr, warmup, state).
KEY_COLUMNS = ("rank", "trial", "state", "objective", "lr", "warmup_iters")
# What goes first when a terminal has room for more than the key columns.
_PRIORITY = (
    "pct_of_reference",
    "origin",
    "min_lr_ratio",
    "trial_equivalents",
    "mAP",
    "target_gpu_hours",
    "compute_hours_here",
)


def cost_titles(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The cost columns' headers, labelled by what they are: `GPU-h@160 est.` (GPU-hours
    at the target, estimated) and `CPU-h here` (the compute spent here)."""
    basis = next(
        (r["target_gpu_hours_basis"] for r in rows if r.get("target_gpu_hours_basis")), None
    )
    unit = next((r["compute_unit_here"] for r in rows if r.get("compute_unit_here")), None)
    gpus = next((r["gpus"] for r in rows if r.get("gpus")), None)
    target = f"GPU-h@{gpus}" if gpus else "GPU-h@target"
    return {
        "target_gpu_hours": target + (" est." if basis == ESTIMATED else ""),
        "compute_hours_here": ("GPU-h" if unit == GPU_HOURS else "CPU-h") + " here",
    }


def rich_table(
    rows: list[dict[str, Any]],
    objective: str,
    *,
    limit: int | None = None,
    knobs: Sequence[str] = CORE_KNOBS,
    width: int | None = None,
) -> Any:
    """The leaderboard as a rich Table; `width` (the console's) leaves out what does not fit
    beside the key columns (`KEY_COLUMNS`)."""
    keys = ["rank", "trial", "state", "origin", "objective", "pct_of_reference", "mAP", *knobs]
    keys += ["trial_equivalents", "target_gpu_hours", "compute_hours_here"]
    keys += ["attempts", "wall_time_s", "gpus"]
    if objective == "mAP":
        keys.remove("mAP")
    if not any(r.get("pct_of_reference") is not None for r in rows):
        keys.remove("pct_of_reference")  # no reference score known: an empty column
    titles = {**_TITLES, **cost_titles(rows), "objective": objective}
    cols = [
        Column(k, titles.get(k, k), "left" if k in ("trial", "state", "origin") else "right")
        for k in keys
    ]
    cells = [[fmt_value(row.get(k), k) for k in keys] for row in rows[:limit]]
    return fit_table(cols, cells, width=width, keep=KEY_COLUMNS, priority=_PRIORITY)
