"""scaleout's mmengine hook in a real mmengine run (two gloo processes): enabled by the
config's custom_hooks, its statistics land in scalars.json and the text log, and the mmengine
adapter's reader picks them up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaleout.trainers import logs
from scaleout.trainers.mmengine import read_scalars

pytestmark = pytest.mark.slow  # two processes importing torch and mmengine
WORKER = Path(__file__).with_name("mmengine_worker.py")


def test_the_hook_logs_both_norms_into_the_trainers_own_logs(tmp_path):
    work = tmp_path / "work"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(29500 + os.getpid() % 1000), str(WORKER), str(work)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    stats = read_scalars(work).grad_stats
    # 64 samples / (2 ranks x 2) = 16 iterations per epoch, 2 epochs, every 2nd iteration
    assert [s.iter for s in stats] == list(range(1, 33, 2))
    assert {(s.b_small, s.b_big) for s in stats} == {(2.0, 4.0)}
    assert all(s.sq_small > 0 and s.sq_big > 0 for s in stats)
    # On average one rank's gradient is the noisier: E|G_b|^2 = |G|^2 + tr(Sigma)/b.
    assert sum(s.sq_small for s in stats) > sum(s.sq_big for s in stats)
    text = "".join(p.read_text() for p in work.glob("*/*.log"))
    assert set(logs.parse_grad_lines(text)) == {s.iter for s in stats}
