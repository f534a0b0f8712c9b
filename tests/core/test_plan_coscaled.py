"""The co-scaled knobs in the plan: BEVFormer-base at 160 GPUs with weight decay, beta2 and
epochs co-scaled, the couplings each trial runs with, and the bad input refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from scaleout.core.errors import SpaceError
from scaleout.core.plan import make_plan, plan_to_dict
from scaleout.core.space import parse_space
from scaleout.sweep.session import build_plan

REPO = Path(__file__).resolve().parents[2]
COSCALED = REPO / "search_spaces" / "bevformer_base_coscaled.yaml"


@pytest.fixture
def ref(bevformer_reference):
    return dataclasses.replace(bevformer_reference, weight_decay=0.01)


def plan_for(reference, gpus=160, **search):
    return make_plan(parse_space({"search": search}), reference, gpus, space_path="s.yaml")


@pytest.fixture(scope="module")
def coscaled():
    plan, trainer, _ = build_plan(COSCALED, 160)
    assert trainer is None  # the reference is embedded: no BEVFormer checkout needed
    return plan


def test_shipped_coscaled_space_at_160_gpus(coscaled):
    seeds = {s.origin: s.values for s in coscaled.seeds}
    # beta2 keeps its memory in samples: 0.999^20 for every trial, the reference seed aside
    assert coscaled.knobs["beta2"].predictions["half_life"] == pytest.approx(0.999**20)
    assert f"{seeds['sqrt']['beta2']:.4f}" == f"{seeds['linear']['beta2']:.4f}" == "0.9802"
    assert seeds["reference"]["beta2"] == 0.999
    # weight decay keeps AdamW's timescale at each seed's own lr: 0.01 x 20 / 4.47 and 0.01
    assert f"{seeds['sqrt']['weight_decay']:.4f}" == "0.0447"
    assert seeds["linear"]["weight_decay"] == pytest.approx(0.01)
    assert seeds["reference"]["weight_decay"] == 0.01
    wd = coscaled.knobs["weight_decay"].predictions
    assert wd["keep_timescale@sqrt"] == pytest.approx(0.0447, abs=5e-5)
    assert wd["keep_timescale@linear"] == pytest.approx(0.01)
    # the seeds run the reference's 24 epochs; trials may run up to 36
    assert {s["epochs"] for s in seeds.values()} == {24}
    rng = coscaled.ranges["epochs"]
    assert (rng.low, rng.high, rng.integer) == (24, 36, True)
    assert coscaled.follows == {
        "weight_decay": coscaled.follows["weight_decay"],
        "beta2": coscaled.follows["beta2"],
    }
    assert coscaled.counts_cost and coscaled.max_trial_epochs == 36


def test_coscaled_reference_betas_are_adamws_default_and_the_plan_says_so(coscaled):
    assert (coscaled.reference.beta2, coscaled.reference.weight_decay) == (0.999, 0.01)
    assert "default" in coscaled.reference_sources["beta2"]
    assert any("reference.beta2 0.999 is Adam/AdamW's default" in n for n in coscaled.notes)
    assert coscaled.reference.beta1 is None  # beta1 is not a knob here: left alone


def test_coscaled_plan_json(coscaled):
    d = plan_to_dict(coscaled)
    assert d["follows"] == {"weight_decay": "keep_timescale", "beta2": "half_life"}
    assert d["ranges"]["epochs"] == {"low": 24, "high": 36, "log": False, "type": "int"}
    assert d["budget"]["counts"] == "trial_equivalents"
    assert d["cost"]["max_trial_equivalents"] == 1.5
    assert d["reference"]["beta2"] == 0.999
    assert d["rules"]["epochs"] == {"keep": 24, "extend(1.5)": 36}


def test_a_sampled_trial_couples_weight_decay_to_its_own_lr(coscaled):
    p = coscaled.trial_params({"lr": 1e-3, "warmup_iters": 600, "min_lr_ratio": 1e-4, "epochs": 30})
    assert p["weight_decay"] == pytest.approx(0.01 * 20 * 2e-4 / 1e-3)  # 0.04
    assert p["beta2"] == pytest.approx(0.999**20)
    assert p["epochs"] == 30 and isinstance(p["epochs"], int)
    assert "beta1" not in p.values


def test_without_their_sections_the_knobs_are_off(ref):
    p = plan_for(ref)
    assert set(p.knobs) == {"lr", "warmup_iters", "min_lr_ratio"}
    assert not p.follows and not p.counts_cost
    assert set(p.trial_params({"lr": 1e-3, "warmup_iters": 600, "min_lr_ratio": 1e-4}).values) == {
        "lr",
        "warmup_iters",
        "min_lr_ratio",
    }


def test_several_weight_decay_rules_give_a_searched_range(ref):
    p = plan_for(ref, weight_decay={"rules": ["keep", "keep_timescale"], "widen": 1.0})
    rng = p.ranges["weight_decay"]
    assert (rng.low, rng.log) == (pytest.approx(0.01), True)
    assert rng.high == pytest.approx(0.01 * 20**0.5)
    seeds = {s.origin: s.values["weight_decay"] for s in p.seeds}
    assert seeds["sqrt"] == pytest.approx(0.01 * 20**0.5)  # seed_rule: the last rule
    # a sampled value is searched, not coupled
    assert p.trial_params({"lr": 1e-3, "warmup_iters": 600, "min_lr_ratio": 1e-4,
                           "weight_decay": 0.02})["weight_decay"] == 0.02  # fmt: skip


def test_beta_range_lies_on_the_memory_axis(ref):
    p = plan_for(ref, beta2={"rules": ["keep", "half_life"], "widen": 1.0})
    rng = p.ranges["beta2"]
    assert (rng.low, rng.high, rng.log) == (pytest.approx(0.999**20), pytest.approx(0.999), False)
    widened = plan_for(ref, beta2={"rules": ["keep", "half_life"], "widen": 2.0}).ranges["beta2"]
    assert widened.low == pytest.approx(1 - 2 * (1 - 0.999**20))
    assert widened.high == pytest.approx(1 - 0.001 / 2)


def test_beta1_given_uses_adams_default_and_half_life(ref):
    p = plan_for(ref, beta1={"rules": ["half_life"]})
    assert p.reference.beta1 == 0.9
    assert {s.origin: round(s.values["beta1"], 4) for s in p.seeds} == {
        "reference": 0.9,
        "sqrt": round(0.9**20, 4),
        "linear": round(0.9**20, 4),
    }


def test_fixed_weight_decay_runs_in_every_trial(ref):
    p = plan_for(ref, weight_decay={"fixed": 0.05})
    assert p.fixed["weight_decay"] == 0.05
    assert all(s.values["weight_decay"] == 0.05 for s in p.seeds)


def test_searched_samples_per_gpu_moves_k_for_each_trial(ref):
    p = plan_for(ref, samples_per_gpu={"range": [1, 4]}, beta2={"rules": ["half_life"]})
    assert p.ranges["samples_per_gpu"].to_dict() == {"low": 1, "high": 4, "log": False,
                                                     "type": "int"}  # fmt: skip
    # the lr range spans sqrt at k = 20 up to linear at k = 80, widened by 1.25
    assert p.ranges["lr"].low == pytest.approx(2e-4 * 20**0.5 / 1.25)
    assert p.ranges["lr"].high == pytest.approx(2e-4 * 80 * 1.25)
    # the warmup cap is 20% of the shortest trial: 160 x 4 per step, 44 steps x 24 epochs
    assert p.ranges["warmup_iters"].high == int(0.2 * 44 * 24)
    t = p.trial_params(
        {"lr": 1e-3, "warmup_iters": 100, "min_lr_ratio": 1e-4, "samples_per_gpu": 2}
    )
    assert (t.samples_per_gpu, t.global_batch) == (2, 320)
    assert "samples_per_gpu" not in t.values
    assert t["beta2"] == pytest.approx(0.999**40)  # the trial's own k = 40
    assert {s.values["samples_per_gpu"] for s in p.seeds} == {1}
    # the trial's record round-trips through the study
    assert type(t).from_dict(t.to_dict()) == t


@pytest.mark.parametrize(
    ("search", "key", "words"),
    [
        ({"beta2": {"rules": ["quarter_life"]}}, "search.beta2.rules.0", "half_life"),
        ({"weight_decay": {"rules": ["sqrt"]}}, "search.weight_decay.rules.0", "keep_timescale"),
        ({"beta1": {"rules": ["malladi"]}}, "search.beta1.rules", "malladi needs k x (1 - beta1)"),
        ({"epochs": {"rules": [{"rule": "extend", "factor": 0.5}]}}, "search.epochs.rules",
         "factor >= 1"),
        ({"epochs": {"range": [12, 36]}}, "search.epochs.range", "below the reference's 24"),
        ({"epochs": {}, "fixed": {"epochs": 12}}, "search.epochs", "search.fixed.epochs"),
        ({"samples_per_gpu": {"range": [1, 200]}}, "search.samples_per_gpu.range",
         "more than the 28130 training samples"),
        ({"beta2": {"range": [0.9, 1.2]}}, "search.beta2.range", "inside (0, 1)"),
    ],
)  # fmt: skip
def test_bad_coscaled_input_names_the_key(ref, search, key, words):
    with pytest.raises(SpaceError) as exc:
        make_plan(parse_space({"search": search}), ref, 160, space_path="s.yaml")
    assert exc.value.key.startswith(key), exc.value.key
    assert words in str(exc.value)


def test_weight_decay_without_a_reference_value_is_refused(bevformer_reference):
    with pytest.raises(SpaceError, match=r"give reference\.weight_decay"):
        plan_for(bevformer_reference, weight_decay={})
