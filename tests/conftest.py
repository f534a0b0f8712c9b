"""Shared fixtures. Tests that start real services start and stop them themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPACES = REPO / "search_spaces"

# Keep every test's side effects (MLflow stores, workspaces) out of the checkout.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture
def bevformer_reference():
    from scaleout.core.rules import Reference

    return Reference(
        gpus=8,
        samples_per_gpu=1,
        lr=2e-4,
        warmup_iters=500,
        warmup_ratio=1 / 3,
        min_lr_ratio=1e-3,
        epochs=24,
        train_samples=28130,
        wall_time_h=44.4,
    )


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    """A real 3-trial minibev (tiny) sweep, run once per test session: (workspace, name)."""
    import subprocess
    import sys

    ws = tmp_path_factory.mktemp("workspace")
    name = "done"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "scaleout",
            "sweep",
            "--gpus",
            "16",
            "--space",
            str(SPACES / "lr_scaling.yaml"),
            "--preset",
            "tiny",
            "--trials",
            "3",
            "--name",
            name,
            "--workspace",
            str(ws),
            "--poll-interval",
            "0.3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return ws, name
