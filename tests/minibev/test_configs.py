"""The config contract the sweep adapter relies on (keys, meanings, defaults = reference)."""

from __future__ import annotations

import pytest
from mmengine.config import Config

from scaleout.minibev.runs import config_path


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_defaults_are_the_reference_recipe_at_8_gpus(preset):
    cfg = Config.fromfile(str(config_path(preset)))
    ref = cfg.reference
    assert (ref.gpus, ref.samples_per_gpu) == (8, 1)
    assert cfg.virtual_gpus == ref.gpus and cfg.train_dataloader.batch_size == ref.samples_per_gpu
    assert cfg.optim_wrapper.optimizer.type == "AdamW"
    assert cfg.optim_wrapper.optimizer.lr == ref.lr
    assert "img_backbone" in cfg.optim_wrapper.paramwise_cfg.custom_keys
    assert cfg.optim_wrapper.clip_grad.max_norm > 0
    warmup, cosine = cfg.param_scheduler
    assert warmup == dict(
        type="LinearLR",
        start_factor=ref.warmup_ratio,
        by_epoch=False,
        begin=0,
        end=ref.warmup_iters,
    )
    assert abs(ref.warmup_ratio - 1 / 3) < 1e-12
    assert cosine.type == "CosineAnnealingLR" and cosine.eta_min_ratio == ref.min_lr_ratio
    assert cosine.end == cfg.train_cfg.max_epochs == ref.epochs
    assert cfg.train_cfg.val_interval == 1 and cfg.default_hooks.checkpoint.interval == 1
    assert cfg.auto_scale_lr.enable is False
    assert cfg.train_dataloader.dataset.num_samples == ref.train_samples
    assert all(ref.train_samples % g == 0 for g in (8, 16, 32, 80, 160))
    assert "randomness" in cfg and "seed" in cfg.randomness
    backends = [b.type for b in cfg.visualizer.vis_backends]
    assert "LocalVisBackend" in backends
