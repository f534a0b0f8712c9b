"""The planner: acceptance figures for BEVFormer-base at 160 GPUs, coupling, cost and budget."""

from __future__ import annotations

import pytest

from scaleout.core.errors import SpaceError, UsageError
from scaleout.core.plan import make_plan, plan_to_dict
from scaleout.core.space import parse_space


def plan_for(reference, gpus=160, **space):
    return make_plan(parse_space(space), reference, gpus, space_path="s.yaml")


def test_bevformer_160_acceptance(bevformer_reference):
    d = plan_to_dict(plan_for(bevformer_reference))
    assert d["scale"]["k"] == 20
    assert d["scale"]["iters_per_epoch"] == {"reference": 3517, "target": 176}
    assert d["scale"]["total_iters"] == {"reference": 84408, "target": 4224}
    assert f"{d['rules']['lr']['sqrt']:.3e}" == "8.944e-04"
    assert d["rules"]["lr"]["linear"] == pytest.approx(4e-3)
    lr, wu, mr = (d["ranges"][k] for k in ("lr", "warmup_iters", "min_lr_ratio"))
    assert lr["low"] <= 1e-3 <= lr["high"]  # the published 160-GPU optimum
    assert wu["low"] <= 500 and 600 <= wu["high"] <= 0.2 * 4224
    assert mr["low"] <= 1e-4 <= mr["high"]
    assert [s["origin"] for s in d["seed_trials"]] == ["reference", "sqrt", "linear"]


def test_seed_trials_follow_the_rules(bevformer_reference):
    seeds = {s.origin: s for s in plan_for(bevformer_reference).seeds}
    assert seeds["reference"].params() == {"lr": 2e-4, "warmup_iters": 500, "min_lr_ratio": 1e-3}
    assert seeds["sqrt"].values["warmup_iters"] == 500  # seed_rule keep_iters
    # keep_floor: lr x min_lr_ratio equals the reference floor 2e-7
    for origin in ("sqrt", "linear"):
        assert seeds[origin].values["lr"] * seeds[origin].values["min_lr_ratio"] == pytest.approx(
            2e-7
        )


def test_seed_warmup_is_clamped_into_the_capped_range(bevformer_reference):
    # At 1,600 GPUs a trial has 18 x 24 = 432 iterations; 20% is 86, so the 500 of keep_iters
    # cannot be used as is.
    p = plan_for(bevformer_reference, gpus=1600)
    assert p.ranges["warmup_iters"].high == 86
    assert all(s.values["warmup_iters"] <= 86 for s in p.seeds if s.origin != "reference")


def _ratio(plan, lr, ratio, seed=None):
    sampled = {"lr": lr, "warmup_iters": 100, "min_lr_ratio": ratio}
    return plan.trial_params(sampled, seed)["min_lr_ratio"]


def test_floor_cap_couples_min_lr_to_the_sampled_lr(bevformer_reference):
    p = plan_for(bevformer_reference)
    assert _ratio(p, 4e-3, 2e-4) == pytest.approx(5e-5)
    assert _ratio(p, 7.2e-4, 1e-4) == 1e-4
    # a seed runs exactly as planned, uncoupled
    seed = {"lr": 4e-3, "warmup_iters": 500, "min_lr_ratio": 2e-4}
    assert _ratio(p, 4e-3, 2e-4, seed) == 2e-4
    free = plan_for(
        bevformer_reference, search={"min_lr_ratio": {"floor_at_most_reference": False}}
    )
    assert _ratio(free, 4e-3, 2e-4) == 2e-4
    assert free.ranges["min_lr_ratio"].high == pytest.approx(2e-3)


def test_decay_to_zero_extends_the_range(bevformer_reference):
    p = plan_for(
        bevformer_reference, search={"min_lr_ratio": {"decay_to_zero": True, "zero_ratio": 1e-6}}
    )
    assert p.ranges["min_lr_ratio"].low == 1e-6


def test_fixed_values_leave_the_search(bevformer_reference):
    p = plan_for(
        bevformer_reference,
        search={"warmup_iters": {"fixed": 600}, "fixed": {"weight_decay": 0.05}},
    )
    assert "warmup_iters" not in p.ranges
    assert p.fixed == {"warmup_iters": 600, "weight_decay": 0.05}
    assert {s.values["warmup_iters"] for s in p.seeds} == {600}


def test_fixed_lr_dedupes_seed_trials(bevformer_reference):
    p = plan_for(bevformer_reference, search={"lr": {"fixed": 1e-3}})
    assert "lr" not in p.ranges
    assert len({s.values["lr"] for s in p.seeds}) == 1
    assert len(p.seeds) == 2  # reference (its own warmup/min_lr) and one rules point


def test_explicit_range_overrides_rules(bevformer_reference):
    p = plan_for(bevformer_reference, search={"lr": {"range": [5e-4, 2e-3]}})
    assert (p.ranges["lr"].low, p.ranges["lr"].high) == (5e-4, 2e-3)


def test_cost_from_wall_time(bevformer_reference):
    d = plan_to_dict(plan_for(bevformer_reference))
    assert d["cost"]["gpu_hours_per_trial"] == pytest.approx(44.4 * 8)
    assert d["cost"]["wall_time_h_per_trial"] == pytest.approx(44.4 * 8 / 160)
    assert d["cost"]["gpu_hours_total"] == pytest.approx(44.4 * 8 * 12)


def test_pinned_epochs_set_the_trial_length_cap_and_cost(bevformer_reference):
    """search.fixed.epochs changes what a trial runs: its iterations, warmup cap and cost."""
    d = plan_to_dict(plan_for(bevformer_reference, search={"fixed": {"epochs": 48}}))
    assert d["scale"]["epochs"] == 24 and d["scale"]["target_epochs"] == 48
    assert d["scale"]["total_iters"] == {"reference": 84408, "target": 8448}
    assert d["ranges"]["warmup_iters"]["high"] <= 0.2 * 8448
    assert d["cost"]["iters_per_trial"] == 8448
    assert d["cost"]["gpu_hours_per_trial"] == pytest.approx(44.4 * 8 * 2)
    assert d["fixed"]["epochs"] == 48
    default = plan_to_dict(plan_for(bevformer_reference))["scale"]
    assert default["target_epochs"] == default["epochs"] == 24


@pytest.mark.parametrize("epochs", [0, -3, 2.5, True, "ten"])
def test_pinned_epochs_must_be_a_positive_whole_number(bevformer_reference, epochs):
    with pytest.raises(SpaceError, match=r"search\.fixed.*epochs must be a positive whole"):
        plan_for(bevformer_reference, search={"fixed": {"epochs": epochs}})


def test_cost_unknown_without_timing(bevformer_reference):
    from dataclasses import replace

    d = plan_to_dict(plan_for(replace(bevformer_reference, wall_time_h=None)))
    assert d["cost"]["gpu_hours_per_trial"] is None
    assert d["cost"]["iters_per_trial"] == 4224


def test_gpu_hour_budget_limits_trials(bevformer_reference):
    p = plan_for(bevformer_reference, budget={"trials": 20, "gpu_hours": 1500})
    assert p.trials == 4  # 1500 // 355.2


@pytest.mark.parametrize(
    ("space", "key", "words"),
    [
        (
            {"search": {"warmup_iters": {"cap_fraction": 0.001}}},
            "search.warmup_iters.cap_fraction",
            "leaves no room",
        ),
        ({"budget": {"gpu_hours": 100}}, "budget.gpu_hours", "buys no trial"),
        (
            {"search": {"warmup_iters": {"range": [5000, 6000]}}},
            "search.warmup_iters.range",
            "only 4224 iterations",
        ),
    ],
)
def test_inputs_that_leave_nothing_to_search(bevformer_reference, space, key, words):
    with pytest.raises(SpaceError) as info:
        plan_for(bevformer_reference, **space)
    assert f"s.yaml: {key}: " in str(info.value)
    assert words in str(info.value)


def test_gpu_hour_budget_needs_a_cost_basis(bevformer_reference):
    from dataclasses import replace

    with pytest.raises(SpaceError, match="needs a cost basis"):
        plan_for(replace(bevformer_reference, wall_time_h=None), budget={"gpu_hours": 10})


@pytest.mark.parametrize("gpus", [0, -8])
def test_non_positive_gpus(bevformer_reference, gpus):
    with pytest.raises(UsageError, match="--gpus must be a positive"):
        plan_for(bevformer_reference, gpus=gpus)


def test_trial_params_carry_fixed_values_and_the_batch(bevformer_reference):
    p = plan_for(bevformer_reference, search={"fixed": {"seed": 3, "epochs": 12}})
    tp = p.trial_params({"lr": 1e-3, "warmup_iters": 600.0, "min_lr_ratio": 1e-4})
    assert tp.values == {
        "seed": 3,
        "epochs": 12,
        "lr": 1e-3,
        "warmup_iters": 600,
        "min_lr_ratio": 1e-4,
    }
    assert isinstance(tp["warmup_iters"], int)
    assert (tp.gpus, tp.samples_per_gpu, tp.global_batch) == (160, 1, 160)
    assert type(tp).from_dict(tp.to_dict()) == tp


def test_json_keys_are_stable(bevformer_reference):
    d = plan_to_dict(plan_for(bevformer_reference))
    assert list(d) == [
        "schema",
        "space_file",
        "reference",
        "reference_sources",
        "target",
        "scale",
        "rules",
        "ranges",
        "fixed",
        "min_lr_floor_cap",
        "seed_trials",
        "objective",
        "budget",
        "cost",
        "sampler",
        "pruner",
        "retries",
        "trainer",
        "notes",
        "reference_conflicts",
        "evaluation",
        "follows",
    ]
    assert d["schema"] == "scaleout.plan/1"
