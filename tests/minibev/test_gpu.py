"""The speed switches and the base preset on a real GPU (`pytest -m gpu` on the device machine).

On a machine without CUDA these are reported as skipped with the reason; nothing here is faked.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from scaleout.minibev.runs import NDS, config_path, read_scalars, run, train_lines, val_lines

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU: run `pytest -m gpu tests/minibev` on the device machine",
    ),
]


def _trained(work: Path, config: Path, *options: str) -> list[dict]:
    proc = run(config, work, *options, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scalars = read_scalars(work)
    losses = [line["loss"] for line in train_lines(scalars).values()]
    assert losses and all(math.isfinite(v) for v in losses)
    assert all(0.0 <= v[NDS] <= 1.0 for v in val_lines(scalars))
    assert any(s.get("epoch_stats/samples_per_s", 0) > 0 for s in scalars)
    return scalars


def _dumped_config(work: Path, config: Path) -> str:
    return (work / config.name).read_text()


@pytest.mark.parametrize(
    ("switches", "wrapper"),
    [
        (("speed.amp=bf16", "speed.channels_last=True", "speed.fused_adamw=True"), "bfloat16"),
        (("speed.amp=fp16", "speed.pin_memory=True"), "float16"),
        (("speed.compile=True",), None),
    ],
)
def test_speed_switches_train_on_a_gpu(tmp_path, switches, wrapper):
    tiny = config_path("tiny")
    _trained(tmp_path, tiny, "virtual_gpus=16", *switches)
    dumped = _dumped_config(tmp_path, tiny)
    if wrapper:
        assert "AmpOptimWrapper" in dumped and f"dtype='{wrapper}'" in dumped
    if "speed.fused_adamw=True" in switches:
        assert "fused=True" in dumped


def test_base_preset_trains_an_epoch_on_a_gpu(tmp_path):
    base = config_path("base")
    scalars = _trained(
        tmp_path,
        base,
        "virtual_gpus=160",
        "train_cfg.max_epochs=1",
        "train_dataloader.dataset.num_samples=640",
        "val_dataloader.dataset.num_samples=160",
        "param_scheduler.0.end=1",
    )
    layout = next(s for s in scalars if "layout/virtual_gpus" in s)
    assert layout["layout/global_batch"] == 160
