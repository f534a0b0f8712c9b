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
from scaleout.core.evaluation import Evaluation, evaluation_epochs, evaluation_json, with_trainer
from scaleout.core.job import TrialParams
from scaleout.core.knobs import KNOBS, KnobPlan, PlanContext
from scaleout.core.rules import Range, Reference, RuleContext, Scale, scale
from scaleout.core.space import SearchSpace

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

    @property
    def follows(self) -> dict[str, Any]:
        """The knobs whose every trial's value follows a rule (`KnobPlan.follows`)."""
        return {n: kp.follows for n, kp in self.knobs.items() if kp.follows is not None}

    @property
    def counts_cost(self) -> bool:
        """Whether the budget counts cost (trial-equivalents: one trial of the plan's length at
        the target = 1) rather than trials: where the epochs vary between trials."""
        return "epochs" in self.ranges

    @property
    def max_trial_epochs(self) -> int:
        """The longest trial's epochs (the epochs knob's top, else every trial's)."""
        rng = self.ranges.get("epochs")
        return int(rng.high) if rng is not None else self.scale.trial_epochs

    def trial_params(
        self, sampled: dict[str, Any], seed: dict[str, Any] | None = None
    ) -> TrialParams:
        """What a trial runs with: the fixed values, then the sampled ones, then (for a seed
        trial) the seed's own values. Sampled points are coupled (min_lr_ratio capped by the
        trial's lr, weight_decay's keep_timescale following it); seeds run exactly as planned.
        A knob that follows a rule takes the rule's value at the trial's own lr and batch."""
        values: dict[str, Any] = {**self.fixed, **sampled, **(seed or {})}
        spg = int(values.pop("samples_per_gpu", self.samples_per_gpu))
        for name, kp in self.knobs.items():
            if name == "samples_per_gpu":
                continue  # the batch, not a value: TrialParams.samples_per_gpu
            if name in values and not seed:
                values[name] = KNOBS[name].couple(values[name], values, kp)
            elif name in values and KNOBS[name].integer:
                values[name] = int(values[name])
            elif name not in values and kp.follows is not None:
                epochs = values.get("epochs") or self.scale.target_epochs
                sc = scale(self.reference, self.gpus, spg, epochs)
                ctx = RuleContext(self.reference, sc, values.get("lr"))
                values[name] = KNOBS[name].follow(kp, ctx)
        return TrialParams(values, gpus=self.gpus, samples_per_gpu=spg)


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
    notes: list[str] = []
    sources = dict(reference_sources or {})
    reference = _optimizer_defaults(space, reference, sources, notes)
    sc = scale(reference, gpus, spg, s.fixed.get("epochs"))
    sizes = {
        spg,
        *(b for n, k in KNOBS.items() if getattr(s, n) for b in k.batch_sizes(getattr(s, n))),
    }
    scales = tuple(
        sc if b == spg else scale(reference, gpus, b, s.fixed.get("epochs")) for b in sorted(sizes)
    )
    ctx = PlanContext(reference, sc, path, tuple(space.seeds), scales=scales, gpus=gpus)
    for name, k in KNOBS.items():
        spec = getattr(s, name)
        if spec is not None:  # a knob that is off has no section
            ctx.derived[name] = k.derive(spec, ctx)
    knobs = dict(ctx.derived)
    seeds = _seed_trials(space, ctx)
    notes += [note for kp in knobs.values() for note in kp.notes]
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
    epochs = knobs.get("epochs")
    if epochs is not None and epochs.range is not None:
        notes.append(
            f"trials run {int(epochs.range.low)} to {int(epochs.range.high)} epochs, so the "
            f"budget counts cost: {trials} trial-equivalents, one trial of {sc.trial_epochs} "
            f"epochs = 1 (a trial of {int(epochs.range.high)} costs "
            f"{epochs.range.high / sc.trial_epochs:.3g})"
        )
    plan = Plan(
        space_path=path,
        space=space,
        reference=reference,
        reference_sources=sources,
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
    return with_trainer(plan, trainer_values, trainer)


def _optimizer_defaults(
    space: SearchSpace, ref: Reference, sources: dict[str, str], notes: list[str]
) -> Reference:
    """The optimizer's default as the reference of a knob that is on, where neither the space
    file nor the trainer's config gives one (BEVFormer sets no betas: Adam's 0.9, 0.999)."""
    for name, k in KNOBS.items():
        default = getattr(k, "reference_default", None)
        if default is None or getattr(space.search, name) is None:
            continue
        if getattr(ref, name, None) is not None:
            continue
        ref = replace(ref, **{name: default})
        sources[name] = f"Adam's default {name} (no {name} in the space file or the trainer config)"
        notes.append(
            f"reference.{name} {default:g} is Adam/AdamW's default: neither the space file nor "
            "the trainer's config sets it"
        )
    return ref


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
            "counts": "trial_equivalents" if plan.counts_cost else "trials",
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
            "max_trial_equivalents": plan.max_trial_epochs / max(1, sc.trial_epochs),
        },
        "sampler": sp.sampler.model_dump(),
        "pruner": sp.pruner.model_dump(),
        "retries": sp.retries.model_dump(),
        "trainer": plan.trainer if plan.trainer is not None else sp.trainer.model_dump(),
        "notes": list(plan.notes),
        "reference_conflicts": [dict(c) for c in plan.conflicts],
        "evaluation": evaluation_json(plan),
        "follows": {name: rule.label for name, rule in plan.follows.items()},
    }


__all__ = [
    "Cost",
    "Evaluation",
    "Plan",
    "SeedTrial",
    "describe",
    "evaluation_epochs",
    "make_plan",
    "plan_to_dict",
]
