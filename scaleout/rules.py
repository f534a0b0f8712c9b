"""Scaling rules and the derivation of coupled search ranges. Pure functions, no I/O.

k is the ratio of global batches (ARCHITECTURE decision 4):
    k = (gpus x samples_per_gpu) / (reference gpus x reference samples_per_gpu)
"""

from __future__ import annotations

from dataclasses import dataclass, fields


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
