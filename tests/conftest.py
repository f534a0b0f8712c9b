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


def run_minibev_sweep(space: Path, workspace: Path, name: str, *flags: str, timeout: int = 300):
    """Run `scaleout sweep --gpus 16` on a space file in a subprocess, as a user would, and
    return the finished process (asserting it exited 0)."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "scaleout", "sweep", "--gpus", "16", "--space", str(space)]
    argv += ["--name", name, "--workspace", str(workspace), "--poll-interval", "0.3", *flags]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="session")
def sweep_runner():
    """`run_minibev_sweep` for fixtures in other conftest files."""
    return run_minibev_sweep


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    """A real 3-trial minibev (tiny) sweep, run once per test session: (workspace, name)."""
    ws = tmp_path_factory.mktemp("workspace")
    name = "done"
    run_minibev_sweep(SPACES / "lr_scaling.yaml", ws, name, "--preset", "tiny", "--trials", "3")
    return ws, name
