"""The plan: reference + scaling rules + target GPUs -> coupled ranges, seed trials and cost.

`make_plan` is pure (no I/O); `plan_to_dict` is the `--json` schema documented in
docs/plan.md (stable keys: add, never rename).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaleout.core.errors import SpaceError, UsageError
from scaleout.core.rules import (
    Range,
    Reference,
    Scale,
    predict_min_lr_ratio,
    predict_warmup,
    scale,
    span,
    warmup_range,
)
from scaleout.core.space import SearchSpace

SCHEMA = "scaleout.plan/1"


@dataclass(frozen=True)
class SeedTrial:
    """A point the sweep runs first: the reference unchanged, then the rules' predictions."""

    origin: str
    lr: float
    warmup_iters: int
    min_lr_ratio: float

    def params(self) -> dict[str, float | int]:
        return {"lr": self.lr, "warmup_iters": self.warmup_iters, "min_lr_ratio": self.min_lr_ratio}


@dataclass(frozen=True)
class Cost:
    iters_per_trial: int
    gpu_hours_per_trial: float | None = None
    wall_time_h_per_trial: float | None = None
    basis: str | None = None


@dataclass(frozen=True)
class Plan:
    space_path: str
    space: SearchSpace
    reference: Reference
    reference_sources: dict[str, str]
    gpus: int
    samples_per_gpu: int
    scale: Scale
    lr_predictions: dict[str, float]
    warmup_predictions: dict[str, int]
    min_lr_predictions: dict[str, float]
    ranges: dict[str, Range]
    fixed: dict[str, Any]
    seeds: tuple[SeedTrial, ...]
    trials: int
    cost: Cost
    floor_cap: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def objective(self) -> str:
        return self.space.objective.metric

    @property
    def direction(self) -> str:
        return self.space.objective.direction

    def effective_min_lr_ratio(self, lr: float, ratio: float) -> float:
        """The ratio a trial runs with: capped so lr x ratio stays at or below the reference
        floor when the space asks for it (the cap couples min_lr to the sampled lr)."""
        if self.floor_cap is None or ratio == 0:
            return ratio
        return min(ratio, self.floor_cap / lr)


def _target_spg(space: SearchSpace, ref: Reference, samples_per_gpu: int | None) -> int:
    return samples_per_gpu or space.target.samples_per_gpu or ref.samples_per_gpu


def make_plan(
    space: SearchSpace,
    reference: Reference,
    gpus: int,
    *,
    samples_per_gpu: int | None = None,
    reference_sources: dict[str, str] | None = None,
    space_path: str | Path = "<space>",
) -> Plan:
    """Derive the plan. Raises UsageError/SpaceError for inputs that leave nothing to search."""
    if gpus <= 0:
        raise UsageError(f"--gpus must be a positive whole number of GPUs (got {gpus})")
    spg = _target_spg(space, reference, samples_per_gpu)
    if spg <= 0:
        raise UsageError(f"--samples-per-gpu must be positive (got {spg})")
    path = str(space_path)
    s = space.search
    sc = scale(reference, gpus, spg, s.fixed.get("epochs"))
    notes: list[str] = []

    # lr: the rules' predictions, spanned and widened on a log axis (or as the user fixed it).
    lr_predictions = {r.label: r.predict(reference.lr, sc) for r in s.lr.lr_rules()}
    for name in ("reference", "sqrt", "linear"):
        if name in space.seeds and name not in lr_predictions:
            lr_predictions[name] = _seed_lr(name, reference, sc)
    ranges: dict[str, Range] = {}
    fixed: dict[str, Any] = dict(s.fixed)
    rule_lrs = [r.predict(reference.lr, sc) for r in s.lr.lr_rules()]
    if s.lr.fixed is not None:
        fixed["lr"] = s.lr.fixed
    elif s.lr.range is not None:
        ranges["lr"] = Range(*s.lr.range, log=s.lr.log)
    else:
        ranges["lr"] = span(rule_lrs, s.lr.widen, log=s.lr.log)

    # warmup: iterations by rule, capped at a fraction of the target's total iterations.
    total = sc.target_total_iters
    cap = math.floor(s.warmup_iters.cap_fraction * total)
    warmup_predictions = {w: predict_warmup(w, reference, sc) for w in s.warmup_iters.rules}
    if s.warmup_iters.fixed is not None:
        fixed["warmup_iters"] = s.warmup_iters.fixed
    elif s.warmup_iters.range is not None:
        lo, hi = s.warmup_iters.range
        if lo >= total:
            raise SpaceError(
                path,
                "search.warmup_iters.range",
                f"starts at {lo} but a trial has only {total} iterations in all",
            )
        ranges["warmup_iters"] = Range(lo, min(hi, total), log=True, integer=True)
    else:
        try:
            ranges["warmup_iters"] = warmup_range(
                warmup_predictions.values(), s.warmup_iters.widen, cap
            )
        except ValueError as exc:
            raise SpaceError(
                path,
                "search.warmup_iters.cap_fraction",
                f"{s.warmup_iters.cap_fraction:g} x {total} total iterations leaves no room: {exc}",
                hint="raise cap_fraction (it must leave at least the smallest rule's warmup) "
                "or fix warmup_iters",
            ) from None

    # min_lr_ratio: keep the ratio, or keep the absolute floor at the reference's.
    lr_for_floor = {
        k: v for k, v in lr_predictions.items() if k in {r.label for r in s.lr.lr_rules()}
    }
    if "lr" in fixed:
        lr_for_floor = {"fixed": fixed["lr"]}
    min_lr_predictions: dict[str, float] = {}
    for rule in s.min_lr_ratio.rules:
        if rule == "keep_ratio":
            min_lr_predictions[rule] = reference.min_lr_ratio
        else:
            for label, lr in lr_for_floor.items():
                min_lr_predictions[f"{rule}@{label}"] = predict_min_lr_ratio(rule, reference, lr)
    floor_cap = reference.min_lr if s.min_lr_ratio.floor_at_most_reference else None
    if s.min_lr_ratio.fixed is not None:
        fixed["min_lr_ratio"] = s.min_lr_ratio.fixed
    elif s.min_lr_ratio.range is not None:
        ranges["min_lr_ratio"] = Range(*s.min_lr_ratio.range, log=True)
    else:
        if reference.min_lr_ratio <= 0:
            raise SpaceError(
                path,
                "search.min_lr_ratio",
                "the reference decays to zero (min_lr_ratio 0), so there is no ratio "
                "to scale: set fixed: 0 or give a range",
            )
        rng = span(min_lr_predictions.values(), s.min_lr_ratio.widen)
        hi = rng.high
        if floor_cap is not None:
            smallest_lr = ranges["lr"].low if "lr" in ranges else fixed["lr"]
            hi = min(hi, floor_cap / smallest_lr)
        lo = min(rng.low, s.min_lr_ratio.zero_ratio) if s.min_lr_ratio.decay_to_zero else rng.low
        if hi <= lo:
            raise SpaceError(
                path,
                "search.min_lr_ratio",
                f"keeping the floor at or below the reference's leaves no range "
                f"([{lo:.3g}, {hi:.3g}])",
                hint="set floor_at_most_reference: false or widen the range",
            )
        ranges["min_lr_ratio"] = Range(lo, hi, log=True)

    seeds = _seed_trials(space, reference, sc, ranges, fixed, floor_cap)
    outside = "lr" in ranges and not ranges["lr"].contains(reference.lr)
    if outside and any(sd.origin == "reference" for sd in seeds):
        notes.append(
            "the reference seed runs the unchanged recipe outside the lr range on "
            "purpose: it measures the drop at this scale"
        )

    cost = _cost(reference, sc, gpus, space.target.efficiency)
    trials = _trials(space, cost, path)
    if trials < len(seeds):
        notes.append(f"the budget of {trials} trials runs only the first {trials} seed trials")
    return Plan(
        space_path=path,
        space=space,
        reference=reference,
        reference_sources=dict(reference_sources or {}),
        gpus=gpus,
        samples_per_gpu=spg,
        scale=sc,
        lr_predictions=lr_predictions,
        warmup_predictions=warmup_predictions,
        min_lr_predictions=min_lr_predictions,
        ranges=ranges,
        fixed=fixed,
        seeds=tuple(seeds),
        trials=trials,
        cost=cost,
        floor_cap=floor_cap,
        notes=tuple(notes),
    )


def _seed_lr(name: str, ref: Reference, sc: Scale) -> float:
    from scaleout.core.rules import LrRule

    return LrRule(name).predict(ref.lr, sc)


def _clamp(value: float, rng: Range | None) -> float:
    if rng is None:
        return value
    return min(max(value, rng.low), rng.high)


def _seed_trials(
    space: SearchSpace,
    ref: Reference,
    sc: Scale,
    ranges: dict[str, Range],
    fixed: dict[str, Any],
    floor_cap: float | None,
) -> list[SeedTrial]:
    s = space.search
    seeds: list[SeedTrial] = []
    for origin in space.seeds:
        if origin == "reference":
            seed = SeedTrial(
                "reference",
                fixed.get("lr", ref.lr),
                fixed.get("warmup_iters", ref.warmup_iters),
                fixed.get("min_lr_ratio", ref.min_lr_ratio),
            )
        else:
            lr = fixed.get("lr", _seed_lr(origin, ref, sc))
            if "warmup_iters" in fixed:
                wu = fixed["warmup_iters"]
            else:
                wu = round(
                    _clamp(
                        predict_warmup(s.warmup_iters.seed_rule, ref, sc),
                        ranges.get("warmup_iters"),
                    )
                )
            if "min_lr_ratio" in fixed:
                ratio = fixed["min_lr_ratio"]
            else:
                ratio = predict_min_lr_ratio(s.min_lr_ratio.seed_rule, ref, lr)
                if floor_cap is not None:
                    ratio = min(ratio, floor_cap / lr)
                ratio = _clamp(ratio, ranges.get("min_lr_ratio"))
            seed = SeedTrial(origin, lr, int(wu), ratio)
        if all(seed.params() != other.params() for other in seeds):
            seeds.append(seed)
    return seeds


def _cost(ref: Reference, sc: Scale, gpus: int, efficiency: float) -> Cost:
    per_sample = ref.gpu_seconds_per_sample()
    if per_sample is None:
        return Cost(iters_per_trial=sc.target_total_iters)
    # The same samples are processed at any scale; `efficiency` (<= 1) accounts for the
    # communication overhead that ideal scaling ignores.
    gpu_hours = per_sample * ref.train_samples * sc.trial_epochs / 3600.0 / efficiency
    basis = "reference.sample_time_s" if ref.sample_time_s is not None else "reference.wall_time_h"
    return Cost(
        iters_per_trial=sc.target_total_iters,
        gpu_hours_per_trial=gpu_hours,
        wall_time_h_per_trial=gpu_hours / gpus,
        basis=f"{basis}, scaling efficiency {efficiency:g}",
    )


def _trials(space: SearchSpace, cost: Cost, path: str) -> int:
    b = space.budget
    counts = []
    if b.trials is not None:
        counts.append(b.trials)
    if b.gpu_hours is not None:
        if cost.gpu_hours_per_trial is None:
            raise SpaceError(
                path,
                "budget.gpu_hours",
                "a GPU-hour budget needs a cost basis: give reference.wall_time_h or "
                "reference.sample_time_s",
            )
        n = math.floor(b.gpu_hours / cost.gpu_hours_per_trial)
        if n < 1:
            raise SpaceError(
                path,
                "budget.gpu_hours",
                f"{b.gpu_hours:g} GPU-hours buys no trial at "
                f"{cost.gpu_hours_per_trial:.1f} GPU-hours each",
            )
        counts.append(n)
    return min(counts)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The `scaleout plan --json` document (schema scaleout.plan/1, see docs/plan.md)."""
    ref = plan.reference
    sc = plan.scale
    sp = plan.space
    return {
        "schema": SCHEMA,
        "space_file": plan.space_path,
        "reference": {name: getattr(ref, name) for name in Reference.field_names()},
        "reference_sources": plan.reference_sources,
        "target": {
            "gpus": plan.gpus,
            "samples_per_gpu": plan.samples_per_gpu,
            "global_batch": sc.target_global_batch,
        },
        "scale": {
            "k": sc.k,
            "reference_global_batch": sc.reference_global_batch,
            "target_global_batch": sc.target_global_batch,
            "epochs": sc.epochs,
            "target_epochs": sc.trial_epochs,
            "iters_per_epoch": {
                "reference": sc.reference_iters_per_epoch,
                "target": sc.target_iters_per_epoch,
            },
            "total_iters": {"reference": sc.reference_total_iters, "target": sc.target_total_iters},
        },
        "rules": {
            "lr": plan.lr_predictions,
            "warmup_iters": plan.warmup_predictions,
            "min_lr_ratio": plan.min_lr_predictions,
        },
        "ranges": {name: rng.to_dict() for name, rng in plan.ranges.items()},
        "fixed": plan.fixed,
        "min_lr_floor_cap": plan.floor_cap,
        "seed_trials": [{"origin": s.origin, **s.params()} for s in plan.seeds],
        "objective": {"metric": plan.objective, "direction": plan.direction},
        "budget": {
            "trials": sp.budget.trials,
            "gpu_hours": sp.budget.gpu_hours,
            "trials_planned": plan.trials,
        },
        "cost": {
            "iters_per_trial": plan.cost.iters_per_trial,
            "gpu_hours_per_trial": plan.cost.gpu_hours_per_trial,
            "wall_time_h_per_trial": plan.cost.wall_time_h_per_trial,
            "gpu_hours_total": (
                plan.cost.gpu_hours_per_trial * plan.trials
                if plan.cost.gpu_hours_per_trial is not None
                else None
            ),
            "basis": plan.cost.basis,
        },
        "sampler": sp.sampler.model_dump(),
        "pruner": sp.pruner.model_dump(),
        "retries": sp.retries.model_dump(),
        "trainer": sp.trainer.model_dump(),
        "notes": list(plan.notes),
    }
