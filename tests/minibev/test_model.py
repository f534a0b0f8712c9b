from __future__ import annotations

import numpy as np
import pytest
import torch

from scaleout.minibev.dataset import MiniBEVDataset, VirtualGPUBatchSampler, collate
from scaleout.minibev.detector import MiniBEV, _chunks


@pytest.fixture(scope="module")
def batch():
    ds = MiniBEVDataset("train", 8, image_size=(16, 32), seed=1)
    return collate([ds[i] for i in range(8)])


def make_model() -> MiniBEV:
    torch.manual_seed(0)
    return MiniBEV(embed_dims=16, bev_size=12, image_size=(16, 32), num_z=3, topk=20)


def test_shapes(batch):
    model = make_model()
    preds = model(**batch, mode="tensor")
    assert preds["heatmap"].shape == (8, 10, 12, 12)
    assert preds["reg"].shape == (8, 10, 12, 12) and preds["attr"].shape == (8, 8, 12, 12)
    losses = model(**batch, mode="loss")
    assert set(losses) == {"loss_heatmap", "loss_bbox", "loss_attr"}
    assert all(torch.isfinite(v) for v in losses.values())
    out = model.eval()(**batch, mode="predict")
    assert len(out) == 8 and out[0]["pred"].shape == (20, 12)
    assert np.all(out[0]["pred"][:, 3:6] > 0)


def test_every_pillar_is_seen_by_some_camera():
    model = make_model()
    ds = MiniBEVDataset("val", 1, image_size=(16, 32), seed=1)
    _, valid = model.encoder.project(ds[0]["lidar2img"][None])
    seen = valid.any(-1).any(1)  # (B, N): over cameras and heights
    centre_cells = seen[0].view(12, 12)
    assert centre_cells.float().mean() > 0.9


def test_loss_of_a_batch_is_the_mean_of_per_sample_losses(batch):
    """The virtual-GPU guarantee: no loss term normalises over the batch."""
    model = make_model()
    whole = model(**batch, mode="loss")
    parts = [model(**_sub(batch, i, i + 1), mode="loss") for i in range(8)]
    for key, value in whole.items():
        assert torch.allclose(value, torch.stack([p[key] for p in parts]).mean(), rtol=1e-5)


def _sub(batch, a, b):
    return {
        "inputs": {k: v[a:b] for k, v in batch["inputs"].items()},
        "data_samples": batch["data_samples"][a:b],
    }


def test_chunks():
    assert _chunks(8, None, None) == [(0, 8)]
    assert _chunks(8, 3, None) == [(0, 3), (3, 6), (6, 8)]
    assert _chunks(8, None, 1) == [(0, 1), (1, 8)]
    assert _chunks(1, None, 1) == [(0, 1)]


def test_batch_sampler_groups_a_process_share():
    bs = VirtualGPUBatchSampler(list(range(32)), batch_size=2, virtual_gpus=8)
    batches = list(bs)
    assert len(bs) == 2 and batches == [list(range(16)), list(range(16, 32))]
