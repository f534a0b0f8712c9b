"""`scaleout fit` over real sweeps (the sweep command, its Optuna study and MLflow store) of a
command trainer whose optimum is known: lr_opt(B) = 0.01 x B^0.6 (toy_lr_trainer.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # four small sweeps, ~1 min on 2 cores
TOY = Path(__file__).with_name("toy_lr_trainer.py")


def write_space(root: Path, name: str, lr: float) -> Path:
    argv = [sys.executable, str(TOY), "--lr", "{lr}", "--global-batch", "{global_batch}",
            "--epochs", "{epochs}", "--work-dir", "{work_dir}"]  # fmt: skip
    profile = root / f"{name}-profile.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "name": "toy-lr",
                "argv": argv,
                "resume_argv": ["--resume"],
                "checkpoint": "ckpt.txt",
                "reference": {
                    "gpus": 1,
                    "samples_per_gpu": 1,
                    "lr": lr,
                    "warmup_iters": 2,
                    "warmup_ratio": 0.333,
                    "min_lr_ratio": 0.001,
                    "epochs": 2,
                    "train_samples": 64,
                },
                "metrics": {"files": ["metrics.jsonl"], "format": "jsonl", "objective": "NDS"},
            }
        )
    )
    space = root / f"{name}.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "trainer": {"name": "command", "profile": str(profile)},
                "search": {"warmup_iters": {"fixed": 2}, "min_lr_ratio": {"fixed": 0.001}},
                "seeds": ["reference", "sqrt", "linear"],
                "budget": {"trials": 6},
                "sampler": {"type": "random", "seed": 0},
            }
        )
    )
    return space


def scaleout(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "scaleout", *args], capture_output=True, text=True, timeout=300,
        cwd=cwd, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    ws = root / "ws"
    space = write_space(root, "toy", 0.01)
    other = write_space(root, "other", 0.02)
    # A command trainer runs one process per GPU: --procs-per-trial equal to --gpus.
    for name, sp, gpus in (("a", space, 2), ("b", space, 4), ("c", other, 4), ("d", space, 2)):
        r = scaleout("sweep", "--gpus", str(gpus), "--procs-per-trial", str(gpus), "--space",
                     str(sp), "--name", name, "--workspace", str(ws), "--poll-interval", "0.2",
                     "--parallel", "2", cwd=root)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
    return root, ws


def test_fit_recovers_the_exponent(sweeps):
    root, ws = sweeps
    plot = root / "fit.png"
    r = scaleout("fit", "a", "b", "--gpus", "32", "--workspace", str(ws), "--json",
                 "--plot", str(plot), cwd=root)  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "scaleout.fit/1"
    assert [s["global_batch"] for s in doc["sweeps"]] == [2, 4]
    for s in doc["sweeps"]:
        assert len(s["top_trials"]) == 3 and s["completed_trials"] == 6
        true = 0.01 * s["global_batch"] ** 0.6
        lo, hi = s["lr_opt_interval"]
        assert lo < true < hi, s
    power = doc["power"]
    assert 0.3 < power["alpha"] < 0.9
    assert power["interval"][0] < 0.6 < power["interval"][1]
    rule = doc["rule"]
    assert (rule["rule"], rule["from"]) == ("power", ["a", "b"])
    assert rule["alpha"] == pytest.approx(power["alpha"], rel=1e-2)
    assert doc["rule_yaml"] == f"{{rule: power, alpha: {rule['alpha']:g}, from: [a, b]}}"
    assert doc["surge"]["fitted"] is False and "no peak" in doc["surge"]["why"]
    t = doc["target"]
    assert t["global_batch"] == 32 and t["k"] == 32
    assert t["power"]["interval"][0] < t["power"]["lr"] < t["power"]["interval"][1]
    assert t["power"]["lr"] == pytest.approx(0.01 * 32 ** power["alpha"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The rule it prints is one a space file takes.
    from scaleout.core.space import parse_space_text

    space = parse_space_text(f"search:\n  lr:\n    rules: [sqrt, {doc['rule_yaml']}]\n", "s.yaml")
    assert space.search.lr.lr_rules()[1].from_ == ("a", "b")


def test_fit_prints_a_summary(sweeps):
    root, ws = sweeps
    r = scaleout("fit", "a", "b", "--workspace", str(ws), cwd=root)
    assert r.returncode == 0, r.stderr
    assert "rule for the space file: {rule: power, alpha: " in r.stdout
    assert "surge: not fitted" in r.stdout
    assert "predicted at" not in r.stdout  # no --gpus, no prediction


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a", "c"], "come from different space files"),
        (["a", "d"], "one global batch only (2)"),
        (["a"], "one global batch only (2)"),
        (["a", "a"], "named twice"),
    ],
)
def test_bad_sweeps_are_refused_and_nothing_is_written(sweeps, names, message):
    root, ws = sweeps
    plot = root / f"bad-{'-'.join(names)}.png"
    r = scaleout("fit", *names, "--workspace", str(ws), "--plot", str(plot), cwd=root)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not plot.exists()
