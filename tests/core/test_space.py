"""Search-space files: shipped ones load; bad input names the file, the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaleout.core.errors import SpaceError
from scaleout.core.space import load_space, parse_space, resolve_reference

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


@pytest.mark.parametrize("name", ["lr_scaling.yaml", "bevformer_base.yaml"])
def test_shipped_spaces_load(name):
    space = load_space(SPACES / name)
    assert space.objective.metric == "NDS"
    assert space.objective.direction == "maximize"
    assert [r.name for r in space.search.lr.lr_rules()] == ["sqrt", "linear"]


def test_defaults_are_the_headline_sweep():
    space = parse_space({})
    assert space.seeds == ["reference", "sqrt", "linear"]
    assert space.search.warmup_iters.cap_fraction == 0.2
    assert space.sampler.type == "tpe"
    assert space.budget.trials == 12


def test_rule_with_parameters():
    space = parse_space({"search": {"lr": {"rules": ["sqrt", {"rule": "power", "alpha": 0.54}]}}})
    assert [r.label for r in space.search.lr.lr_rules()] == ["sqrt", "power(0.54)"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


BAD = [
    # (yaml text, key path in the message, words that say what is allowed)
    ("serch: {}\n", "serch", "allowed here: version, description, trainer"),
    ("search:\n  lr: {widen: 1.2, wide: 2}\n", "search.lr.wide", "allowed here: rules, widen"),
    ("search:\n  lr:\n    rules: [cubic]\n", "search.lr.rules.0.rule", "'sqrt', 'linear', 'power'"),
    ("search:\n  lr:\n    rules: [{rule: power}]\n", "search.lr.rules.0", "needs alpha"),
    ("search:\n  lr:\n    rules: []\n", "search.lr.rules", "at least 1"),
    ("search:\n  lr:\n    widen: 0.5\n", "search.lr.widen", "greater than or equal to 1"),
    ("search:\n  lr:\n    widen: lots\n", "search.lr.widen", "valid number"),
    ("search:\n  lr:\n    range: [1.0e-3, 1.0e-4]\n", "search.lr.range", "inverted or empty"),
    ("search:\n  lr:\n    range: [1.0e-3, 1.0e-3]\n", "search.lr.range", "inverted or empty"),
    ("search:\n  lr:\n    range: [0, 1.0e-3]\n", "search.lr.range.0", "greater than 0"),
    (
        "search:\n  warmup_iters:\n    rules: [keep_days]\n",
        "search.warmup_iters.rules.0",
        "'keep_iters', 'keep_epochs' or 'keep_fraction'",
    ),
    (
        "search:\n  warmup_iters:\n    cap_fraction: 1.5\n",
        "search.warmup_iters.cap_fraction",
        "less than or equal to 1",
    ),
    (
        "search:\n  min_lr_ratio:\n    rules: [keep_all]\n",
        "search.min_lr_ratio.rules.0",
        "'keep_ratio' or 'keep_floor'",
    ),
    ("budget: {trials: 0}\n", "budget.trials", "greater than 0"),
    ("budget: {gpu_hours: 0}\n", "budget.gpu_hours", "greater than 0"),
    ("budget: {trials: null}\n", "budget", "give trials, gpu_hours or both"),
    ("sampler: {type: bayes}\n", "sampler.type", "'tpe', 'random', 'qmc', 'grid', 'cmaes' or 'gp'"),
    ("pruner: {type: sometimes}\n", "pruner.type", "'none', 'median', 'asha' or 'hyperband'"),
    ("objective: {direction: up}\n", "objective.direction", "'maximize' or 'minimize'"),
    ("reference: {gpus: -8}\n", "reference.gpus", "greater than 0"),
    ("reference: {gpus: eight}\n", "reference.gpus", "valid integer"),
    ("seeds: [reference, cubic]\n", "seeds.1", "'reference', 'sqrt' or 'linear'"),
    ("version: 2\n", "version", "must be 1"),
    ("- just\n- a list\n", None, "must be a YAML mapping"),
]


@pytest.mark.parametrize(("text", "key", "allowed"), BAD)
def test_bad_space_names_file_key_and_allowed(tmp_path, text, key, allowed):
    path = _write(tmp_path, text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    msg = str(info.value)
    assert msg.startswith(str(path))
    if key is not None:
        assert f": {key}: " in msg
    assert allowed in msg
    assert info.value.exit_code == 2


def test_missing_file(tmp_path):
    with pytest.raises(SpaceError, match="no such file") as info:
        load_space(tmp_path / "nope.yaml")
    assert "search_spaces/" in str(info.value)


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = _write(tmp_path, "search:\n  lr: [1, 2\n  warmup: {\n")
    with pytest.raises(SpaceError, match=r"YAML syntax error at line \d+, column \d+"):
        load_space(path)


def test_empty_file_is_all_defaults(tmp_path):
    assert load_space(_write(tmp_path, "")) == parse_space({})


def test_reference_from_space_wins_over_trainer_and_sources_are_named(tmp_path):
    space = parse_space({"reference": {"lr": 1e-4, "gpus": 8}})
    trainer = {
        "gpus": 4,
        "samples_per_gpu": 2,
        "lr": 3e-4,
        "warmup_iters": 100,
        "warmup_ratio": 0.5,
        "min_lr_ratio": 1e-2,
        "epochs": 6,
        "train_samples": 960,
        "_sources": {
            "lr": "cfg.py: optim_wrapper.optimizer.lr",
            "epochs": "cfg.py: train_cfg.max_epochs",
        },
    }
    ref, sources = resolve_reference(space, trainer, "s.yaml")
    assert (ref.lr, ref.gpus, ref.samples_per_gpu, ref.epochs) == (1e-4, 8, 2, 6)
    assert sources["lr"] == "s.yaml: reference.lr"
    assert sources["epochs"] == "cfg.py: train_cfg.max_epochs"
    assert sources["warmup_iters"] == "trainer config"


def test_reference_missing_values_are_listed():
    with pytest.raises(SpaceError, match=r"missing .*train_samples") as info:
        resolve_reference(parse_space({"reference": {"lr": 1e-4}}), {}, "s.yaml")
    assert "s.yaml: reference:" in str(info.value)


def test_reference_metric_merges_key_by_key_and_says_where_each_came_from():
    space = parse_space({"reference": {"metric": {"NDS": 0.5}}}, "s.yaml")
    trainer = {
        "gpus": 8, "samples_per_gpu": 1, "lr": 2e-4, "warmup_iters": 500, "warmup_ratio": 0.5,
        "min_lr_ratio": 1e-3, "epochs": 24, "train_samples": 100,
        "metric": {"NDS": 0.4, "mAP": 0.3},
        "_sources": {"metric": "cfg.py: reference.metric"},
    }  # fmt: skip
    ref, sources = resolve_reference(space, trainer, "s.yaml")
    assert ref.metric == {"NDS": 0.5, "mAP": 0.3}
    assert sources["metric.NDS"] == "s.yaml: reference.metric.NDS"
    assert sources["metric.mAP"] == "cfg.py: reference.metric.mAP"


def test_reference_metric_must_be_numbers(tmp_path):
    with pytest.raises(SpaceError, match=r"reference\.metric\.NDS"):
        load_space(_write(tmp_path, "reference: {metric: {NDS: high}}\n"))


def test_the_missing_file_hint_lists_every_shipped_space(tmp_path):
    with pytest.raises(SpaceError) as info:
        load_space(tmp_path / "nope.yaml")
    for shipped in sorted(SPACES.glob("*.yaml")):
        assert shipped.name in str(info.value)
