"""Scaling rules and the derivation of coupled search ranges. Pure functions, no I/O.

k is the ratio of global batches (ARCHITECTURE decision 4):
    k = (gpus x samples_per_gpu) / (reference gpus x reference samples_per_gpu)

Every function here is deterministic and cheap, so the planner can be tested table-driven
and `scaleout plan` never imports torch, mlflow or ray.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields

LR_RULES = ("reference", "sqrt", "linear", "power", "noise")
WARMUP_RULES = ("keep_iters", "keep_epochs", "keep_fraction")
MIN_LR_RULES = ("keep_ratio", "keep_floor")


@dataclass(frozen=True)
class Reference:
    """The recipe that is known to work at the reference scale (e.g. BEVFormer-base at 8 GPUs).

    `wall_time_h` (whole training at the reference scale) or `sample_time_s` (GPU-seconds per
    training sample) lets the plan estimate cost; both are optional.
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

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def required_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.default is not None)

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
class LrRule:
    """One learning-rate scaling rule.

    reference: lr; sqrt: lr*sqrt(k); linear: lr*k; power: lr*k^alpha;
    noise: the gradient-noise-scale rule lr_opt(B) = lr_max / (1 + B_noise/B)^alpha
    (McCandlish et al. 2018; alpha 0.5 for Adam), taken as a ratio to the reference batch.
    """

    name: str
    alpha: float | None = None
    b_noise: float | None = None

    @property
    def label(self) -> str:
        if self.name == "power":
            return f"power({self.alpha:g})"
        if self.name == "noise":
            return f"noise(B={self.b_noise:g},a={self.alpha:g})"
        return self.name

    def predict(self, ref_lr: float, sc: Scale) -> float:
        k = sc.k
        if self.name == "reference":
            return ref_lr
        if self.name == "sqrt":
            return ref_lr * math.sqrt(k)
        if self.name == "linear":
            return ref_lr * k
        if self.name == "power":
            return ref_lr * k ** _need(self.alpha, "alpha")
        if self.name == "noise":
            bn, a = _need(self.b_noise, "b_noise"), _need(self.alpha, "alpha")
            b0, b1 = sc.reference_global_batch, sc.target_global_batch
            return ref_lr * ((1 + bn / b0) / (1 + bn / b1)) ** a
        raise ValueError(f"unknown lr rule {self.name!r}; known: {', '.join(LR_RULES)}")


def _need(value: float | None, what: str) -> float:
    if value is None:
        raise ValueError(f"rule needs {what}")
    return value


def predict_warmup(rule: str, ref: Reference, sc: Scale) -> int:
    """Warmup iterations at the target scale, by rule; at least 1.

    keep_iters keeps the reference's iteration count (LEGW); keep_epochs keeps the same number
    of epochs of warmup; keep_fraction keeps the same fraction of all iterations.
    """
    if rule == "keep_iters":
        value = float(ref.warmup_iters)
    elif rule == "keep_epochs":
        value = ref.warmup_iters / sc.reference_iters_per_epoch * sc.target_iters_per_epoch
    elif rule == "keep_fraction":
        value = ref.warmup_iters / sc.reference_total_iters * sc.target_total_iters
    else:
        raise ValueError(f"unknown warmup rule {rule!r}; known: {', '.join(WARMUP_RULES)}")
    return max(1, round(value))


def predict_min_lr_ratio(rule: str, ref: Reference, lr: float) -> float:
    """min_lr_ratio for a trial at learning rate `lr`.

    keep_ratio keeps the reference ratio; keep_floor keeps the absolute floor lr*ratio equal
    to the reference floor (FACTS 6: the tuned floor sat at or below the reference floor).
    """
    if rule == "keep_ratio":
        return ref.min_lr_ratio
    if rule == "keep_floor":
        return min(ref.min_lr_ratio, ref.min_lr / lr)
    raise ValueError(f"unknown min_lr rule {rule!r}; known: {', '.join(MIN_LR_RULES)}")


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
