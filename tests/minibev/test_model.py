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


def _dense_cross_attention(m, query, feats, ref_uv, valid):
    """Spatial cross-attention written the plain way: every camera samples every query."""
    import torch.nn.functional as F

    B, N, C = query.shape
    K, h, w = feats.shape[1], feats.shape[-2], feats.shape[-1]
    Z, P = m.num_z, m.num_points
    value = m.value_proj(feats.flatten(3).transpose(-1, -2)).transpose(-1, -2)
    value = value.reshape(B, K, C, h, w)
    offsets = m.offsets(query).view(B, N, Z, P, 2) / query.new_tensor([w, h])
    attn = m.weights(query).view(B, N, Z * P).softmax(-1).view(B, N, Z, P)
    out = 0
    for k in range(K):
        grid = (2 * (ref_uv[:, k].unsqueeze(-2) + offsets) - 1).reshape(B, N, Z * P, 2)
        sampled = F.grid_sample(value[:, k], grid, align_corners=False)
        weight = (attn * valid[:, k].unsqueeze(-1)).reshape(B, N, Z * P)
        out = out + torch.einsum("bcnq,bnq->bnc", sampled, weight)
    hits = valid.any(-1).sum(1).clamp(min=1).unsqueeze(-1).to(out.dtype)
    return m.out_proj(out / hits)


def test_cross_attention_equals_per_camera_sampling_with_zero_padding():
    """The one-call tiled sampling reproduces per-camera grid_sample, values and gradients,
    also for points pushed far outside their camera (where the next tile must not leak in)."""
    from scaleout.minibev.model import SpatialCrossAttention

    torch.manual_seed(0)
    m = SpatialCrossAttention(16, 3, 2).double()
    torch.nn.init.normal_(m.offsets.weight, std=3.0)
    B, N, K, h, w = 3, 20, 6, 8, 16
    query = torch.randn(B, N, 16, dtype=torch.float64, requires_grad=True)
    feats = torch.randn(B, K, 16, h, w, dtype=torch.float64, requires_grad=True)
    ref_uv = torch.rand(B, K, N, 3, 2, dtype=torch.float64) * 1.4 - 0.2
    valid = (ref_uv >= 0).all(-1) & (ref_uv <= 1).all(-1)
    ours = m(query, feats, ref_uv, valid)
    plain = _dense_cross_attention(m, query, feats, ref_uv, valid)
    assert torch.allclose(ours, plain, atol=1e-12)
    wrt = [query, feats, *m.parameters()]
    for a, b in zip(
        torch.autograd.grad(ours.square().sum(), wrt),
        torch.autograd.grad(plain.square().sum(), wrt),
        strict=True,
    ):
        assert torch.allclose(a, b, atol=1e-10)


def test_optimizer_groups_are_merged_but_every_parameter_keeps_its_options():
    from mmengine.optim import DefaultOptimWrapperConstructor

    from scaleout.minibev.optim import GroupedOptimWrapperConstructor

    model = make_model()
    cfg = dict(
        optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.01),
        clip_grad=dict(max_norm=35, norm_type=2),
    )
    paramwise = dict(custom_keys={"img_backbone": dict(lr_mult=0.5)})
    merged = GroupedOptimWrapperConstructor(cfg, paramwise)(model).optimizer
    per_param = DefaultOptimWrapperConstructor(cfg, paramwise)(model).optimizer

    def options(opt):
        return {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}

    assert len(merged.param_groups) == 2 < len(per_param.param_groups)
    assert options(merged) == options(per_param)
    assert merged.param_groups[0]["lr"] == 2e-3  # the group mmengine logs as `lr` is full-lr
    assert sorted(g["lr"] for g in merged.param_groups) == [1e-3, 2e-3]
