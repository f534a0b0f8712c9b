"""scaleout.hooks.grad_noise in real torch DDP (gloo, two processes on the CPU): the
communication hook's |G_small|^2 is each rank's own gradient before the all-reduce (averaged
over the ranks), its |G_big|^2 the all-reduced one, and training is unchanged."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scaleout.hooks.grad_noise import GradNormCollector

WORKER = Path(__file__).with_name("ddp_worker.py")
_spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)
WORLD = worker.WORLD


def _reference(steps: int) -> tuple[list, dict]:
    """The same training by hand on one process: each rank's gradient and their mean."""
    net = worker.model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    expected = []
    for step in range(steps):
        grads = []
        for rank in range(WORLD):
            net.zero_grad()
            x, y = worker.batch(rank, step)
            torch.nn.functional.mse_loss(net(x), y).backward()
            grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
        mean = torch.stack(grads).mean(0)
        local = sum(float(g @ g) for g in grads) / WORLD
        expected.append((local, float(mean @ mean)))
        offset = 0
        for p in net.parameters():
            p.grad = mean[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        opt.step()
    return expected, net.state_dict()


@pytest.mark.slow  # torchrun and two processes importing torch
def test_the_norms_before_and_after_the_all_reduce(tmp_path):
    out = str(tmp_path / "result")
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
            "--master_port", str(29500 + os.getpid() % 1000), str(WORKER), out]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    expected, state = _reference(4)
    for rank in range(WORLD):
        got = torch.load(f"{out}.{rank}", weights_only=False)
        results = got["results"]
        assert results[1] is None and results[3] is None  # interval 2: steps 0 and 2 only
        for step in (0, 2):
            local, big, world = results[step]
            assert world == WORLD
            assert local == pytest.approx(expected[step][0], rel=1e-5)
            assert big == pytest.approx(expected[step][1], rel=1e-5)
            assert local > big  # one rank's gradient is noisier than the mean
        for key, value in state.items():  # the hook does what DDP's own all-reduce does
            assert torch.allclose(got["state"][key], value, atol=1e-6), key


def test_one_process_logs_nothing_and_says_why():
    said = []
    collector = GradNormCollector(interval=1)
    assert not collector.attach(worker.model(), said.append)
    assert "DistributedDataParallel" in said[0]
    collector.arm(0)
    assert collector.collect() is None
    with pytest.raises(ValueError, match="positive"):
        GradNormCollector(interval=0)
