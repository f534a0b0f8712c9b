"""Scaling rules and the derivation of coupled search ranges. Pure functions, no I/O.

k is the ratio of global batches, not of GPU counts (docs/search-space.md):
    k = (gpus x samples_per_gpu) / (reference gpus x reference samples_per_gpu)

Rules live in a registry: `RULES[knob][name]` is a rule class whose dataclass fields are its
parameters. Everything here is deterministic and cheap, so the planner is tested
table-driven and `scaleout plan` never imports torch, mlflow or ray.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, ClassVar


@dataclass(frozen=True)
class Reference:
    """The recipe that is known to work at the reference scale (e.g. BEVFormer-base at 8 GPUs).

    `wall_time_h` (whole training at the reference scale) or `sample_time_s` (GPU-seconds per
    training sample) lets the plan estimate cost; both are optional. `metric` is what the
    recipe scores at its own scale ({"NDS": 0.517, "mAP": 0.416}), when known: the level the
    sweep's recovery is measured against.
    """

    gpus: int
    samples_per_gpu: int
    lr: float
    warmup_iters: int
    warmup_ratio: float
    min_lr_ratio: float
    epochs: int
    train_samples: int
    wall_time_h: float | None = None
    sample_time_s: float | None = None
    metric: dict[str, float] = field(default_factory=dict)
    # The optimizer's settings, for the co-scaled knobs (scaleout.core.knobs_coscaled); None where
    # unknown. A trainer reports its optimizer's default where its config sets none.
    weight_decay: float | None = None
    beta1: float | None = None
    beta2: float | None = None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def required_names(cls) -> tuple[str, ...]:
        return tuple(
            f.name
            for f in fields(cls)
            if f.default is MISSING and f.default_factory is MISSING  # type: ignore[misc]
        )

    @property
    def global_batch(self) -> int:
        return self.gpus * self.samples_per_gpu

    @property
    def min_lr(self) -> float:
        """The absolute floor the cosine decays to."""
        return self.lr * self.min_lr_ratio

    def gpu_seconds_per_sample(self) -> float | None:
        if self.sample_time_s is not None:
            return self.sample_time_s
        if self.wall_time_h is not None:
            return self.wall_time_h * 3600.0 * self.gpus / (self.train_samples * self.epochs)
        return None


def iters_per_epoch(train_samples: int, gpus: int, samples_per_gpu: int) -> int:
    """Iterations per epoch as a distributed sampler counts them.

    Each rank gets ceil(N / gpus) samples (the sampler pads), and the loader keeps the last
    partial batch: 28,130 samples on 8 x 1 GPUs give 3,517 iterations, on 160 x 1 give 176.
    """
    per_rank = math.ceil(train_samples / gpus)
    return math.ceil(per_rank / samples_per_gpu)


@dataclass(frozen=True)
class Scale:
    """The reference and the target side by side: batches, k, iterations."""

    reference_global_batch: int
    target_global_batch: int
    k: float
    reference_iters_per_epoch: int
    target_iters_per_epoch: int
    epochs: int  # the reference's
    target_epochs: int | None = None  # a trial's, where the space pins them (search.fixed)

    @property
    def trial_epochs(self) -> int:
        return self.target_epochs or self.epochs

    @property
    def reference_total_iters(self) -> int:
        return self.reference_iters_per_epoch * self.epochs

    @property
    def target_total_iters(self) -> int:
        return self.target_iters_per_epoch * self.trial_epochs


def scale(
    ref: Reference, gpus: int, samples_per_gpu: int, target_epochs: int | None = None
) -> Scale:
    target_batch = gpus * samples_per_gpu
    return Scale(
        reference_global_batch=ref.global_batch,
        target_global_batch=target_batch,
        k=target_batch / ref.global_batch,
        reference_iters_per_epoch=iters_per_epoch(ref.train_samples, ref.gpus, ref.samples_per_gpu),
        target_iters_per_epoch=iters_per_epoch(ref.train_samples, gpus, samples_per_gpu),
        epochs=ref.epochs,
        target_epochs=target_epochs,
    )


@dataclass(frozen=True)
class RuleContext:
    """What a rule sees: the reference, the scale, and for rules coupled to the learning rate
    (keep_floor, keep_timescale) the lr of the point being derived (a seed's, a trial's)."""

    ref: Reference
    scale: Scale
    lr: float | None = None


class Rule:
    """A scaling rule for one knob: the knob's value at the target scale from its reference.

    Subclasses are frozen dataclasses whose fields are the rule's parameters (the space file's
    `{rule: power, alpha: 0.54}`), registered under (knob, name) with `@register`. A new rule is
    one such class; the space schema and the plan take it from the registry.
    """

    knob: ClassVar[str]
    name: ClassVar[str]
    example: ClassVar[str] = ""  # shown when a parameter is missing

    @property
    def label(self) -> str:
        """The rule as the plan names its prediction."""
        return self.name

    def predict(self, ctx: RuleContext) -> float:
        raise NotImplementedError


RULES: dict[str, dict[str, type[Rule]]] = {}


def register(cls: type[Rule]) -> type[Rule]:
    RULES.setdefault(cls.knob, {})[cls.name] = cls
    return cls


def rule_names(knob: str) -> tuple[str, ...]:
    return tuple(RULES.get(knob, {}))


def rule_params(cls: type[Rule]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]


def param_key(param: str) -> str:
    """A parameter as the space file spells it: `from_` (a Python keyword) is `from`."""
    return param.rstrip("_")


def make_rule(knob: str, name: str, **params: Any) -> Rule:
    """The registered rule `name` for `knob`. Raises ValueError naming what is allowed.

    A parameter with a default may be left out (None); a list becomes a tuple."""
    cls = RULES.get(knob, {}).get(name)
    if cls is None:
        known = ", ".join(rule_names(knob))
        raise ValueError(f"unknown {knob} rule {name!r}; known: {known}")
    want = rule_params(cls)
    required = {f.name for f in fields(cls) if f.default is MISSING}  # type: ignore[arg-type]
    missing = [param_key(p) for p in want if p in required and params.get(p) is None]
    if missing:
        example = f", e.g. {cls.example}" if cls.example else ""
        raise ValueError(f"rule {name!r} needs {' and '.join(missing)}{example}")
    extra = sorted(param_key(k) for k, v in params.items() if k not in want and v is not None)
    if extra:
        raise ValueError(f"rule {name!r} takes no {', '.join(extra)}")
    given = {p: params[p] for p in want if params.get(p) is not None}
    return cls(**{p: tuple(v) if isinstance(v, list) else v for p, v in given.items()})


def trial_lr(ctx: RuleContext) -> float:
    if ctx.lr is None:
        raise ValueError("this rule follows the trial's lr, and none was given")
    return ctx.lr


# -- lr: the learning rate at the target global batch --------------------------------------


@register
@dataclass(frozen=True)
class KeepLr(Rule):
    """The reference's lr, unchanged: the recipe as it was (the drop the sweep recovers)."""

    knob: ClassVar[str] = "lr"
    name: ClassVar[str] = "reference"

    def predict(self, ctx: RuleContext) -> float:
        return ctx.ref.lr


@register
@dataclass(frozen=True)
class SqrtLr(Rule):
    """lr x sqrt(k) (Krizhevsky 2014; Hoffer et al. 2017): the Adam-family bound."""

    knob: ClassVar[str] = "lr"
    name: ClassVar[str] = "sqrt"

    def predict(self, ctx: RuleContext) -> float:
        return ctx.ref.lr * math.sqrt(ctx.scale.k)


@register
@dataclass(frozen=True)
class LinearLr(Rule):
    """lr x k (Goyal et al. 2017), with gradual warmup."""

    knob: ClassVar[str] = "lr"
    name: ClassVar[str] = "linear"

    def predict(self, ctx: RuleContext) -> float:
        return ctx.ref.lr * ctx.scale.k


@register
@dataclass(frozen=True)
class PowerLr(Rule):
    """lr x k^alpha: a law fitted from earlier sweeps (BEVFormer 8 -> 160 GPUs: alpha ~0.54).

    `from_` (`from:` in the space file) names the sweeps `scaleout fit` took alpha from: it
    is recorded with the rule and changes nothing in its prediction."""

    knob: ClassVar[str] = "lr"
    name: ClassVar[str] = "power"
    example: ClassVar[str] = "{rule: power, alpha: 0.54}"
    alpha: float
    from_: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"power({self.alpha:g})"

    def predict(self, ctx: RuleContext) -> float:
        return ctx.ref.lr * ctx.scale.k**self.alpha


@register
@dataclass(frozen=True)
class NoiseLr(Rule):
    """The gradient-noise-scale rule lr_opt(B) = lr_max / (1 + B_noise/B)^alpha (McCandlish et
    al. 2018; alpha 0.5 for Adam), taken as a ratio to the reference batch.

    B_noise is typed (`b_noise`) or measured: `probe` names a probe.json that `scaleout probe`
    wrote (relative to the space file), whose B_simple `resolve` reads."""

    knob: ClassVar[str] = "lr"
    name: ClassVar[str] = "noise"
    example: ClassVar[str] = (
        "{rule: noise, b_noise: 64, alpha: 0.5} or {rule: noise, probe: probe.json}"
    )
    b_noise: float | None = None
    alpha: float = 0.5
    probe: str | None = None

    def __post_init__(self) -> None:
        if self.b_noise is None and self.probe is None:
            raise ValueError(f"rule 'noise' needs b_noise or probe, e.g. {self.example}")
        if self.b_noise is not None and self.b_noise <= 0:
            raise ValueError(f"rule 'noise': b_noise must be positive, got {self.b_noise:g}")

    @property
    def label(self) -> str:
        if self.b_noise is None:
            return f"noise(probe,a={self.alpha:g})"
        return f"noise(B={self.b_noise:g},a={self.alpha:g})"

    def resolve(self, space_path: str) -> NoiseLr:
        """The rule with b_noise read from its probe file (relative to the space file);
        ValueError saying what is wrong with the file."""
        if self.probe is None:
            return self
        from scaleout.core.probefile import probe_path, read_probe

        facts = read_probe(probe_path(self.probe, space_path))
        return replace(self, b_noise=float(f"{facts.b_simple:.4g}"))

    def report(self, sc: Scale, epochs: int) -> dict[str, Any]:
        """What B_noise says about the target batch (McCandlish et al. 2018): the critical
        batch is ~B_noise; reaching the same loss takes E/E_min = 1 + B/B_noise times the
        minimum data at batch B, so the target needs (1 + B_target/B_noise) /
        (1 + B_ref/B_noise) times the reference's samples (`epochs`: the reference's)."""
        if self.b_noise is None:
            raise ValueError("the noise rule's probe file has not been read (resolve)")
        b = self.b_noise
        target, ref = sc.target_global_batch, sc.reference_global_batch
        data_target, data_ref = 1 + target / b, 1 + ref / b
        return {
            "b_noise": b,
            "source": self.probe or "b_noise in the space file",
            "critical_batch": b,
            "target_global_batch": target,
            "reference_global_batch": ref,
            "target_over_critical": target / b,
            "beyond_critical": target > b,
            "data_over_minimum": {"target": data_target, "reference": data_ref},
            "data_vs_reference": data_target / data_ref,
            "epochs_for_same_loss": epochs * data_target / data_ref,
            "unit": "samples (global batch)",
        }

    def predict(self, ctx: RuleContext) -> float:
        if self.b_noise is None:
            raise ValueError("the noise rule's probe file has not been read (Rule.resolve)")
        b0, b1 = ctx.scale.reference_global_batch, ctx.scale.target_global_batch
        return ctx.ref.lr * ((1 + self.b_noise / b0) / (1 + self.b_noise / b1)) ** self.alpha


# -- warmup_iters: linear warmup length in iterations ---------------------------------------


@register
@dataclass(frozen=True)
class KeepWarmupIters(Rule):
    """The reference's warmup iterations, unchanged (LEGW, You et al. 2019)."""

    knob: ClassVar[str] = "warmup_iters"
    name: ClassVar[str] = "keep_iters"

    def predict(self, ctx: RuleContext) -> float:
        return float(ctx.ref.warmup_iters)


@register
@dataclass(frozen=True)
class KeepWarmupEpochs(Rule):
    """The same number of epochs of warmup: iterations shrink with the larger batch."""

    knob: ClassVar[str] = "warmup_iters"
    name: ClassVar[str] = "keep_epochs"

    def predict(self, ctx: RuleContext) -> float:
        sc = ctx.scale
        return ctx.ref.warmup_iters / sc.reference_iters_per_epoch * sc.target_iters_per_epoch


@register
@dataclass(frozen=True)
class KeepWarmupFraction(Rule):
    """The same fraction of all iterations."""

    knob: ClassVar[str] = "warmup_iters"
    name: ClassVar[str] = "keep_fraction"

    def predict(self, ctx: RuleContext) -> float:
        sc = ctx.scale
        return ctx.ref.warmup_iters / sc.reference_total_iters * sc.target_total_iters


# -- min_lr_ratio: the cosine's floor as a ratio of the trial's lr ---------------------------


@register
@dataclass(frozen=True)
class KeepMinLrRatio(Rule):
    """The reference's ratio, unchanged: the floor rises with the lr."""

    knob: ClassVar[str] = "min_lr_ratio"
    name: ClassVar[str] = "keep_ratio"

    def predict(self, ctx: RuleContext) -> float:
        return ctx.ref.min_lr_ratio


@register
@dataclass(frozen=True)
class KeepMinLrFloor(Rule):
    """The absolute floor lr x ratio kept at the reference's (the tuned BEVFormer floor sat at
    or below the reference floor: docs/search-space.md); never above the reference ratio."""

    knob: ClassVar[str] = "min_lr_ratio"
    name: ClassVar[str] = "keep_floor"

    def predict(self, ctx: RuleContext) -> float:
        return min(ctx.ref.min_lr_ratio, ctx.ref.min_lr / trial_lr(ctx))


@dataclass(frozen=True)
class Range:
    """A search range; `log` means sampled log-uniformly, `integer` means whole numbers."""

    low: float
    high: float
    log: bool = True
    integer: bool = False

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, object]:
        return {
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "type": "int" if self.integer else "float",
        }


def span(values: Iterable[float], widen: float, *, log: bool = True) -> Range:
    """The range covering `values`, widened by `widen` on each side (a factor on a log
    axis, a multiplier of the half-width on a linear one)."""
    vals = sorted(values)
    if not vals:
        raise ValueError("no values to span")
    if widen < 1:
        raise ValueError("widen must be >= 1")
    lo, hi = vals[0], vals[-1]
    if log:
        return Range(lo / widen, hi * widen, log=True)
    half = (hi - lo) / 2 * widen
    mid = (hi + lo) / 2
    return Range(mid - half, mid + half, log=False)


def warmup_range(predictions: Iterable[int], widen: float, cap: int) -> Range:
    """Integer warmup range from the rules' predictions, widened, then capped at `cap`.

    Raises ValueError when the cap leaves no room (cap below the smallest prediction).
    """
    preds = sorted(predictions)
    if cap < max(1, preds[0]):
        raise ValueError(
            f"the cap of {cap} iterations is below the smallest warmup the rules give ({preds[0]})"
        )
    lo = max(1, math.floor(preds[0] / widen))
    hi = min(cap, math.ceil(preds[-1] * widen))
    return Range(lo, max(lo, hi), log=True, integer=True)


# The co-scaled rules (weight_decay, beta1, beta2, epochs) register in their own module.
from scaleout.core import rules_coscaled as _coscaled  # noqa: E402, F401
