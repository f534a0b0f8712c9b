"""The co-scaled knobs: weight_decay, beta1, beta2, epochs and samples_per_gpu.

Each is off unless the space file names its section (`default_on = False`), so a space
written before them plans exactly as it did. Their rules live in scaleout.core.rules_coscaled;
docs/search-space.md gives the formulas and their sources.

weight_decay and the betas take one of three forms:
- one rule: every trial's value *follows* it at the trial's own lr and batch (keep_timescale
  reads the trial's lr); the knob is not a search dimension;
- several rules (or a `range`): a searched range spanning the rules' predictions, widened;
- `fixed`: one value for every trial.
The sqrt/linear seed trials run `seed_rule` (default: the last rule listed) at their own lr;
the reference seed runs the reference's value.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator

import scaleout.core.rules_coscaled  # noqa: F401  (registers the rules below)
from scaleout.core.errors import SpaceError
from scaleout.core.knobs import (
    Knob,
    KnobPlan,
    PlanContext,
    PosFloat,
    PosInt,
    SpecModel,
    _check_range,
    _clamp,
    _names,
    _parametrised_rule,
    knob,
)
from scaleout.core.rules import Range, Rule, make_rule, span

# Adam's and AdamW's default betas (torch.optim): the reference where neither the space file
# nor the trainer's config sets them (BEVFormer's configs set none). Weight decay has no such
# default: Adam's is 0, AdamW's 0.01, so it must be read or given.
ADAM_DEFAULTS = {"beta1": 0.9, "beta2": 0.999}


def _rule_list(v: Any) -> Any:
    if isinstance(v, list):
        return [{"rule": r} if isinstance(r, str) else r for r in v]
    return v


def _seed_rule(rules: list[Any], seed_rule: str | None) -> Rule:
    """The rule the sqrt/linear seed trials run: `seed_rule` among `rules`, else the last."""
    if seed_rule is None:
        return rules[-1]
    for r in rules:
        if r.name == seed_rule:
            return r
    return make_rule(rules[0].knob, seed_rule)


def _reference(ctx: PlanContext, name: str) -> float:
    value = getattr(ctx.ref, name)
    if value is None:
        raise SpaceError(
            ctx.path,
            "reference",
            f"search.{name} needs the reference's {name}: give reference.{name} in the space "
            "file or use a trainer whose config sets it (the optimizer's weight_decay)",
        )
    return float(value)


# -- weight_decay ------------------------------------------------------------------------------

WdRuleName = _names("weight_decay")


class WeightDecaySearch(SpecModel):
    rules: list[WdRuleName] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["keep_timescale"], min_length=1
    )
    seed_rule: WdRuleName | None = None  # type: ignore[valid-type]
    widen: Annotated[float, Field(ge=1)] = 1.25
    range: tuple[PosFloat, PosFloat] | None = None
    fixed: Annotated[float, Field(ge=0)] | None = None

    _range = field_validator("range")(classmethod(lambda cls, v: _check_range(v)))


@knob
class WeightDecay(Knob):
    """AdamW's decoupled weight decay. keep_timescale follows the trial's own lr."""

    name = "weight_decay"
    unit = ""
    spec = WeightDecaySearch
    default_on = False

    def _rules(self, spec: WeightDecaySearch) -> list[Rule]:
        return [make_rule(self.name, r) for r in spec.rules]

    def derive(self, spec: WeightDecaySearch, ctx: PlanContext) -> KnobPlan:
        _reference(ctx, self.name)
        lr = ctx.derived["lr"]
        searched = {label: v for label, v in lr.predictions.items() if label in lr.rules}
        lr_points = {"fixed": lr.fixed} if lr.fixed is not None else searched
        rules = self._rules(spec)
        predictions: dict[str, float] = {}
        for rule in rules:
            if rule.name == "keep":
                predictions[rule.label] = rule.predict(ctx.rule_context())
                continue
            for label, value in lr_points.items():
                for sc in ctx.batch_scales:
                    at = f"{rule.label}@{label}" + (
                        "" if sc is ctx.scale else f" x{sc.target_global_batch}"
                    )
                    predictions[at] = rule.predict(ctx.rule_context(value, sc))
        labels = tuple(spec.rules)
        if spec.fixed is not None:
            return KnobPlan(self.name, predictions, labels, fixed=spec.fixed)
        if spec.range is not None:
            return KnobPlan(self.name, predictions, labels, range=Range(*spec.range, log=True))
        if len(rules) == 1:
            return KnobPlan(self.name, predictions, labels, follows=rules[0])
        return KnobPlan(
            self.name, predictions, labels, range=span(predictions.values(), spec.widen)
        )

    def seed_value(self, origin: str, spec: WeightDecaySearch, ctx: PlanContext, kp, seed):
        if kp.fixed is not None:
            return kp.fixed
        if origin == "reference":
            return ctx.ref.weight_decay
        rule = _seed_rule(self._rules(spec), spec.seed_rule)
        return _clamp(rule.predict(ctx.rule_context(seed["lr"])), kp.range)


# -- beta1, beta2 ------------------------------------------------------------------------------


def _beta_search(knob_name: str) -> type[SpecModel]:
    names = _names(knob_name)

    def check_range(cls: Any, v: Any) -> Any:
        v = _check_range(v)
        if v is not None and not (v[0] > 0 and v[1] < 1):
            raise ValueError(f"a {knob_name} range lies inside (0, 1), got [{v[0]:g}, {v[1]:g}]")
        return v

    namespace: dict[str, Any] = {
        "__annotations__": {
            "rules": list[names],  # type: ignore[valid-type]
            "seed_rule": names | None,  # type: ignore[valid-type]
            "widen": Annotated[float, Field(ge=1)],
            "range": tuple[PosFloat, PosFloat] | None,
            "fixed": Annotated[float, Field(ge=0, lt=1)] | None,
        },
        "rules": Field(default_factory=lambda: ["half_life"], min_length=1),
        "seed_rule": None,
        "widen": 1.25,
        "range": None,
        "fixed": None,
        "_range": field_validator("range")(classmethod(check_range)),
    }
    return type(f"{knob_name}_search", (SpecModel,), namespace)


class _Beta(Knob):
    """An Adam moment's decay rate. Its range lies on the memory axis: the predictions'
    1 - beta spanned on a log axis, widened, then sampled as beta (linear)."""

    unit = ""
    default_on = False
    display = "g"
    reference_default: ClassVar[float]

    def _rules(self, spec: Any) -> list[Rule]:
        return [make_rule(self.name, r) for r in spec.rules]

    def _predict(self, rule: Rule, ctx: PlanContext, sc: Any = None) -> float:
        try:
            return rule.predict(ctx.rule_context(sc=sc))
        except ValueError as exc:
            raise SpaceError(
                ctx.path,
                f"search.{self.name}.rules",
                str(exc),
                hint=f"drop malladi from search.{self.name}.rules, or use half_life",
            ) from None

    def derive(self, spec: Any, ctx: PlanContext) -> KnobPlan:
        rules = self._rules(spec)
        predictions = {r.label: self._predict(r, ctx) for r in rules}
        points = [self._predict(r, ctx, sc) for r in rules for sc in ctx.batch_scales]
        labels = tuple(spec.rules)
        if spec.fixed is not None:
            return KnobPlan(self.name, predictions, labels, fixed=spec.fixed)
        if spec.range is not None:
            rng = Range(*spec.range, log=False)
            return KnobPlan(self.name, predictions, labels, range=rng)
        if len(rules) == 1:
            return KnobPlan(self.name, predictions, labels, follows=rules[0])
        memory = span([1 - p for p in points], spec.widen)
        if memory.high >= 1:
            raise SpaceError(
                ctx.path,
                f"search.{self.name}.widen",
                f"widening the rules' 1 - {self.name} by {spec.widen:g} reaches "
                f"{memory.high:.3g}, a {self.name} at or below 0",
                hint="lower widen, or give range: [low, high]",
            )
        rng = Range(1 - memory.high, 1 - memory.low, log=False)
        return KnobPlan(self.name, predictions, labels, range=rng)

    def seed_value(self, origin: str, spec: Any, ctx: PlanContext, kp: KnobPlan, seed):
        if kp.fixed is not None:
            return kp.fixed
        if origin == "reference":
            return getattr(ctx.ref, self.name)
        rule = _seed_rule(self._rules(spec), spec.seed_rule)
        return _clamp(self._predict(rule, ctx), kp.range)


@knob
class Beta1(_Beta):
    name = "beta1"
    spec = _beta_search("beta1")
    reference_default = ADAM_DEFAULTS["beta1"]


@knob
class Beta2(_Beta):
    name = "beta2"
    spec = _beta_search("beta2")
    reference_default = ADAM_DEFAULTS["beta2"]


# -- epochs ------------------------------------------------------------------------------------

EpochsRuleSpec = _parametrised_rule("epochs")


class EpochsSearch(SpecModel):
    rules: list[EpochsRuleSpec] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [
            EpochsRuleSpec(rule="keep"),
            EpochsRuleSpec(rule="extend", factor=1.5),
        ],
        min_length=1,
    )
    seed_rule: _names("epochs") = "keep"  # type: ignore[valid-type]
    range: tuple[PosInt, PosInt] | None = None

    _range = field_validator("range")(classmethod(lambda cls, v: _check_range(v)))
    _rules = field_validator("rules", mode="before")(classmethod(lambda cls, v: _rule_list(v)))

    @model_validator(mode="after")
    def _seed_listed(self) -> EpochsSearch:
        if self.seed_rule != "keep" and self.seed_rule not in [r.rule for r in self.rules]:
            raise ValueError(f"seed_rule {self.seed_rule!r} is not among the rules")
        return self


@knob
class Epochs(Knob):
    """The trial's length in epochs, searched from the reference's up. A trial's iterations,
    cost (trial-equivalents: its epochs / the reference's) and pruner steps follow its
    epochs; the warmup range is derived at the reference's length, the shortest a trial runs,
    so it fits every trial's cap."""

    name = "epochs"
    unit = "epochs"
    integer = True
    spec = EpochsSearch
    default_on = False

    def derive(self, spec: EpochsSearch, ctx: PlanContext) -> KnobPlan:
        if ctx.scale.target_epochs is not None:
            raise SpaceError(
                ctx.path,
                "search.epochs",
                "search.fixed.epochs already pins every trial's length; give one of the two",
            )
        rules = [r.to_rule() for r in spec.rules]
        predictions = {r.label: int(r.predict(ctx.rule_context())) for r in rules}
        labels = tuple(r.label for r in rules)
        ref = ctx.ref.epochs
        if spec.range is not None:
            lo, hi = spec.range
            if lo < ref:
                raise SpaceError(
                    ctx.path,
                    "search.epochs.range",
                    f"starts at {lo} epochs, below the reference's {ref}: the range extends "
                    "the run (factors >= 1); a shorter run is search.fixed.epochs",
                )
            return KnobPlan(self.name, predictions, labels, Range(lo, hi, log=False, integer=True))
        lo, hi = int(min(predictions.values())), int(max(predictions.values()))
        if lo == hi:
            return KnobPlan(self.name, predictions, labels, follows=rules[0])
        return KnobPlan(self.name, predictions, labels, Range(lo, hi, log=False, integer=True))

    def seed_value(self, origin: str, spec: EpochsSearch, ctx: PlanContext, kp, seed):
        if origin == "reference" or spec.seed_rule == "keep":
            return ctx.ref.epochs
        rule = next(r.to_rule() for r in spec.rules if r.rule == spec.seed_rule)
        return round(_clamp(rule.predict(ctx.rule_context()), kp.range))

    def couple(self, value: Any, values: dict[str, Any], kp: KnobPlan) -> Any:
        return int(value)

    def follow(self, kp: KnobPlan, ctx: Any) -> Any:
        return round(kp.follows.predict(ctx))


# -- samples_per_gpu ---------------------------------------------------------------------------


class SamplesPerGpuSearch(SpecModel):
    range: tuple[PosInt, PosInt]

    _range = field_validator("range")(classmethod(lambda cls, v: _check_range(v)))


@knob
class SamplesPerGpu(Knob):
    """The micro-batch per GPU as a search dimension: a trial's global batch is gpus x its
    samples per GPU, and k, its iterations per epoch and the knobs that follow a rule (the
    betas' half_life, weight_decay's keep_timescale) follow that batch. The lr and warmup
    ranges span the rules at every batch of the range."""

    name = "samples_per_gpu"
    unit = "samples"
    integer = True
    spec = SamplesPerGpuSearch
    default_on = False

    def batch_sizes(self, spec: SamplesPerGpuSearch) -> tuple[int, ...]:
        return tuple(spec.range)

    def derive(self, spec: SamplesPerGpuSearch, ctx: PlanContext) -> KnobPlan:
        lo, hi = spec.range
        if ctx.gpus and hi * ctx.gpus > ctx.ref.train_samples:
            raise SpaceError(
                ctx.path,
                "search.samples_per_gpu.range",
                f"{hi} samples per GPU on {ctx.gpus} GPUs is a global batch of "
                f"{hi * ctx.gpus}, more than the {ctx.ref.train_samples} training samples",
                hint=f"at most {ctx.ref.train_samples // ctx.gpus} samples per GPU",
            )
        base = ctx.scale.target_global_batch // max(1, ctx.gpus) if ctx.gpus else lo
        rng = Range(lo, hi, log=False, integer=True)
        return KnobPlan(self.name, {"target": base}, ("target",), range=rng)

    def seed_value(self, origin: str, spec: SamplesPerGpuSearch, ctx: PlanContext, kp, seed):
        return kp.predictions["target"]

    def couple(self, value: Any, values: dict[str, Any], kp: KnobPlan) -> Any:
        return int(value)
