"""The fits of scaleout.evidence.fit on points whose law is known."""

from __future__ import annotations

import math

import pytest

from scaleout.evidence import fit as F


def point(batch, lr, sigma=0.1, ref_batch=8):
    return F.Point(
        sweep=f"s{batch}", global_batch=batch, k=batch / ref_batch, lr_opt=lr, sigma_ln=sigma,
        lr_best=lr, objective_best=0.3, trial_best=0, top=(), completed=3,
    )  # fmt: skip


@pytest.mark.parametrize("alpha", [0.5, 0.62, 1.0])
def test_an_exact_power_law_is_recovered(alpha):
    pts = [point(b, 2e-4 * (b / 8) ** alpha) for b in (16, 40, 80)]
    fit = F.fit_power(pts, 2e-4)
    assert fit["alpha"] == pytest.approx(alpha)
    lo, hi = fit["interval"]
    assert lo < alpha < hi and hi - lo < 0.6
    assert fit["chi2"] == pytest.approx(0.0, abs=1e-18) and fit["dof"] == 2
    free = F.fit_power_free(pts)
    assert free["alpha"] == pytest.approx(alpha) and free["lr_at_k1"] == pytest.approx(2e-4)
    pred = F.predict(fit, "power", 20.0, 160)
    assert pred["lr"] == pytest.approx(2e-4 * 20**alpha)
    assert pred["interval"][0] < pred["lr"] < pred["interval"][1]


def test_the_published_anchor():
    # BEVFormer: lr 1e-3 at 160 GPUs from 2e-4 at 8 is 20^0.537.
    fit = F.fit_power([point(160, 1e-3), point(80, 2e-4 * 10**0.537)], 2e-4)
    assert fit["alpha"] == pytest.approx(math.log(5) / math.log(20), abs=1e-3)


def test_scatter_widens_the_interval_and_weights_count():
    tight = [point(16, 2e-4 * 2**0.6), point(80, 2e-4 * 10**0.6)]
    noisy = [
        point(16, 2e-4 * 2**0.6 * 1.5),
        point(40, 2e-4 * 5**0.6 / 1.5),
        point(80, 2e-4 * 10**0.6),
    ]
    w_tight = F.fit_power(tight, 2e-4)["interval"]
    w_noisy = F.fit_power(noisy, 2e-4)["interval"]
    assert w_noisy[1] - w_noisy[0] > w_tight[1] - w_tight[0]
    # A point with a large uncertainty barely moves the fit.
    heavy = [point(16, 2e-4 * 2**0.6), point(80, 2e-4 * 10**0.6), point(40, 1e-2, sigma=5.0)]
    assert F.fit_power(heavy, 2e-4)["alpha"] == pytest.approx(0.6, abs=0.02)


def test_the_surge_form_where_the_optima_rise_and_fall():
    lr_max, peak = 4e-3, 64.0
    batches = (8, 16, 32, 64, 128, 256, 512)
    pts = [point(b, float(F.surge_lr(b, lr_max, peak))) for b in batches]
    assert F.has_peak(pts)
    surge = F.fit_surge(pts)
    assert surge["b_peak"] == pytest.approx(peak, rel=0.03)
    assert surge["lr_max"] == pytest.approx(lr_max, rel=0.01)
    assert surge["aic"] < F.fit_power(pts, float(F.surge_lr(8, lr_max, peak)))["aic"]


def test_no_peak_no_surge():
    rising = [point(b, 2e-4 * (b / 8) ** 0.5) for b in (16, 40, 80)]
    assert not F.has_peak(rising)
    assert F.has_peak([point(16, 1e-3), point(40, 2e-3), point(80, 1.5e-3)])
    assert not F.has_peak([point(16, 1e-3), point(80, 2e-3), point(80, 1.5e-3)])  # two batches


def test_an_optimum_comes_from_the_top_trials():
    rows = [
        {"trial": 0, "lr": 1e-3, "objective": 0.30},
        {"trial": 1, "lr": 2e-3, "objective": 0.40},
        {"trial": 2, "lr": 4e-3, "objective": 0.38},
        {"trial": 3, "lr": 8e-3, "objective": 0.20},
        {"trial": 4, "lr": None, "objective": 0.5},  # no lr: left out
    ]
    p = F.optimum("s", rows, global_batch=160, k=20, top=2)
    assert p.lr_best == 2e-3 and p.trial_best == 1
    assert p.lr_opt == pytest.approx(math.sqrt(2e-3 * 4e-3))
    assert p.sigma_ln == pytest.approx(math.log(2) / math.sqrt(2))
    assert p.completed == 4
    low = F.optimum("s", rows, global_batch=160, k=20, top=2, maximize=False)
    assert low.lr_best == 8e-3
    with pytest.raises(ValueError, match="at least 2"):
        F.optimum("s", rows[:1], global_batch=160, k=20)


def test_t_quantiles():
    assert F.t975(1) == pytest.approx(12.706)
    assert F.t975(11) == F.t975(10)
    assert F.t975(0) == F.t975(100) == 1.96
