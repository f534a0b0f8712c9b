"""The gradient noise scale B_simple from logged squared norms (McCandlish et al. 2018, A.1).

Per logged iteration, from |G_small|^2 at batch b and |G_big|^2 at batch B (b < B):
    |G|^2    ~ (B |G_big|^2 - b |G_small|^2) / (B - b)      (unbiased)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1/b - 1/B)     (unbiased)
and B_simple = tr(Sigma) / |G|^2 of their means over the iterations covered (each estimate is
far too noisy on its own, which is why the paper averages both before dividing; the EMA the
paper uses is reported too, at its end). The band is a moving-block bootstrap of that ratio:
blocks of consecutive points keep the drift of training within a resample. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaleout.core.errors import UsageError
from scaleout.core.job import GradStat

MIN_POINTS = 8  # fewer logged iterations give no stable estimate
RESAMPLES = 2000
EMA_BETA = 0.9  # per logged point
BLOCKS = 4  # B_simple over consecutive quarters of the points: its drift through the run


@dataclass(frozen=True)
class NoiseScale:
    b_simple: float
    band: tuple[float, float]
    band_method: str
    b_simple_ema: float | None
    g2: float  # mean |G|^2 estimate
    trace_sigma: float  # mean tr(Sigma) estimate
    points: int
    first_iter: int
    last_iter: int
    b_small: float
    b_big: float
    blocks: tuple[dict, ...]

    def to_dict(self) -> dict:
        return {
            "b_simple": self.b_simple,
            "band": list(self.band),
            "band_level": 0.95,
            "band_method": self.band_method,
            "b_simple_ema": self.b_simple_ema,
            "ema_beta": EMA_BETA,
            "g2": self.g2,
            "trace_sigma": self.trace_sigma,
            "points": self.points,
            "iterations": {"first": self.first_iter, "last": self.last_iter},
            "batch_small": self.b_small,
            "batch_big": self.b_big,
            "blocks": list(self.blocks),
            "unit": "samples (global batch)",
        }


def two_batch(stats: Sequence[GradStat]) -> tuple[np.ndarray, np.ndarray]:
    """Per-point unbiased estimates of |G|^2 and tr(Sigma)."""
    small = np.array([s.sq_small for s in stats], dtype=float)
    big = np.array([s.sq_big for s in stats], dtype=float)
    b = np.array([s.b_small for s in stats], dtype=float)
    bb = np.array([s.b_big for s in stats], dtype=float)
    g2 = (bb * big - b * small) / (bb - b)
    trace = (small - big) / (1.0 / b - 1.0 / bb)
    return g2, trace


def ema(values: np.ndarray, beta: float = EMA_BETA) -> float:
    """The bias-corrected exponential moving average at the last point."""
    acc, weight = 0.0, 0.0
    for v in values:
        acc = beta * acc + (1 - beta) * float(v)
        weight = beta * weight + (1 - beta)
    return acc / weight


def block_bootstrap(
    g2: np.ndarray, trace: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[np.ndarray, int]:
    """Ratios of means over moving-block resamples (block ~ n^(1/3) points); returns the
    ratios (NaN where a resample's mean |G|^2 is not positive) and the block length."""
    n = len(g2)
    block = max(1, round(n ** (1 / 3)))
    starts = np.arange(n - block + 1)
    per = math.ceil(n / block)
    rng = np.random.default_rng(seed)
    picks = rng.choice(starts, size=(resamples, per))
    idx = (picks[:, :, None] + np.arange(block)[None, None, :]).reshape(resamples, -1)[:, :n]
    g = g2[idx].mean(axis=1)
    t = trace[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(g > 0, t / g, np.nan)
    return ratios, block


def estimate(stats: Sequence[GradStat], *, source: str = "the run") -> NoiseScale:
    """B_simple with its 95% band, or UsageError (exit 2) when the points cannot give a
    stable one: too few, no batch pair, or a mean |G|^2 (or its band) that is not positive."""
    stats = [s for s in stats if s.b_big > s.b_small > 0]
    if len(stats) < MIN_POINTS:
        raise UsageError(
            f"{source}: {len(stats)} iteration(s) with gradient statistics, at least "
            f"{MIN_POINTS} are needed for a stable estimate",
            hint="run more iterations (--iters) or log the statistics more often (the hook's "
            "interval)",
        )
    g2, trace = two_batch(stats)
    g_mean, t_mean = float(g2.mean()), float(trace.mean())
    if g_mean <= 0 or t_mean <= 0:
        raise UsageError(
            f"{source}: no stable estimate over {len(stats)} points: mean |G|^2 {g_mean:.3g}, "
            f"mean tr(Sigma) {t_mean:.3g} (both must be positive; the gradient noise swamps "
            "its signal)",
            hint="run more iterations (--iters) or log the statistics more often",
        )
    ratios, block = block_bootstrap(g2, trace)
    bad = float(np.isnan(ratios).mean())
    if bad > 0.025:
        raise UsageError(
            f"{source}: no stable estimate over {len(stats)} points: in {bad:.0%} of the "
            "bootstrap resamples the mean |G|^2 is not positive, so the band has no top",
            hint="run more iterations (--iters) or log the statistics more often",
        )
    lo, hi = np.nanpercentile(ratios, [2.5, 97.5])
    e_g = ema(g2)
    b_ema = ema(trace) / e_g if e_g > 0 else None
    method = (
        f"moving-block bootstrap of the ratio of means ({RESAMPLES} resamples, blocks of "
        f"{block} consecutive points, seed 0), 2.5th-97.5th percentile"
    )
    return NoiseScale(
        b_simple=t_mean / g_mean,
        band=(float(lo), float(hi)),
        band_method=method,
        b_simple_ema=b_ema,
        g2=g_mean,
        trace_sigma=t_mean,
        points=len(stats),
        first_iter=stats[0].iter,
        last_iter=stats[-1].iter,
        b_small=stats[0].b_small,
        b_big=stats[0].b_big,
        blocks=tuple(_blocks(stats, g2, trace)),
    )


def _blocks(stats: Sequence[GradStat], g2: np.ndarray, trace: np.ndarray) -> list[dict]:
    if len(stats) < 2 * BLOCKS:
        return []
    out = []
    for part in np.array_split(np.arange(len(stats)), BLOCKS):
        g, t = float(g2[part].mean()), float(trace[part].mean())
        out.append(
            {
                "first_iter": stats[part[0]].iter,
                "last_iter": stats[part[-1]].iter,
                "points": len(part),
                "b_simple": t / g if g > 0 else None,
            }
        )
    return out
