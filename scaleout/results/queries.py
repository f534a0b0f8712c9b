"""Questions a user asks of a sweep's frame (`frame.load_sweep`): which trials finished, the best
one and what it changed against the rules, the leaderboard's columns, totals and cost (the
headline's figures are in `df.attrs["headline"]`).

Pure functions of a frame and its attrs: nothing here reads a store.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from scaleout.core.errors import StateError
from scaleout.results.format import fmt_counts
from scaleout.sweep.workspace import CORE_KNOBS

FINISHED_STATES = ("COMPLETE", "PRUNED")


class NoFinishedTrials(StateError):
    """The sweep has no trial with a value yet: there is nothing to plot or rank."""


def knobs(df: pd.DataFrame) -> tuple[str, ...]:
    """The frame's knob columns (the plan's searched and fixed settings)."""
    return tuple(df.attrs.get("knobs") or CORE_KNOBS)


def finished(df: pd.DataFrame) -> pd.DataFrame:
    """Trials with a value: completed ones and pruned ones (at their last reported epoch)."""
    return df[df["state"].isin(FINISHED_STATES) & df["objective"].notna()]


def require_finished(df: pd.DataFrame, what: str = "plot") -> pd.DataFrame:
    done = finished(df)
    if done.empty:
        name = df.attrs.get("sweep") or ", ".join(sorted(set(df.get("sweep", []))))
        have = fmt_counts(totals(df)) or "no trials at all"
        raise NoFinishedTrials(
            f"sweep {name or '?'} has no finished trials yet ({have}): nothing to {what}",
            hint="wait for a trial to complete (`scaleout status NAME`)",
        )
    return done


def best_trial(df: pd.DataFrame) -> pd.Series | None:
    done = df[(df["state"] == "COMPLETE") & df["objective"].notna()]
    if done.empty:
        return None
    asc = df.attrs.get("direction", "maximize") != "maximize"
    return done.sort_values("objective", ascending=asc).iloc[0]


def best_vs_rules(df: pd.DataFrame) -> pd.DataFrame:
    """What the best trial changed against the seed trials (reference recipe, sqrt and linear
    rules): one row per searched parameter plus the objective; ratios best / seed."""
    best = best_trial(df)
    if best is None:
        raise NoFinishedTrials(
            f"sweep {df.attrs.get('sweep', '?')} has no completed trial yet: no best trial "
            "to compare with the rules"
        )
    plan = df.attrs["plan"]
    objective = df.attrs["objective"]
    seeds = {s["origin"]: s for s in plan["seed_trials"]}
    # A fixed setting is the same in every trial: nothing to compare.
    params = [k for k in knobs(df) if k in CORE_KNOBS or k in (plan.get("ranges") or {})]
    measured = {
        r["origin"]: r["objective"]
        for _, r in df[df["state"] == "COMPLETE"].iterrows()
        if r["origin"] in seeds
    }
    out: dict[str, dict[str, Any]] = {}
    label = f"best (t{int(best['trial']):03d}, {best['origin']})"
    for p in (*params, objective):
        row: dict[str, Any] = {label: best[p] if p in params else best["objective"]}
        for origin, seed in seeds.items():
            value = seed.get(p) if p in params else measured.get(origin)
            row[origin] = value
            ok = isinstance(value, (int, float)) and value and math.isfinite(value)
            row[f"best / {origin}"] = row[label] / value if ok else None
        out[p] = row
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "parameter"
    return frame


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """The columns a user ranks by, best first (the frame's own order)."""
    cols = [
        "rank",
        "trial",
        "state",
        "origin",
        df.attrs.get("objective", "NDS"),
        "pct_of_reference",
        "mAP",
        *knobs(df),
        "gpus",
        "global_batch",
        "attempts",
        "wall_time_s",
        "trial_equivalents",
        "target_gpu_hours",
        "compute_hours_here",
    ]
    cols = [c for c in dict.fromkeys(cols) if c in df]
    if "pct_of_reference" in cols and df["pct_of_reference"].isna().all():
        cols.remove("pct_of_reference")  # the reference's own score is not known
    return df[cols].reset_index(drop=True)


def totals(df: pd.DataFrame) -> dict[str, int]:
    """Trials by state, lower-case as `scaleout status` counts them, most common first."""
    counts = df["state"].value_counts().to_dict() if len(df) else {}
    return {str(s).lower(): int(n) for s, n in counts.items()}


def _basis(values: pd.Series) -> str | None:
    kinds = set(values.dropna())
    return None if not kinds else (kinds.pop() if len(kinds) == 1 else "mixed")


def cost(df: pd.DataFrame) -> dict[str, Any]:
    """What the sweep cost, in three figures never mixed (docs/analysis.md, "Cost"):
    trial-equivalents, GPU-hours at the target scale (how they were found: `estimated` or
    `measured`) with their split by state, and the compute spent here (with its unit); the
    wall times, and the plan's estimate per trial and for the budget."""
    plan = df.attrs["plan"]
    known = df["target_gpu_hours"].notna()
    spent = df[known].groupby("state")["target_gpu_hours"].sum().to_dict()
    start, end = df["started"].min(), df["finished"].max()
    wall = (end - start).total_seconds() if pd.notna(start) and pd.notna(end) else None
    here = df["compute_hours_here"]
    return {
        "trial_equivalents": float(df["trial_equivalents"].sum()),
        "target_gpu_hours": float(df["target_gpu_hours"].sum()) if known.any() else None,
        "target_gpu_hours_basis": _basis(df["target_gpu_hours_basis"]),
        "target_gpu_hours_by_state": {k: float(v) for k, v in spent.items()},
        "compute_hours_here": float(here.sum()) if here.notna().any() else None,
        "compute_unit_here": _basis(df["compute_unit_here"]),
        "trial_wall_time_s": float(df["wall_time_s"].sum()),
        "sweep_wall_time_s": wall,
        "planned_gpu_hours_per_trial": plan["cost"].get("gpu_hours_per_trial"),
        "planned_gpu_hours_total": plan["cost"].get("gpu_hours_total"),
        "trials": len(df),
        "budget": df.attrs["meta"].get("trials"),
    }
