"""`scaleout plan` as a user runs it: a real subprocess, exit codes, JSON, and no heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BEV = str(REPO / "search_spaces" / "bevformer_base.yaml")


def scaleout(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaleout", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=60,
    )


def test_plan_json_acceptance():
    r = scaleout("plan", "--gpus", "160", "--space", BEV, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["scale"]["k"] == 20
    assert d["scale"]["iters_per_epoch"]["target"] == 176
    assert d["scale"]["total_iters"] == {"reference": 84408, "target": 4224}
    assert round(d["rules"]["lr"]["sqrt"], 7) == 8.944e-4
    assert d["rules"]["lr"]["linear"] == pytest.approx(4e-3)


def test_plan_table_shows_sections():
    r = scaleout("plan", "--gpus", "160", "--space", BEV)
    assert r.returncode == 0, r.stderr
    for words in ("Scale", "Rules", "Search", "Seed trials", "Cost", "8.944e-04", "4,224"):
        assert words in r.stdout


def test_plan_imports_no_torch_mlflow_or_ray():
    code = (
        "import sys, contextlib, io\n"
        "from scaleout.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['plan', '--gpus', '160', '--space', {BEV!r}, '--json'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mlflow', 'ray'})\n"
        "print(','.join(heavy))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--gpus", "0", "--space", BEV], "--gpus must be positive"),
        (["--gpus", "many", "--space", BEV], "--gpus takes a whole number"),
        (["--space", BEV], "the following arguments are required: --gpus"),
        (["--gpus", "160", "--space", "nope.yaml"], "nope.yaml: no such file"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args, words):
    r = scaleout("plan", *args)
    assert r.returncode == 2
    assert words in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_space_file_exit_2_names_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  lr:\n    rules: [cubic]\n")
    r = scaleout("plan", "--gpus", "160", "--space", str(bad))
    assert r.returncode == 2
    assert f"{bad}: search.lr.rules.0.rule: must be 'reference', 'sqrt'" in r.stderr
    assert "Traceback" not in r.stderr


def test_help_lists_commands_and_an_example():
    r = scaleout("--help")
    assert r.returncode == 0
    assert "plan" in r.stdout and "scaleout plan --gpus 160" in r.stdout
    r = scaleout("plan", "--help")
    assert "example:" in r.stdout and "--json" in r.stdout


def test_reference_from_the_trainer_config_says_where_each_value_came_from(tmp_path):
    # Only the dataset size in the space file: lr, warmup, min_lr, batch and epochs come from
    # the (fixture) BEVFormer config, the reference GPU count from --reference-gpus.
    space = tmp_path / "space.yaml"
    space.write_text("reference:\n  train_samples: 28130\n")
    fixtures = REPO / "tests" / "fixtures" / "bevformer"
    r = scaleout(
        "plan",
        "--gpus",
        "160",
        "--space",
        str(space),
        "--json",
        "--trainer",
        "bevformer",
        "--repo",
        str(fixtures),
        "--config",
        "projects/configs/bevformer/bevformer_base.py",
        "--reference-gpus",
        "8",
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["reference"]["lr"] == 2e-4 and d["reference"]["warmup_iters"] == 500
    assert d["scale"]["total_iters"] == {"reference": 84408, "target": 4224}
    src = d["reference_sources"]
    assert src["gpus"] == "--reference-gpus"
    assert src["train_samples"] == f"{space}: reference.train_samples"
    assert src["lr"].endswith("bevformer_base.py: optimizer.lr")
    assert src["warmup_iters"].endswith("lr_config.warmup_iters")


def test_missing_reference_gpus_is_named(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("reference:\n  train_samples: 28130\n")
    r = scaleout(
        "plan",
        "--gpus",
        "160",
        "--space",
        str(space),
        "--trainer",
        "bevformer",
        "--repo",
        str(REPO / "tests" / "fixtures" / "bevformer"),
        "--config",
        "projects/configs/bevformer/bevformer_base.py",
    )
    assert r.returncode == 2
    assert "reference: missing gpus" in r.stderr and "--reference-gpus N" in r.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--poll-interval", "-1"], "--poll-interval must be in (0, 3600] s"),
        (["--poll-interval", "soon"], "--poll-interval takes seconds"),
        (["--parallel", "0"], "--parallel must be positive"),
        (["--executor", "kubernetes"], "invalid choice: 'kubernetes'"),
    ],
)
def test_sweep_flag_errors_exit_2_before_anything_starts(tmp_path, args, words):
    r = scaleout("sweep", "--gpus", "16", "--space", BEV, "--workspace", str(tmp_path), *args)
    assert r.returncode == 2
    assert words in r.stderr
    assert not any(tmp_path.iterdir())  # no sweep folder, no store


def test_bevformer_space_without_a_checkout_says_what_to_do(tmp_path):
    r = scaleout("sweep", "--gpus", "160", "--space", BEV, "--workspace", str(tmp_path))
    assert r.returncode == 2
    assert "bevformer_base.py: --config: the config file does not exist" in r.stderr
    assert "give --repo PATH" in r.stderr and "search_spaces/lr_scaling.yaml" in r.stderr
    assert not any(tmp_path.iterdir())


def test_the_headline_space_plans_240_steps_at_160_gpus():
    space = str(REPO / "search_spaces" / "lr_scaling.yaml")
    r = scaleout("plan", "--gpus", "160", "--space", space, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["scale"]["target_epochs"] == 24 and d["scale"]["epochs"] == 24
    assert d["scale"]["total_iters"]["target"] == 240
    assert d["ranges"]["warmup_iters"]["high"] <= 48  # the 20% cap of 240
