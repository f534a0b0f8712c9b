"""`scaleout plan` on the co-scaled BEVFormer space, and its bad input, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COSCALED = REPO / "search_spaces" / "bevformer_base_coscaled.yaml"


def scaleout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaleout", *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=60,
    )


def test_plan_shows_each_knobs_rules_range_and_seeds():
    r = scaleout("plan", "--gpus", "160", "--space", str(COSCALED))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for words in (
        "follows keep_timescale",
        "follows half_life",
        "keep_timescale@sqrt",
        "0.9802",  # beta2 = 0.999^20
        "4.472e-02",  # the sqrt seed's weight decay, 0.01 x 20 / 4.47
        "extend(1.5)",
        "12 trial-equivalents",
        "Adam's default beta2",
    ):
        assert words in out, words


def test_plan_json_gives_the_seeds_coscaled_values():
    r = scaleout("plan", "--gpus", "160", "--space", str(COSCALED), "--json")
    assert r.returncode == 0, r.stderr
    seeds = {s["origin"]: s for s in json.loads(r.stdout)["seed_trials"]}
    assert round(seeds["sqrt"]["beta2"], 4) == round(seeds["linear"]["beta2"], 4) == 0.9802
    assert round(seeds["sqrt"]["weight_decay"], 4) == 0.0447
    assert seeds["linear"]["weight_decay"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("search", "words"),
    [
        ({"beta2": {"rules": ["quarter_life"]}}, ("search.beta2.rules.0", "half_life")),
        ({"beta1": {"rules": ["malladi"]}},
         ("search.beta1.rules", "malladi needs k x (1 - beta1) < 1")),
        ({"epochs": {"rules": ["keep", {"rule": "extend", "factor": 0.8}]}},
         ("search.epochs.rules", "factor >= 1")),
        ({"samples_per_gpu": {"range": [1, 400]}}, ("search.samples_per_gpu.range",)),
    ],
)  # fmt: skip
def test_bad_coscaled_input_exits_2_naming_the_key(tmp_path, search, words):
    data = yaml.safe_load(COSCALED.read_text())
    data["search"].update(search)
    space = tmp_path / "s.yaml"
    space.write_text(yaml.safe_dump(data))
    r = scaleout("plan", "--gpus", "160", "--space", str(space))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
