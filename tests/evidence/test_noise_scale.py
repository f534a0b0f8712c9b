"""The two-batch estimator of B_simple (scaleout.evidence.noise) against gradients drawn with a
known mean and covariance, where B_simple = tr(Sigma) / |G|^2 is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from scaleout.core.errors import UsageError
from scaleout.core.job import GradStat
from scaleout.evidence import noise


def drawn_stats(n, *, b, big, g_norm2, trace, dim=40, seed=0):
    """n iterations: per-sample gradients ~ N(G, Sigma) with |G|^2 = g_norm2 and tr(Sigma) =
    trace; |G_small|^2 of the first b samples' mean and |G_big|^2 of all `big`."""
    rng = np.random.default_rng(seed)
    g = np.full(dim, np.sqrt(g_norm2 / dim))
    sd = np.sqrt(trace / dim)
    out = []
    for i in range(n):
        samples = g + sd * rng.standard_normal((big, dim))
        small = samples[:b].mean(axis=0)
        full = samples.mean(axis=0)
        out.append(GradStat(5 * (i + 1), float(small @ small), float(full @ full), b, big))
    return out


@pytest.mark.parametrize(
    ("b", "big", "g_norm2", "trace"),
    [(1, 8, 1.0, 20.0), (1, 16, 0.5, 40.0), (4, 64, 2.0, 50.0), (2, 160, 1.0, 100.0)],
)
def test_the_band_holds_the_true_noise_scale(b, big, g_norm2, trace):
    true = trace / g_norm2
    est = noise.estimate(drawn_stats(400, b=b, big=big, g_norm2=g_norm2, trace=trace))
    lo, hi = est.band
    assert lo < true < hi
    assert lo < est.b_simple < hi
    assert est.b_simple == pytest.approx(true, rel=0.35)
    assert (est.points, est.b_small, est.b_big) == (400, b, big)
    assert (est.first_iter, est.last_iter) == (5, 2000)
    assert len(est.blocks) == noise.BLOCKS
    assert est.blocks[0]["first_iter"] == 5 and est.blocks[-1]["last_iter"] == 2000


def test_exact_norms_give_the_exact_ratio():
    # With E|G_b|^2 = |G|^2 + tr(Sigma)/b exactly, both estimates are exact at every point.
    stats = [GradStat(i, 1.0 + 30.0 / 2, 1.0 + 30.0 / 32, 2, 32) for i in range(1, 11)]
    g2, tr = noise.two_batch(stats)
    assert np.allclose(g2, 1.0) and np.allclose(tr, 30.0)
    est = noise.estimate(stats)
    assert est.b_simple == pytest.approx(30.0)
    assert est.band == pytest.approx((30.0, 30.0))
    assert est.b_simple_ema == pytest.approx(30.0)


def test_the_band_is_reproducible():
    stats = drawn_stats(60, b=1, big=8, g_norm2=1.0, trace=10.0, seed=3)
    assert noise.estimate(stats).band == noise.estimate(stats).band


def test_too_few_points_are_refused():
    stats = drawn_stats(noise.MIN_POINTS - 1, b=1, big=8, g_norm2=1.0, trace=10.0)
    with pytest.raises(UsageError, match=r"7 iteration\(s\) with gradient statistics, at least 8"):
        noise.estimate(stats, source="run/")
    # Points without a pair of batches (one GPU: b == B) count for nothing.
    flat = [GradStat(i, 1.0, 1.0, 8, 8) for i in range(1, 40)]
    with pytest.raises(UsageError, match="0 iteration"):
        noise.estimate(flat)


def test_noise_that_swamps_the_signal_is_refused():
    # |G|^2 tiny against tr(Sigma): the mean |G|^2 estimate goes negative or its band has no top.
    stats = drawn_stats(12, b=1, big=2, g_norm2=1e-4, trace=100.0, seed=1)
    with pytest.raises(UsageError, match="no stable estimate") as err:
        noise.estimate(stats)
    assert err.value.exit_code == 2
