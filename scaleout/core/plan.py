"""The plan: reference + scaling rules + target GPUs -> coupled ranges, seed trials and cost.

`make_plan` is pure (no I/O); `plan_to_dict` is the `--json` schema documented in
docs/plan.md (stable keys: add, never rename).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scaleout.core.errors import SpaceError, UsageError
from scaleout.core.job import TrialParams
from scaleout.core.knobs import KNOBS, KnobPlan, PlanContext
from scaleout.core.rules import Range, Reference, Scale, scale
from scaleout.core.space import SearchSpace, reference_conflicts

SCHEMA = "scaleout.plan/1"


@dataclass(frozen=True)
class SeedTrial:
    """A point the sweep runs first: the reference unchanged, then the rules' predictions."""

    origin: str
    values: dict[str, Any]

    def params(self) -> dict[str, Any]:
        return dict(self.values)


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
    knobs: dict[str, KnobPlan]
    seeds: tuple[SeedTrial, ...]
    trials: int
    cost: Cost
    fixed_settings: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = field(default_factory=tuple)
    # What the trainer's config says beside the reference (see "The trainer's side" below).
    trainer: dict[str, Any] | None = None
    conflicts: tuple[dict[str, Any], ...] = ()
    evaluation: Evaluation | None = None

    @property
    def objective(self) -> str:
        return self.space.objective.metric

    @property
    def direction(self) -> str:
        return self.space.objective.direction

    @property
    def ranges(self) -> dict[str, Range]:
        """The searched knobs and their ranges, in knob order."""
        return {n: kp.range for n, kp in self.knobs.items() if kp.range is not None}

    @property
    def fixed(self) -> dict[str, Any]:
        """What every trial runs with unchanged: `search.fixed` and the knobs fixed by value."""
        out = dict(self.fixed_settings)
        out.update({n: kp.fixed for n, kp in self.knobs.items() if kp.fixed is not None})
        return out

    def predictions(self, knob: str) -> dict[str, float]:
        return self.knobs[knob].predictions

    def trial_params(
        self, sampled: dict[str, Any], seed: dict[str, Any] | None = None
    ) -> TrialParams:
        """What a trial runs with: the fixed values, then the sampled ones, then (for a seed
        trial) the seed's own values. Sampled points are coupled (min_lr_ratio capped by the
        trial's lr); seeds run exactly as planned."""
        values: dict[str, Any] = {**self.fixed, **sampled, **(seed or {})}
        for name, kp in self.knobs.items():
            if name in values and not seed:
                values[name] = KNOBS[name].couple(values[name], values, kp)
            elif name in values and KNOBS[name].integer:
                values[name] = int(values[name])
        return TrialParams(values, gpus=self.gpus, samples_per_gpu=self.samples_per_gpu)


def describe(values: dict[str, Any]) -> str:
    """A trial in a few characters, for run names: `lr=1.2e-02 wu=24`."""
    shown = [k for k in KNOBS.values() if k.abbrev and k.name in values][:2]
    return " ".join(f"{k.abbrev}={k.short(values[k.name])}" for k in shown)


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
    trainer_values: dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
) -> Plan:
    """Derive the plan. Raises UsageError/SpaceError for inputs that leave nothing to search.

    `trainer_values` is the trainer's `reference()` (its config's values and what else it
    says: when it evaluates), `trainer` the trainer the user chose (name, config, repo, ...):
    with them the plan lists the space file's overrides of the config, and refuses trials
    that would never evaluate.
    """
    if gpus <= 0:
        raise UsageError(f"--gpus must be a positive whole number of GPUs (got {gpus})")
    spg = _target_spg(space, reference, samples_per_gpu)
    if spg <= 0:
        raise UsageError(f"--samples-per-gpu must be positive (got {spg})")
    path = str(space_path)
    s = space.search
    sc = scale(reference, gpus, spg, s.fixed.get("epochs"))
    ctx = PlanContext(reference, sc, path, tuple(space.seeds))
    for name, k in KNOBS.items():
        spec = getattr(s, name)
        if spec is not None:  # a knob that is off has no section
            ctx.derived[name] = k.derive(spec, ctx)
    knobs = dict(ctx.derived)
    seeds = _seed_trials(space, ctx)

    notes: list[str] = [n for kp in knobs.values() for n in kp.notes]
    lr = knobs["lr"]
    outside = lr.range is not None and not lr.range.contains(reference.lr)
    if outside and any(sd.origin == "reference" for sd in seeds):
        notes.append(
            "the reference seed runs the unchanged recipe outside the lr range on "
            "purpose: it measures the drop at this scale"
        )
    cost = _cost(reference, sc, gpus, space.target.efficiency)
    trials = _trials(space, cost, path)
    if trials < len(seeds):
        notes.append(f"the budget of {trials} trials runs only the first {trials} seed trials")
    plan = Plan(
        space_path=path,
        space=space,
        reference=reference,
        reference_sources=dict(reference_sources or {}),
        gpus=gpus,
        samples_per_gpu=spg,
        scale=sc,
        knobs=knobs,
        seeds=tuple(seeds),
        trials=trials,
        cost=cost,
        fixed_settings=dict(s.fixed),
        notes=tuple(notes),
    )
    return _with_trainer(plan, trainer_values, trainer)


def _seed_trials(space: SearchSpace, ctx: PlanContext) -> list[SeedTrial]:
    seeds: list[SeedTrial] = []
    for origin in space.seeds:
        values: dict[str, Any] = {}
        for name, kp in ctx.derived.items():
            values[name] = KNOBS[name].seed_value(
                origin, getattr(space.search, name), ctx, kp, values
            )
        seed = SeedTrial(origin, values)
        if all(seed.values != other.values for other in seeds):
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
        "rules": {name: kp.predictions for name, kp in plan.knobs.items()},
        "ranges": {name: rng.to_dict() for name, rng in plan.ranges.items()},
        "fixed": plan.fixed,
        **{key: v for kp in plan.knobs.values() for key, v in kp.json.items()},
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
        "trainer": plan.trainer if plan.trainer is not None else sp.trainer.model_dump(),
        "notes": list(plan.notes),
        "reference_conflicts": [dict(c) for c in plan.conflicts],
        "evaluation": _evaluation_json(plan),
    }


# ---- The trainer's side: what its config says beside the reference ------------------------
#
# A trainer's reference() may carry more than reference values: `evaluation` says when its
# evaluation hook runs. The plan turns that into the epochs each trial reports its objective
# at, which is all a pruner ever sees, and into a refusal when a trial would report nothing.


@dataclass(frozen=True)
class Evaluation:
    """When a trial evaluates. `interval` epochs apart (from `source`); `config_interval` is
    the trainer config's own where search.fixed.eval_interval replaces it; `epochs` the
    epochs a trial of the plan's length evaluates at (None when the interval counts
    iterations, or the trainer did not say when it evaluates)."""

    interval: int | None
    source: str | None
    config_interval: int | None = None
    config_source: str | None = None
    epochs: tuple[int, ...] | None = None
    by_epoch: bool = True


def evaluation_epochs(
    trial_epochs: int, interval: int, *, start: int | None = None, last_epoch: bool = False
) -> tuple[int, ...]:
    """The epochs (1-based) an evaluation hook runs at in a trial of `trial_epochs`.

    mmcv's EvalHook: every `interval` epochs, from `start` when given. mmengine's loop:
    every `interval` epochs from `start`, and at the last epoch as well (`last_epoch`).
    """
    if start is None:
        out = [e for e in range(1, trial_epochs + 1) if e % interval == 0]
    else:
        out = [e for e in range(max(1, start), trial_epochs + 1) if (e - start) % interval == 0]
    if last_epoch and trial_epochs >= (start or 1) and trial_epochs not in out:
        out.append(trial_epochs)
    return tuple(out)


def _with_trainer(
    plan: Plan, trainer_values: dict[str, Any] | None, trainer: dict[str, Any] | None
) -> Plan:
    values = dict(trainer_values or {})
    conflicts = tuple(reference_conflicts(plan.space, values, plan.space_path))
    notes = list(plan.notes)
    for c in conflicts:
        notes.append(
            f"reference.{c['key']}: {c['used']!r} from the space file is used; the trainer "
            f"config says {c['overridden']!r} ({c['overridden_source']})"
        )
    evaluation = _evaluation(plan, values.get("evaluation"), notes)
    return replace(
        plan, trainer=trainer, conflicts=conflicts, evaluation=evaluation, notes=tuple(notes)
    )


def _evaluation(plan: Plan, told: Any, notes: list[str]) -> Evaluation | None:
    fixed = plan.fixed_settings.get("eval_interval")
    fixed_source = f"{plan.space_path}: search.fixed.eval_interval"
    if not isinstance(told, dict) or told.get("interval") is None:
        # The trainer does not say when it evaluates: only the space file's interval is known.
        return Evaluation(fixed, fixed_source) if fixed is not None else None
    config_interval, config_source = int(told["interval"]), str(told.get("source") or "")
    interval, source = (
        (fixed, fixed_source) if fixed is not None else (config_interval, config_source)
    )
    base = Evaluation(
        interval,
        source,
        config_interval=config_interval if fixed is not None else None,
        config_source=config_source if fixed is not None else None,
        by_epoch=bool(told.get("by_epoch", True)),
    )
    if fixed is not None and fixed != config_interval:
        notes.append(
            f"trials evaluate every {fixed} epoch(s) ({fixed_source}), not every "
            f"{config_interval} ({config_source})"
        )
    if not base.by_epoch:
        notes.append(
            f"evaluation counts iterations ({config_source}): the plan cannot say at which "
            "epochs trials report; the pruner sees whatever the logs give"
        )
        return base
    trial_epochs = plan.scale.trial_epochs
    start = told.get("start")
    epochs = evaluation_epochs(
        trial_epochs,
        interval,
        start=int(start) if start is not None else None,  # a trial keeps the config's start
        last_epoch=bool(told.get("last_epoch", False)),
    )
    if not epochs:
        shortened = "epochs" in plan.fixed_settings
        key = (
            "search.fixed.eval_interval"
            if fixed is not None
            else ("search.fixed.epochs" if shortened else "search.fixed")
        )
        raise SpaceError(
            plan.space_path,
            key,
            f"a trial of {trial_epochs} epochs never evaluates: {source} is {interval}, so no "
            f"trial would report {plan.objective}",
            hint=f"set search.fixed.eval_interval to {trial_epochs} or less (1: every epoch)",
        )
    pruner = plan.space.pruner.type
    shown = ", ".join(str(e) for e in epochs)
    if pruner != "none" and len(epochs) == 1:
        notes.append(
            f"each trial evaluates once, at epoch {epochs[0]} ({source} is {interval}): the "
            f"{pruner} pruner sees one {plan.objective} per trial and cannot stop one early; "
            "search.fixed.eval_interval: 1 gives it one per epoch"
        )
    elif pruner != "none" and interval > 1:
        notes.append(
            f"trials evaluate at epochs {shown} ({source} is {interval}): the {pruner} "
            "pruner can stop a trial only there"
        )
    return replace(base, epochs=epochs)


def _evaluation_json(plan: Plan) -> dict[str, Any]:
    e = plan.evaluation
    if e is None:
        return {"interval": None, "source": None, "config_interval": None,
                "config_source": None, "epochs": None, "per_trial": None}  # fmt: skip
    return {
        "interval": e.interval,
        "source": e.source,
        "config_interval": e.config_interval,
        "config_source": e.config_source,
        "epochs": list(e.epochs) if e.epochs is not None else None,
        "per_trial": len(e.epochs) if e.epochs is not None else None,
    }
