"""The co-scaled rules: weight decay, Adam's betas and the trial's length (docs/search-space.md).

Registered in `scaleout.core.rules.RULES` like the lr rules; pure. k is the ratio of global
batches. Each rule's source is cited in docs/search-space.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from scaleout.core.rules import Rule, RuleContext, register, trial_lr

# -- weight_decay: AdamW's decoupled weight decay (docs/search-space.md) -----------------------


def _ref_value(ctx: RuleContext, knob: str) -> float:
    value = getattr(ctx.ref, knob)
    if value is None:
        raise ValueError(f"the reference has no {knob}")
    return float(value)


@register
@dataclass(frozen=True)
class KeepWeightDecay(Rule):
    """The reference's weight decay, unchanged."""

    knob: ClassVar[str] = "weight_decay"
    name: ClassVar[str] = "keep"

    def predict(self, ctx: RuleContext) -> float:
        return _ref_value(ctx, self.knob)


@register
@dataclass(frozen=True)
class KeepTimescaleWeightDecay(Rule):
    """Hold AdamW's timescale in epochs, tau = B / (lr x wd x N): wd' = wd x k x lr / lr'
    for the lr' of the point (a seed's, a trial's)."""

    knob: ClassVar[str] = "weight_decay"
    name: ClassVar[str] = "keep_timescale"

    def predict(self, ctx: RuleContext) -> float:
        return _ref_value(ctx, self.knob) * ctx.scale.k * ctx.ref.lr / trial_lr(ctx)


# -- beta1, beta2: Adam's moment decay rates ----------------------------------------------------


@dataclass(frozen=True)
class _KeepBeta(Rule):
    """The reference's beta, unchanged (its memory shrinks k-fold in samples)."""

    def predict(self, ctx: RuleContext) -> float:
        return _ref_value(ctx, self.knob)


@dataclass(frozen=True)
class _HalfLifeBeta(Rule):
    """beta' = beta^k: the same memory in samples (k times fewer steps of k times more)."""

    def predict(self, ctx: RuleContext) -> float:
        return _ref_value(ctx, self.knob) ** ctx.scale.k


@dataclass(frozen=True)
class _MalladiBeta(Rule):
    """beta' = 1 - k (1 - beta), the SDE scaling of Adam; defined only while k (1 - beta) < 1."""

    def predict(self, ctx: RuleContext) -> float:
        beta, k = _ref_value(ctx, self.knob), ctx.scale.k
        if k * (1 - beta) > 1 - 1e-9:  # at 1 (0.9 at k = 10, float noise aside) beta' = 0
            raise ValueError(
                f"malladi needs k x (1 - {self.knob}) < 1, but {k:g} x (1 - {beta:g}) = "
                f"{k * (1 - beta):.3g}: at this batch ratio it gives no {self.knob} "
                "(half_life holds the same memory at any k)"
            )
        return 1 - k * (1 - beta)


@register
@dataclass(frozen=True)
class KeepBeta1(_KeepBeta):
    knob: ClassVar[str] = "beta1"
    name: ClassVar[str] = "keep"


@register
@dataclass(frozen=True)
class HalfLifeBeta1(_HalfLifeBeta):
    knob: ClassVar[str] = "beta1"
    name: ClassVar[str] = "half_life"


@register
@dataclass(frozen=True)
class MalladiBeta1(_MalladiBeta):
    knob: ClassVar[str] = "beta1"
    name: ClassVar[str] = "malladi"


@register
@dataclass(frozen=True)
class KeepBeta2(_KeepBeta):
    knob: ClassVar[str] = "beta2"
    name: ClassVar[str] = "keep"


@register
@dataclass(frozen=True)
class HalfLifeBeta2(_HalfLifeBeta):
    knob: ClassVar[str] = "beta2"
    name: ClassVar[str] = "half_life"


@register
@dataclass(frozen=True)
class MalladiBeta2(_MalladiBeta):
    knob: ClassVar[str] = "beta2"
    name: ClassVar[str] = "malladi"


# -- epochs: the trial's length ---------------------------------------------------------------


@register
@dataclass(frozen=True)
class KeepEpochs(Rule):
    """The reference's epochs: k times fewer steps at k times the batch."""

    knob: ClassVar[str] = "epochs"
    name: ClassVar[str] = "keep"

    def predict(self, ctx: RuleContext) -> float:
        return float(ctx.ref.epochs)


@register
@dataclass(frozen=True)
class ExtendEpochs(Rule):
    """The reference's epochs times `factor` (>= 1): a step-starved run buys more steps, at
    `factor` times the cost."""

    knob: ClassVar[str] = "epochs"
    name: ClassVar[str] = "extend"
    example: ClassVar[str] = "{rule: extend, factor: 1.5}"
    factor: float

    def __post_init__(self) -> None:
        if not self.factor >= 1:
            raise ValueError(
                f"extend takes a factor >= 1 on the reference's epochs (got {self.factor:g}); "
                "a shorter run is search.fixed.epochs"
            )

    @property
    def label(self) -> str:
        return f"extend({self.factor:g})"

    def predict(self, ctx: RuleContext) -> float:
        return float(math.floor(ctx.ref.epochs * self.factor + 0.5))  # 4.5 -> 5, not 4
