"""A real minibev sweep with the co-scaled knobs on: each trial's weight decay follows its
own lr and batch, beta2 its batch, its epochs and batch reach the trainer's config, and the
budget counts trial-equivalents (real subprocess trainer, real Optuna and MLflow stores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def scaleout(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaleout", *args], text=True, capture_output=True, timeout=timeout
    )


def test_minibev_sweep_runs_the_coscaled_knobs(tmp_path: Path):
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "trainer": {"name": "minibev", "preset": "tiny"},
                "search": {
                    "weight_decay": {"rules": ["keep_timescale"]},
                    "beta2": {"rules": ["half_life"]},
                    "epochs": {"rules": ["keep", {"rule": "extend", "factor": 1.5}]},
                    "samples_per_gpu": {"range": [1, 2]},
                },
                "seeds": ["sqrt"],
                "budget": {"trials": 2},  # trial-equivalents: the seed (1) and one more
                "pruner": {"type": "none"},
            }
        )
    )
    ws = tmp_path / "ws"
    common = ["--workspace", str(ws)]
    r = scaleout("sweep", "--gpus", "16", "--space", str(space), "--name", "co",
                 "--poll-interval", "1", *common)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    r = scaleout("leaderboard", "co", "--format", "json", *common, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = sorted(json.loads(r.stdout)["trials"], key=lambda t: t["trial"])
    assert [t["state"] for t in rows] == ["COMPLETE", "COMPLETE"]
    for t in rows:
        k = 16 * t["samples_per_gpu"] / 8  # tiny's reference: 8 GPUs x 1
        assert t["weight_decay"] == pytest.approx(0.01 * k * 2e-3 / t["lr"])
        assert t["beta2"] == pytest.approx(0.999**k)
        assert t["trial_equivalents"] == pytest.approx(t["epochs"] / 3)  # tiny runs 3 epochs
        cfg = (ws / "co" / "trials" / t["trial"] / "trial_config.py").read_text()
        assert f"max_epochs={int(t['epochs'])}" in cfg
        assert f"batch_size={t['samples_per_gpu']}," in cfg
        assert f"weight_decay={t['weight_decay']!r}" in cfg
    assert rows[0]["epochs"] == 3  # the sqrt seed runs the reference's length
    assert rows[0]["trial_equivalents"] < 2 <= sum(t["trial_equivalents"] for t in rows)
