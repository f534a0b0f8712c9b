"""Knobs: the hyperparameters a sweep derives from the reference recipe and searches.

A `Knob` is one class: its name and unit, its section of the space file (`search.<name>`, a
pydantic model), how the plan derives it (the rules' predictions, then a range or a fixed
value), the value it takes in each seed trial, and how a trial's value is coupled to the other
knobs (min_lr_ratio follows the trial's lr). The plan loops over `KNOBS` in order, so a knob
may read what the knobs before it derived. Adding a knob is one class here (registered with
`@knob`) plus its key in each trainer family (docs/architecture.md shows the files).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scaleout.core.errors import SpaceError
from scaleout.core.rules import (
    RULES,
    NoiseLr,
    Range,
    Reference,
    RuleContext,
    Scale,
    make_rule,
    param_key,
    rule_names,
    rule_params,
    span,
    warmup_range,
)

PosInt = Annotated[int, Field(gt=0)]
PosFloat = Annotated[float, Field(gt=0)]


class SpecModel(BaseModel):
    """A section of the space file: unknown keys are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


def _check_range(rng: Any) -> Any:
    if rng is None:
        return rng
    lo, hi = rng
    if hi <= lo:
        raise ValueError(
            f"range is inverted or empty: [{lo:g}, {hi:g}]; give [low, high] with low < high"
        )
    return rng


def _names(knob_name: str) -> Any:
    """Literal of the rule names registered for a knob: pydantic lists them in its message."""
    return Literal[rule_names(knob_name)]  # type: ignore[valid-type]


def _param_type(knob_name: str, param: str) -> Any:
    """A rule parameter's type in the space file (None: not given): a number unless a rule
    declares otherwise (the noise rule's `probe` path, the power rule's `from` names)."""
    for cls in RULES[knob_name].values():
        hint = typing.get_type_hints(cls).get(param)
        if hint is None:
            continue
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if isinstance(hint, types.UnionType) and args else hint
        if typing.get_origin(base) is tuple:
            return list[typing.get_args(base)[0]] | None  # type: ignore[misc]
        return base | None
    return float | None


def _parametrised_rule(knob_name: str) -> type[SpecModel]:
    """`{rule: NAME, <param>: value}` for a knob whose rules take parameters."""
    params = sorted({p for cls in RULES[knob_name].values() for p in rule_params(cls)})
    annotations: dict[str, Any] = {"rule": _names(knob_name)}
    annotations.update({p: _param_type(knob_name, p) for p in params})

    def check(self: Any) -> Any:
        make_rule(knob_name, self.rule, **{p: getattr(self, p) for p in params})
        return self

    namespace: dict[str, Any] = {
        "__annotations__": annotations,
        # `from_` is spelled `from` in the file (scaleout.core.rules.param_key).
        **{
            p: Field(default=None, alias=param_key(p)) if p != param_key(p) else None
            for p in params
        },
        "_params": model_validator(mode="after")(check),
        "to_rule": lambda self: make_rule(
            knob_name, self.rule, **{p: getattr(self, p) for p in params}
        ),
    }
    return type(f"{knob_name}_rule", (SpecModel,), namespace)


# -- what a knob derives ---------------------------------------------------------------------


@dataclass(frozen=True)
class KnobPlan:
    """A knob as planned: the rules' predictions, and a range to search or a fixed value.

    `rules` are the labels of the rules the range spans (predictions may also show the seed
    origins' rules), `cap` knob-specific coupling data (min_lr_ratio: the absolute floor a
    trial's lr x ratio stays under), `json` extra top-level keys of the plan document.
    `follows` is a rule every trial's value comes from, at the trial's own lr and batch, where
    the knob is neither searched nor fixed (weight_decay keep_timescale); `notes` sentences
    the plan shows.
    """

    name: str
    predictions: dict[str, float]
    rules: tuple[str, ...] = ()
    range: Range | None = None
    fixed: Any = None
    cap: float | None = None
    json: dict[str, Any] = field(default_factory=dict)
    follows: Any = None  # a scaleout.core.rules.Rule
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanContext:
    """What a knob sees while the plan is derived: the reference, the scale, the space file's
    seed origins, and the knobs derived before it. `scales` holds one Scale per global batch
    a trial may run at (more than one where samples_per_gpu is searched; the plan's own
    `scale` is among them)."""

    ref: Reference
    scale: Scale
    path: str
    seeds: tuple[str, ...]
    derived: dict[str, KnobPlan] = field(default_factory=dict)
    scales: tuple[Scale, ...] = ()
    gpus: int = 0

    def rule_context(self, lr: float | None = None, sc: Scale | None = None) -> RuleContext:
        return RuleContext(self.ref, sc or self.scale, lr)

    @property
    def batch_scales(self) -> tuple[Scale, ...]:
        return self.scales or (self.scale,)


class Knob:
    """One hyperparameter. Subclasses set the class attributes and override what they need."""

    name: ClassVar[str]
    unit: ClassVar[str]
    integer: ClassVar[bool] = False
    spec: ClassVar[type[SpecModel]]
    abbrev: ClassVar[str] = ""  # shown in run names ("lr", "wu"); "" leaves the knob out
    display: ClassVar[str] = ""  # how the CLI prints it: "" by `integer`, "g" four digits
    # On in every sweep (the first three), or only when the space file names its section.
    default_on: ClassVar[bool] = True

    def short(self, value: Any) -> str:
        return str(int(value)) if self.integer else f"{float(value):.1e}"

    def reference_value(self, ref: Reference) -> Any:
        return getattr(ref, self.name)

    def derive(self, spec: Any, ctx: PlanContext) -> KnobPlan:
        raise NotImplementedError

    def seed_value(self, origin: str, spec: Any, ctx: PlanContext, kp: KnobPlan, seed: dict) -> Any:
        """The value in the seed trial `origin` (reference, sqrt, linear); `seed` holds the
        values of the knobs before this one in the same seed."""
        raise NotImplementedError

    def couple(self, value: Any, values: dict[str, Any], kp: KnobPlan) -> Any:
        """The value a sampled trial runs with, given its other values (default: as sampled)."""
        return value

    def follow(self, kp: KnobPlan, ctx: RuleContext) -> Any:
        """The value of a knob that follows a rule (`kp.follows`), at a trial's own lr and
        scale (`ctx`)."""
        return kp.follows.predict(ctx)

    def batch_sizes(self, spec: Any) -> tuple[int, ...]:
        """The samples per GPU a trial may run at, where this knob searches them."""
        return ()


KNOBS: dict[str, Knob] = {}


def knob(cls: type[Knob]) -> type[Knob]:
    KNOBS[cls.name] = cls()
    return cls


def _clamp(value: float, rng: Range | None) -> float:
    if rng is None:
        return value
    return min(max(value, rng.low), rng.high)


# -- lr ----------------------------------------------------------------------------------------

LrRuleSpec = _parametrised_rule("lr")


class LrSearch(SpecModel):
    rules: list[LrRuleSpec] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [LrRuleSpec(rule="sqrt"), LrRuleSpec(rule="linear")],
        min_length=1,
    )
    widen: Annotated[float, Field(ge=1)] = 1.25
    range: tuple[PosFloat, PosFloat] | None = None
    fixed: PosFloat | None = None
    log: bool = True

    _range = field_validator("range")(classmethod(lambda cls, v: _check_range(v)))

    @field_validator("rules", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        # A rule is a name ("sqrt") or a mapping with its parameters ({rule: power, alpha: 0.54}).
        if isinstance(v, list):
            return [{"rule": r} if isinstance(r, str) else r for r in v]
        return v

    def lr_rules(self) -> list[Any]:
        return [r.to_rule() for r in self.rules]


@knob
class LearningRate(Knob):
    """The peak learning rate: spanned between the rules' predictions on a log axis."""

    name = "lr"
    unit = ""
    spec = LrSearch
    abbrev = "lr"

    def derive(self, spec: LrSearch, ctx: PlanContext) -> KnobPlan:
        rules = []
        for i, rule in enumerate(spec.lr_rules()):
            try:
                # A rule whose parameters a file gives (the noise rule's probe) reads it here.
                resolve = getattr(rule, "resolve", None)
                rules.append(resolve(ctx.path) if resolve is not None else rule)
            except ValueError as exc:
                raise SpaceError(ctx.path, f"search.lr.rules.{i}", str(exc)) from None
        rc = ctx.rule_context()
        predictions = {r.label: r.predict(rc) for r in rules}
        labels = tuple(r.label for r in rules)
        # The seed origins that name an lr rule are shown beside the searched rules.
        for origin in ("reference", "sqrt", "linear"):
            if origin in ctx.seeds and origin not in predictions:
                predictions[origin] = make_rule("lr", origin).predict(rc)
        extra = _noise_scale(rules, ctx)
        if spec.fixed is not None:
            return KnobPlan(self.name, predictions, labels, fixed=spec.fixed, **extra)
        if spec.range is not None:
            rng = Range(*spec.range, log=spec.log)
            return KnobPlan(self.name, predictions, labels, range=rng, **extra)
        # Across every batch a trial may run at (samples_per_gpu searched), k follows it.
        points = [r.predict(ctx.rule_context(sc=sc)) for r in rules for sc in ctx.batch_scales]
        rng = span(points, spec.widen, log=spec.log)
        return KnobPlan(self.name, predictions, labels, range=rng, **extra)

    def seed_value(self, origin: str, spec: LrSearch, ctx: PlanContext, kp: KnobPlan, seed: dict):
        if kp.fixed is not None:
            return kp.fixed
        return make_rule("lr", origin).predict(ctx.rule_context())


def _noise_scale(rules: list[Any], ctx: PlanContext) -> dict[str, Any]:
    """The plan's `noise_scale` and its notes, from the first noise rule (docs/evidence.md):
    the critical batch, whether the target is beyond it, the extra data it needs."""
    noise = next((r for r in rules if isinstance(r, NoiseLr)), None)
    if noise is None:
        return {}
    report = noise.report(ctx.scale, ctx.ref.epochs)
    b, target = report["b_noise"], report["target_global_batch"]
    where = f"measured, {noise.probe}" if noise.probe else "typed in the space file"
    notes = [f"critical batch ~B_noise = {b:.3g} samples ({where}); target global batch {target}"]
    if report["beyond_critical"]:
        notes[0] += (
            f" is {report['target_over_critical']:.1f}x beyond it: a step there buys little "
            "more than one at B_noise (the run is short of steps, not only of lr)"
        )
    else:
        notes[0] += " is within it"
    data = report["data_over_minimum"]
    notes.append(
        f"data for the same loss (E/E_min = 1 + B/B_noise): {data['target']:.2f}x the minimum "
        f"at the target, {data['reference']:.2f}x at the reference: "
        f"{report['data_vs_reference']:.2f}x the reference's samples, "
        f"~{report['epochs_for_same_loss']:.0f} epochs instead of {ctx.ref.epochs} "
        "(estimated, McCandlish et al. 2018)"
    )
    return {"json": {"noise_scale": report}, "notes": tuple(notes)}


# -- warmup_iters ------------------------------------------------------------------------------

WarmupRuleName = _names("warmup_iters")


class WarmupSearch(SpecModel):
    rules: list[WarmupRuleName] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["keep_iters", "keep_epochs"], min_length=1
    )
    widen: Annotated[float, Field(ge=1)] = 1.5
    cap_fraction: Annotated[float, Field(gt=0, le=1)] = 0.2
    seed_rule: WarmupRuleName = "keep_iters"  # type: ignore[valid-type]
    range: tuple[PosInt, PosInt] | None = None
    fixed: PosInt | None = None

    _range = field_validator("range")(classmethod(lambda cls, v: _check_range(v)))


def predict_warmup(rule: str, ctx: PlanContext, sc: Scale | None = None) -> int:
    return max(1, round(make_rule("warmup_iters", rule).predict(ctx.rule_context(sc=sc))))


@knob
class WarmupIters(Knob):
    """Linear warmup in iterations, capped at a fraction of the trial's iterations."""

    name = "warmup_iters"
    unit = "iterations"
    integer = True
    spec = WarmupSearch
    abbrev = "wu"

    def derive(self, spec: WarmupSearch, ctx: PlanContext) -> KnobPlan:
        # The shortest trial's iterations (a larger searched batch has fewer per epoch).
        total = min(sc.target_total_iters for sc in ctx.batch_scales)
        predictions = {w: predict_warmup(w, ctx) for w in spec.rules}
        if spec.fixed is not None:
            return KnobPlan(self.name, predictions, fixed=spec.fixed)
        if spec.range is not None:
            lo, hi = spec.range
            if lo >= total:
                raise SpaceError(
                    ctx.path,
                    "search.warmup_iters.range",
                    f"starts at {lo} but a trial has only {total} iterations in all",
                )
            return KnobPlan(
                self.name, predictions, range=Range(lo, min(hi, total), log=True, integer=True)
            )
        cap = math.floor(spec.cap_fraction * total)
        points = [predict_warmup(w, ctx, sc) for w in spec.rules for sc in ctx.batch_scales]
        try:
            rng = warmup_range(points, spec.widen, cap)
        except ValueError as exc:
            raise SpaceError(
                ctx.path,
                "search.warmup_iters.cap_fraction",
                f"{spec.cap_fraction:g} x {total} total iterations leaves no room: {exc}",
                hint="raise cap_fraction (it must leave at least the smallest rule's warmup) "
                "or fix warmup_iters",
            ) from None
        return KnobPlan(self.name, predictions, range=rng)

    def seed_value(self, origin: str, spec: WarmupSearch, ctx: PlanContext, kp: KnobPlan, seed):
        if kp.fixed is not None:
            return kp.fixed
        if origin == "reference":
            return ctx.ref.warmup_iters
        return round(_clamp(predict_warmup(spec.seed_rule, ctx), kp.range))

    def couple(self, value: Any, values: dict[str, Any], kp: KnobPlan) -> Any:
        return int(value)


# -- min_lr_ratio ------------------------------------------------------------------------------

MinLrRuleName = _names("min_lr_ratio")


class MinLrSearch(SpecModel):
    rules: list[MinLrRuleName] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["keep_ratio", "keep_floor"], min_length=1
    )
    widen: Annotated[float, Field(ge=1)] = 2.0
    floor_at_most_reference: bool = True
    decay_to_zero: bool = False
    zero_ratio: Annotated[float, Field(gt=0, lt=1)] = 1e-5
    seed_rule: MinLrRuleName = "keep_floor"  # type: ignore[valid-type]
    range: tuple[PosFloat, PosFloat] | None = None
    fixed: Annotated[float, Field(ge=0, lt=1)] | None = None

    _range = field_validator("range")(classmethod(lambda cls, v: _check_range(v)))


@knob
class MinLrRatio(Knob):
    """The cosine's floor as a ratio of the trial's lr. With `floor_at_most_reference` a
    trial's ratio is capped so that lr x ratio stays at or below the reference floor: the
    coupling is a per-trial cap, so the sampler's distributions stay independent boxes."""

    name = "min_lr_ratio"
    unit = "ratio"
    spec = MinLrSearch

    def derive(self, spec: MinLrSearch, ctx: PlanContext) -> KnobPlan:
        ref = ctx.ref
        lr = ctx.derived["lr"]
        searched = {label: v for label, v in lr.predictions.items() if label in lr.rules}
        lr_for_floor = {"fixed": lr.fixed} if lr.fixed is not None else searched
        predictions: dict[str, float] = {}
        for rule in spec.rules:
            if rule == "keep_ratio":
                predictions[rule] = ref.min_lr_ratio
            else:
                for label, value in lr_for_floor.items():
                    predictions[f"{rule}@{label}"] = make_rule(self.name, rule).predict(
                        ctx.rule_context(value)
                    )
        cap = ref.min_lr if spec.floor_at_most_reference else None
        out = {"min_lr_floor_cap": cap}
        if spec.fixed is not None:
            return KnobPlan(self.name, predictions, fixed=spec.fixed, cap=cap, json=out)
        if spec.range is not None:
            rng = Range(*spec.range, log=True)
            return KnobPlan(self.name, predictions, range=rng, cap=cap, json=out)
        if ref.min_lr_ratio <= 0:
            raise SpaceError(
                ctx.path,
                "search.min_lr_ratio",
                "the reference decays to zero (min_lr_ratio 0), so there is no ratio "
                "to scale: set fixed: 0 or give a range",
            )
        rng = span(predictions.values(), spec.widen)
        hi = rng.high
        if cap is not None:
            smallest_lr = lr.range.low if lr.range is not None else lr.fixed
            hi = min(hi, cap / smallest_lr)
        lo = min(rng.low, spec.zero_ratio) if spec.decay_to_zero else rng.low
        if hi <= lo:
            raise SpaceError(
                ctx.path,
                "search.min_lr_ratio",
                f"keeping the floor at or below the reference's leaves no range "
                f"([{lo:.3g}, {hi:.3g}])",
                hint="set floor_at_most_reference: false or widen the range",
            )
        return KnobPlan(self.name, predictions, range=Range(lo, hi, log=True), cap=cap, json=out)

    def seed_value(self, origin: str, spec: MinLrSearch, ctx: PlanContext, kp: KnobPlan, seed):
        if kp.fixed is not None:
            return kp.fixed
        if origin == "reference":
            return ctx.ref.min_lr_ratio
        lr = seed["lr"]
        ratio = make_rule(self.name, spec.seed_rule).predict(ctx.rule_context(lr))
        if kp.cap is not None:
            ratio = min(ratio, kp.cap / lr)
        return _clamp(ratio, kp.range)

    def couple(self, value: Any, values: dict[str, Any], kp: KnobPlan) -> Any:
        ratio = float(value)
        if kp.cap is None or ratio == 0:
            return ratio
        return min(ratio, kp.cap / float(values["lr"]))


# The co-scaled knobs (weight_decay, beta1, beta2, epochs, samples_per_gpu) register after
# these three, in scaleout.core.knobs_coscaled.
from scaleout.core import knobs_coscaled as _coscaled  # noqa: E402, F401
