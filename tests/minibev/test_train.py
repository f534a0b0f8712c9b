"""Real training runs of the tiny preset through the entry point (subprocesses)."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scaleout.minibev.runs import (
    NDS,
    config_path,
    read_scalars,
    run,
    train_argv,
    train_lines,
    val_lines,
)

TINY = config_path("tiny")


def run_train(work_dir, *options, resume=False):
    return run(TINY, work_dir, *options, resume=resume, timeout=120)


pytestmark = pytest.mark.slow

# 16 virtual GPUs: 10 iterations per epoch on the 160 training samples, 4 epochs.
RESUME_OPTS = ("virtual_gpus=16", "train_cfg.max_epochs=4", "param_scheduler.0.end=8")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("full")
    proc = run_train(work, *RESUME_OPTS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_160_virtual_gpus_train_and_log_nds_every_epoch(tmp_path):
    start = time.monotonic()
    proc = run_train(tmp_path, "virtual_gpus=160")
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    scalars = read_scalars(tmp_path)
    vals = val_lines(scalars)
    assert [v["step"] for v in vals] == [1, 2, 3]  # val step = epoch
    assert all(0.0 <= v[NDS] <= 1.0 for v in vals)
    assert any("NuScenes metric/pred_instances_3d_NuScenes/car_AP_dist_0.5" in v for v in vals)
    layout = next(s for s in scalars if "layout/virtual_gpus" in s)
    assert layout["layout/global_batch"] == 160 and layout["layout/world_size"] == 1
    assert sorted(train_lines(scalars)) == [1, 2, 3]  # one step of 160 samples per epoch
    grad = next(s for s in scalars if "grad_stats/grad_sq_local" in s)
    assert grad["grad_stats/batch_local"] == 1 and grad["grad_stats/batch_global"] == 160
    assert grad["grad_stats/grad_sq_local"] > grad["grad_stats/grad_sq_global"] > 0
    assert any("epoch_stats/samples_per_s" in s for s in scalars)
    assert (tmp_path / "epoch_3.pth").exists()
    log = "".join(p.read_text() for p in tmp_path.glob("*/*.log"))
    assert "virtual layout: 160 GPUs x 1 samples = global batch 160" in log
    print(f"tiny at 160 virtual GPUs: {elapsed:.1f} s")


def test_kill_9_then_resume_matches_an_uninterrupted_run(full_run, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen(
        train_argv(TINY, tmp_path, *RESUME_OPTS),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "last_checkpoint").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint before exit"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "epoch_4.pth").exists(), "the run finished before it was killed"

    resumed = run_train(tmp_path, *RESUME_OPTS, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full, part = read_scalars(full_run), read_scalars(tmp_path)
    full_train, part_train = train_lines(full), train_lines(part)
    assert max(part_train) == max(full_train) == 40  # same iteration count
    for step, line in part_train.items():  # same lr curve, before and after the kill
        assert math.isclose(line["lr"], full_train[step]["lr"], rel_tol=1e-9), step
    last_full, last_part = val_lines(full)[-1], val_lines(part)[-1]
    assert last_part["step"] == 4
    assert abs(last_part[NDS] - last_full[NDS]) < 0.02
    assert math.isclose(part_train[40]["loss"], full_train[40]["loss"], rel_tol=1e-3)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_two_processes_take_the_same_step_as_one(tmp_path):
    """8 virtual GPUs: one process x 8 samples vs torchrun 2 processes x 4 samples (gloo)."""
    opts = (
        "virtual_gpus=8",
        "train_cfg.max_epochs=1",
        "train_dataloader.dataset.num_samples=8",
        "val_dataloader.dataset.num_samples=8",
        "param_scheduler.0.end=1",
    )
    single = run_train(tmp_path / "one", *opts)
    assert single.returncode == 0, single.stderr[-3000:]
    port = str(29500 + os.getpid() % 1000)
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_port",
        port,
        "-m",
        "scaleout.minibev.train",
        *train_argv(TINY, tmp_path / "two", *opts)[3:],
        "--launcher",
        "pytorch",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _weights(tmp_path / "one/epoch_1.pth"), _weights(tmp_path / "two/epoch_1.pth")
    init = None
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=1e-5), key
    # And the step moved the weights (the comparison is not between two initialisations).
    assert any(not torch.equal(a[k], b[k]) or a[k].abs().sum() > 0 for k in a) and init is None
    log = "".join(p.read_text() for p in (tmp_path / "two").glob("*/*.log"))
    assert "real layout: 2 process(es) x 4 samples" in log
    shutil.rmtree(tmp_path)
