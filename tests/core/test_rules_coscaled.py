"""Table-driven tests of the co-scaled rules: weight decay, Adam's betas, the trial's length
(docs/search-space.md, "Co-scaled knobs")."""

from __future__ import annotations

import dataclasses

import pytest

from scaleout.core.rules import RULES, RuleContext, make_rule, scale


@pytest.fixture
def ref(bevformer_reference):
    return dataclasses.replace(bevformer_reference, weight_decay=0.01, beta1=0.9, beta2=0.999)


def _at(ref, gpus, lr=None, spg=1):
    return RuleContext(ref, scale(ref, gpus, spg), lr)


def test_every_coscaled_knob_has_its_rules_registered():
    assert set(RULES["weight_decay"]) == {"keep", "keep_timescale"}
    for knob in ("beta1", "beta2"):
        assert set(RULES[knob]) == {"keep", "half_life", "malladi"}
    assert set(RULES["epochs"]) == {"keep", "extend"}


@pytest.mark.parametrize(
    ("rule", "gpus", "lr", "expected"),
    [
        ("keep", 160, 8.944e-4, 0.01),
        # wd' = wd x k x lr / lr': the sqrt seed (lr x sqrt(20)) -> 0.01 x 20 / 4.472
        ("keep_timescale", 160, 2e-4 * 20**0.5, 0.01 * 20 / 20**0.5),
        ("keep_timescale", 160, 4e-3, 0.01),  # the linear seed: unchanged
        ("keep_timescale", 8, 2e-4, 0.01),  # the reference itself
        ("keep_timescale", 80, 1e-3, 0.01 * 10 * 2e-4 / 1e-3),
    ],
)
def test_weight_decay(ref, rule, gpus, lr, expected):
    assert make_rule("weight_decay", rule).predict(_at(ref, gpus, lr)) == pytest.approx(expected)


def test_keep_timescale_at_the_sqrt_seed_is_0_0447(ref):
    wd = make_rule("weight_decay", "keep_timescale").predict(_at(ref, 160, 2e-4 * 20**0.5))
    assert f"{wd:.4f}" == "0.0447"


def test_keep_timescale_needs_the_points_lr(ref):
    with pytest.raises(ValueError, match="follows the trial's lr"):
        make_rule("weight_decay", "keep_timescale").predict(_at(ref, 160))


@pytest.mark.parametrize(
    ("knob", "rule", "gpus", "spg", "expected"),
    [
        ("beta2", "keep", 160, 1, 0.999),
        ("beta2", "half_life", 160, 1, 0.999**20),
        ("beta2", "half_life", 80, 2, 0.999**20),  # k is the batch ratio, not the GPU ratio
        ("beta2", "half_life", 8, 1, 0.999),
        ("beta2", "malladi", 160, 1, 1 - 20 * 0.001),
        ("beta1", "half_life", 160, 1, 0.9**20),
        ("beta1", "malladi", 40, 1, 1 - 5 * 0.1),  # k = 5: 5 x 0.1 < 1
    ],
)
def test_betas(ref, knob, rule, gpus, spg, expected):
    got = make_rule(knob, rule).predict(_at(ref, gpus, spg=spg))
    assert got == pytest.approx(expected)


def test_half_life_gives_0_9802_at_k_20(ref):
    assert f"{make_rule('beta2', 'half_life').predict(_at(ref, 160)):.4f}" == "0.9802"


@pytest.mark.parametrize(("knob", "gpus"), [("beta1", 80), ("beta1", 160), ("beta2", 8000)])
def test_malladi_refuses_where_k_times_one_minus_beta_reaches_one(ref, knob, gpus):
    # beta1 0.9 at k = 10 or 20; beta2 0.999 at k = 1000
    with pytest.raises(ValueError, match=r"malladi needs k x \(1 - beta"):
        make_rule(knob, "malladi").predict(_at(ref, gpus))


def test_a_beta_rule_without_a_reference_beta_says_so(bevformer_reference):
    with pytest.raises(ValueError, match="the reference has no beta2"):
        make_rule("beta2", "half_life").predict(_at(bevformer_reference, 160))


@pytest.mark.parametrize(
    ("params", "expected", "label"),
    [({}, 24, "keep"), ({"factor": 1.5}, 36, "extend(1.5)"), ({"factor": 1}, 24, "extend(1)")],
)
def test_epochs(ref, params, expected, label):
    rule = make_rule("epochs", "extend" if params else "keep", **params)
    assert (rule.predict(_at(ref, 160)), rule.label) == (expected, label)


@pytest.mark.parametrize("factor", [0.5, 0.99, 0.0])
def test_extend_refuses_a_factor_below_one(factor):
    with pytest.raises(ValueError, match="factor >= 1"):
        make_rule("epochs", "extend", factor=factor)


def test_extend_needs_its_factor():
    with pytest.raises(ValueError, match=r"needs factor, e.g. \{rule: extend, factor: 1.5\}"):
        make_rule("epochs", "extend")


def test_extend_rounds_half_epochs_up(ref):
    short = dataclasses.replace(ref, epochs=3)  # 3 x 1.5 = 4.5: 5 epochs, not Python's round 4
    assert make_rule("epochs", "extend", factor=1.5).predict(_at(short, 160)) == 5
