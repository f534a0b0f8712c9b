"""Table-driven tests of the pure scaling rules and their registry (docs/search-space.md)."""

from __future__ import annotations

import math

import pytest

from scaleout.core.knobs import PlanContext, predict_warmup
from scaleout.core.rules import (
    RULES,
    Range,
    RuleContext,
    iters_per_epoch,
    make_rule,
    scale,
    span,
    warmup_range,
)


def _warmup(rule, ref, sc):
    return predict_warmup(rule, PlanContext(ref, sc, "<space>", ()))


def _min_lr(rule, ref, lr):
    return make_rule("min_lr_ratio", rule).predict(RuleContext(ref, scale(ref, 160, 1), lr))


@pytest.mark.parametrize(
    ("samples", "gpus", "spg", "expected"),
    [
        (28130, 8, 1, 3517),  # BEVFormer-base on nuScenes at 8 GPUs
        (28130, 160, 1, 176),  # ... at 160 GPUs
        (28130, 80, 1, 352),
        (28130, 8, 2, 1759),  # each rank 3517 samples, 2 per step -> 1759 (last batch partial)
        (1600, 160, 1, 10),  # divides exactly
        (10, 160, 1, 1),  # more GPUs than samples: one padded step
    ],
)
def test_iters_per_epoch(samples, gpus, spg, expected):
    assert iters_per_epoch(samples, gpus, spg) == expected


def test_scale_bevformer_160(bevformer_reference):
    sc = scale(bevformer_reference, 160, 1)
    assert sc.k == 20
    assert (sc.reference_iters_per_epoch, sc.target_iters_per_epoch) == (3517, 176)
    assert (sc.reference_total_iters, sc.target_total_iters) == (84408, 4224)


def test_k_uses_global_batch_not_gpu_count(bevformer_reference):
    # 80 GPUs x 2 samples is the same global batch as 160 x 1 (docs/search-space.md).
    assert scale(bevformer_reference, 80, 2).k == scale(bevformer_reference, 160, 1).k == 20


@pytest.mark.parametrize(
    ("rule", "gpus", "expected"),
    [
        (make_rule("lr", "reference"), 160, 2e-4),
        (make_rule("lr", "sqrt"), 160, 2e-4 * math.sqrt(20)),
        (make_rule("lr", "linear"), 160, 4e-3),
        (make_rule("lr", "linear"), 80, 2e-3),
        (make_rule("lr", "sqrt"), 8, 2e-4),
        (
            make_rule("lr", "power", alpha=0.54),
            160,
            2e-4 * 20**0.54,
        ),  # the published 160-GPU optimum ~1e-3
        (make_rule("lr", "power", alpha=1.0), 160, 4e-3),
        # noise rule: (1 + Bn/B0) / (1 + Bn/B1) with Bn = 64, B0 = 8, B1 = 160, alpha 0.5
        (make_rule("lr", "noise", alpha=0.5, b_noise=64), 160, 2e-4 * math.sqrt(9 / 1.4)),
        # a tiny noise scale means large batches do not help: lr barely moves
        (make_rule("lr", "noise", alpha=0.5, b_noise=1e-9), 160, 2e-4),
    ],
)
def test_lr_rules(bevformer_reference, rule, gpus, expected):
    sc = scale(bevformer_reference, gpus, 1)
    assert rule.predict(RuleContext(bevformer_reference, sc)) == pytest.approx(expected, rel=1e-9)


def test_sqrt_at_160_is_the_published_figure(bevformer_reference):
    sc = scale(bevformer_reference, 160, 1)
    assert (
        f"{make_rule('lr', 'sqrt').predict(RuleContext(bevformer_reference, sc)):.3e}"
        == "8.944e-04"
    )
    assert pytest.approx(1e-3, rel=0.03) == 2e-4 * 20**0.54


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("keep_iters", 500), ("keep_epochs", 25), ("keep_fraction", 25)],
)
def test_warmup_rules(bevformer_reference, rule, expected):
    assert _warmup(rule, bevformer_reference, scale(bevformer_reference, 160, 1)) == expected


def test_warmup_is_at_least_one_iteration(bevformer_reference):
    sc = scale(bevformer_reference, 28130, 1)  # one iteration per epoch
    assert _warmup("keep_epochs", bevformer_reference, sc) == 1


@pytest.mark.parametrize(
    ("rule", "lr", "expected"),
    [
        ("keep_ratio", 4e-3, 1e-3),
        ("keep_floor", 4e-3, 5e-5),  # 2e-7 / 4e-3
        ("keep_floor", 1e-3, 2e-4),
        ("keep_floor", 1e-4, 1e-3),  # never above the reference ratio
    ],
)
def test_min_lr_rules(bevformer_reference, rule, lr, expected):
    assert _min_lr(rule, bevformer_reference, lr) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["cubic", ""])
def test_unknown_rules_raise(bevformer_reference, name):
    sc = scale(bevformer_reference, 160, 1)
    with pytest.raises(ValueError, match="unknown"):
        make_rule("lr", name)
    with pytest.raises(ValueError, match="unknown"):
        _warmup(name, bevformer_reference, sc)
    with pytest.raises(ValueError, match="unknown"):
        _min_lr(name, bevformer_reference, 1e-3)


def test_registry_holds_every_rule_and_checks_parameters():
    assert set(RULES) == {"lr", "warmup_iters", "min_lr_ratio", "weight_decay", "beta1", "beta2",
                          "epochs"}  # fmt: skip
    assert tuple(RULES["lr"]) == ("reference", "sqrt", "linear", "power", "noise")
    with pytest.raises(ValueError, match=r"rule 'power' needs alpha, e.g. \{rule: power"):
        make_rule("lr", "power")
    with pytest.raises(ValueError, match="rule 'sqrt' takes no alpha"):
        make_rule("lr", "sqrt", alpha=0.5)
    assert make_rule("lr", "noise", b_noise=64, alpha=0.5).label == "noise(B=64,a=0.5)"


@pytest.mark.parametrize(
    ("values", "widen", "log", "expected"),
    [
        ([8.944e-4, 4e-3], 1.0, True, Range(8.944e-4, 4e-3)),
        ([8.944e-4, 4e-3], 1.25, True, Range(8.944e-4 / 1.25, 5e-3)),
        ([1.0], 2.0, True, Range(0.5, 2.0)),
        ([2.0, 4.0], 2.0, False, Range(1.0, 5.0, log=False)),
    ],
)
def test_span(values, widen, log, expected):
    got = span(values, widen, log=log)
    assert (got.low, got.high, got.log) == pytest.approx(
        (expected.low, expected.high, expected.log)
    )


def test_span_rejects_narrowing():
    with pytest.raises(ValueError):
        span([1.0, 2.0], 0.5)


@pytest.mark.parametrize(
    ("preds", "widen", "cap", "expected"),
    [
        ([500, 25], 1.5, 844, (16, 750)),
        ([500, 25], 2.0, 844, (12, 844)),  # capped at 20% of 4,224
        ([500], 1.0, 844, (500, 500)),
    ],
)
def test_warmup_range(preds, widen, cap, expected):
    rng = warmup_range(preds, widen, cap)
    assert (rng.low, rng.high, rng.integer) == (*expected, True)


def test_warmup_range_cap_leaves_no_room():
    with pytest.raises(ValueError, match="below the smallest warmup"):
        warmup_range([500, 25], 1.5, 10)


def test_every_registered_rule_is_documented():
    from pathlib import Path

    from scaleout.core.knobs import KNOBS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "search-space.md").read_text()
    for knob_name, rules in RULES.items():
        assert f"  {knob_name}:" in doc, knob_name
        for name in rules:
            assert name in doc, (knob_name, name)
    assert set(RULES) <= set(KNOBS)
