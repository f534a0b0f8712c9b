"""The noise lr rule reading b_noise from a probe file, the plan's critical-batch notes, and
the power rule's recorded `from` (docs/evidence.md)."""

from __future__ import annotations

import json
import math

import pytest

from scaleout.core.errors import SpaceError
from scaleout.core.plan import make_plan, plan_to_dict
from scaleout.core.probefile import SCHEMA, read_probe
from scaleout.core.rules import NoiseLr, PowerLr, make_rule
from scaleout.core.space import parse_space_text


def write_probe(path, b_simple=20.0, **extra):
    doc = {"schema": SCHEMA, "b_simple": b_simple, "band": [15.0, 28.0], "points": 12,
           "iterations": {"first": 5, "last": 60}, "global_batch": 8, **extra}  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def plan_of(tmp_path, rules, ref, gpus=160):
    space_file = tmp_path / "space.yaml"
    text = f"search:\n  lr:\n    rules: {rules}\n"
    space_file.write_text(text)
    return make_plan(parse_space_text(text, space_file), ref, gpus, space_path=space_file)


def test_the_noise_rule_takes_b_noise_from_the_probe(tmp_path, bevformer_reference):
    write_probe(tmp_path / "probe.json", 20.0)
    plan = plan_of(
        tmp_path, "[sqrt, linear, {rule: noise, probe: probe.json}]", bevformer_reference
    )
    preds = plan.predictions("lr")
    # lr x ((1 + 20/8) / (1 + 20/160))^0.5, alpha 0.5 by default
    assert preds["noise(B=20,a=0.5)"] == pytest.approx(2e-4 * math.sqrt(3.5 / 1.125))
    doc = plan_to_dict(plan)
    ns = doc["noise_scale"]
    assert ns["b_noise"] == 20.0 and ns["source"] == "probe.json"
    assert ns["critical_batch"] == 20.0 and ns["beyond_critical"] is True
    assert ns["data_over_minimum"] == {"target": 9.0, "reference": 1.4}
    assert ns["data_vs_reference"] == pytest.approx(9.0 / 1.4)
    assert ns["epochs_for_same_loss"] == pytest.approx(24 * 9.0 / 1.4)
    notes = " ".join(doc["notes"])
    assert "critical batch ~B_noise = 20 samples (measured, probe.json)" in notes
    assert "target global batch 160 is 8.0x beyond it" in notes
    assert "9.00x the minimum at the target, 1.40x at the reference" in notes
    assert "~154 epochs instead of 24" in notes


def test_a_target_within_the_critical_batch_says_so(tmp_path, bevformer_reference):
    write_probe(tmp_path / "probe.json", 500.0)
    plan = plan_of(
        tmp_path, "[sqrt, {rule: noise, probe: probe.json, alpha: 1}]", bevformer_reference
    )
    assert plan_to_dict(plan)["noise_scale"]["beyond_critical"] is False
    assert any("target global batch 160 is within it" in n for n in plan.notes)
    # A typed b_noise gives the same notes, naming where it came from.
    typed = plan_of(tmp_path, "[sqrt, {rule: noise, b_noise: 500, alpha: 1}]", bevformer_reference)
    assert typed.predictions("lr") == plan.predictions("lr")
    assert any("typed in the space file" in n for n in typed.notes)


def test_no_noise_rule_no_noise_scale(tmp_path, bevformer_reference):
    plan = plan_of(tmp_path, "[sqrt, linear]", bevformer_reference)
    assert "noise_scale" not in plan_to_dict(plan)
    assert not any("B_noise" in n for n in plan.notes)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        (json.dumps({"schema": "other/1", "b_simple": 3}), "schema 'other/1'"),
        (json.dumps({"schema": SCHEMA, "b_simple": -1}), "b_simple must be a positive number"),
    ],
)
def test_a_bad_probe_file_names_the_rule_and_the_file(
    tmp_path, bevformer_reference, content, problem
):
    if content is not None:
        (tmp_path / "probe.json").write_text(content)
    with pytest.raises(SpaceError, match=problem) as err:
        plan_of(tmp_path, "[sqrt, {rule: noise, probe: probe.json}]", bevformer_reference)
    assert err.value.key == "search.lr.rules.1"
    assert str(tmp_path / "probe.json") in str(err.value)


def test_the_noise_rule_needs_b_noise_or_a_probe():
    with pytest.raises(SpaceError, match="needs b_noise or probe"):
        parse_space_text("search:\n  lr:\n    rules: [{rule: noise, alpha: 0.5}]\n", "s.yaml")
    with pytest.raises(ValueError, match="b_noise must be positive"):
        make_rule("lr", "noise", b_noise=-3)
    assert make_rule("lr", "noise", b_noise=64).label == "noise(B=64,a=0.5)"


def test_the_power_rule_records_where_alpha_came_from(tmp_path, bevformer_reference):
    text = "search:\n  lr:\n    rules: [sqrt, {rule: power, alpha: 0.56, from: [a-16g, a-80g]}]\n"
    space = parse_space_text(text, "s.yaml")
    rule = space.search.lr.lr_rules()[1]
    assert rule == PowerLr(alpha=0.56, from_=("a-16g", "a-80g"))
    plan = make_plan(space, bevformer_reference, 160)
    assert plan.predictions("lr")["power(0.56)"] == pytest.approx(2e-4 * 20**0.56)
    with pytest.raises(SpaceError, match="rule 'sqrt' takes no from"):
        parse_space_text("search:\n  lr:\n    rules: [{rule: sqrt, from: [a]}]\n", "s.yaml")
    with pytest.raises(SpaceError, match=r"search\.lr\.rules\.0\.from_: unknown key"):
        parse_space_text(
            "search:\n  lr:\n    rules: [{rule: power, alpha: 1, from_: [a]}]\n", "s.yaml"
        )


def test_read_probe(tmp_path):
    facts = read_probe(write_probe(tmp_path / "p.json", 12.5))
    assert (facts.b_simple, facts.band, facts.points, facts.last_iter) == (
        12.5,
        (15.0, 28.0),
        12,
        60,
    )
    assert NoiseLr(probe=str(tmp_path / "p.json")).resolve("<space>").b_noise == 12.5
