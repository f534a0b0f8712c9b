"""The mmengine model: MiniBEV, its training step over virtual GPUs, and its DDP wrapper.

One optimiser step consumes the global batch virtual_gpus x samples_per_gpu. Each real process
holds virtual_gpus / world_size virtual GPUs' samples and may split them into micro-batches
(memory); micro-batch gradients are accumulated locally (DDP's no_sync) and all-reduced once.
Because every loss is a per-sample mean (head.py) and nothing normalises over the batch, the
resulting gradient equals that of one synchronous data-parallel step on virtual_gpus GPUs.

Gradient statistics (McCandlish et al. 2018): on iterations a hook selects, the first
micro-batch is exactly one virtual GPU's batch; its squared gradient norm is read before any
all-reduce (B_small = samples_per_gpu), and the squared norm of the averaged global gradient
after it (B_big = global batch). Both come from work the step does anyway.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from mmengine.dist import get_world_size
from mmengine.model import BaseModel, MMDistributedDataParallel
from mmengine.optim import OptimWrapper
from mmengine.registry import MODEL_WRAPPERS, MODELS

from scaleout.minibev.head import CenterHead
from scaleout.minibev.model import Backbone, BEVEncoder

# Images are uint8; a fixed normalisation keeps the model free of batch statistics.
PIXEL_MEAN, PIXEL_STD = 0.4, 0.25


@MODELS.register_module(name="MiniBEV")
class MiniBEV(BaseModel):
    def __init__(
        self,
        embed_dims: int = 16,
        bev_size: int = 16,
        bev_range: float = 24.0,
        image_size: tuple[int, int] = (16, 32),
        backbone_stride: int = 2,
        num_layers: int = 1,
        num_z: int = 4,
        num_points: int = 2,
        topk: int = 30,
        heatmap_prior: float = 0.1,
        pre_norm: bool = False,
        micro_batch: int | None = None,
        samples_per_gpu: int = 1,
        channels_last: bool = False,
        compile: bool = False,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        # Registered after encoder and head so that the first param group, whose lr mmengine
        # logs as `lr`, is a full-lr one; `img_backbone` takes the backbone lr_mult.
        self.encoder = BEVEncoder(
            embed_dims,
            bev_size,
            bev_range,
            image_size,
            num_layers,
            num_z,
            num_points,
            pre_norm=pre_norm,
        )
        self.head = CenterHead(embed_dims, bev_size, bev_range, heatmap_prior)
        self.img_backbone = Backbone(embed_dims, backbone_stride)
        self.topk = topk
        self.micro_batch = micro_batch
        self.samples_per_gpu = samples_per_gpu
        self.channels_last = channels_last
        if channels_last:
            self.img_backbone.to(memory_format=torch.channels_last)
        if compile:  # compile the forwards, not the modules: checkpoint keys stay the same
            for part in (self.img_backbone, self.encoder, self.head):
                part.forward = torch.compile(part.forward)
        # Set by GradStatsHook for the next step; read back by it afterwards.
        self.collect_grad_stats = False
        self.grad_stats: dict[str, float] | None = None

    def encode(self, imgs: torch.Tensor, lidar2img: torch.Tensor, prev=None, prev2cur=None):
        B, K = imgs.shape[:2]
        x = (imgs.flatten(0, 1).float() / 255.0 - PIXEL_MEAN) / PIXEL_STD
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = self.img_backbone(x)
        feats = feats.reshape(B, K, *feats.shape[1:]).contiguous()
        return self.encoder(feats, lidar2img, prev, prev2cur)

    def forward(
        self,
        inputs: dict[str, torch.Tensor],
        data_samples: list[dict] | None = None,
        mode: str = "tensor",
    ) -> Any:
        imgs, lidar2img = inputs["imgs"], inputs["lidar2img"].float()
        # The previous BEV is computed without gradient, as BEVFormer's obtain_history_bev does.
        with torch.no_grad():
            prev = self.encode(imgs[:, 0], lidar2img)
        bev = self.encode(imgs[:, 1], lidar2img, prev, inputs["prev2cur"].float())
        preds = self.head(bev)
        if mode == "loss":
            return self.head.loss(preds, [s["gt"] for s in data_samples or []])
        if mode == "predict":
            boxes = self.head.decode(preds, self.topk).cpu().numpy()
            return [
                {"pred": boxes[i], "gt": s["gt"].cpu().numpy(), "sample_idx": s["sample_idx"]}
                for i, s in enumerate(data_samples or [])
            ]
        return preds

    def train_step(self, data: dict, optim_wrapper: OptimWrapper) -> dict[str, torch.Tensor]:
        return virtual_gpu_step(self, self, data, optim_wrapper)


def _chunks(n: int, micro: int | None, first: int | None) -> list[tuple[int, int]]:
    """Split n samples into micro-batches; `first` forces the first one's size."""
    bounds, start = [], 0
    if first is not None and first < n:
        bounds.append((0, first))
        start = first
    step = micro or n
    while start < n:
        bounds.append((start, min(start + step, n)))
        start += step
    return bounds


def _slice(data: dict, a: int, b: int) -> dict:
    return {
        "inputs": {k: v[a:b] for k, v in data["inputs"].items()},
        "data_samples": data["data_samples"][a:b],
    }


def _grad_sq_norm(module: torch.nn.Module) -> float:
    sq = [p.grad.detach().float().pow(2).sum() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(sq).sum()) if sq else 0.0


def virtual_gpu_step(
    net: torch.nn.Module, module: MiniBEV, data: dict, optim_wrapper: OptimWrapper
) -> dict[str, torch.Tensor]:
    """One synchronous data-parallel step over this process's share of the global batch.

    `net` is what runs the forward (the DDP wrapper or the model itself), `module` the model.
    """
    data = module.data_preprocessor(data, training=True)
    n = len(data["data_samples"])
    world = get_world_size()
    stats = module.collect_grad_stats and (world > 1 or n > module.samples_per_gpu)
    first = module.samples_per_gpu if stats else None
    chunks = _chunks(n, module.micro_batch, first)
    no_sync = getattr(net, "no_sync", None)
    totals: dict[str, torch.Tensor] = {}
    small_sq = None
    for i, (a, b) in enumerate(chunks):
        last = i == len(chunks) - 1
        # Local accumulation until the last micro-batch; on stats steps the all-reduce is done
        # by hand below so that the local gradient can be read first.
        ctx = no_sync() if no_sync is not None and (stats or not last) else nullcontext()
        with ctx:
            with optim_wrapper.optim_context(net):
                losses = net._run_forward(_slice(data, a, b), mode="loss")
            loss, log_vars = module.parse_losses(losses)
            optim_wrapper.backward(loss * ((b - a) / n))
        for k, v in log_vars.items():
            totals[k] = totals.get(k, 0.0) + v.detach() * ((b - a) / n)
        if stats and i == 0:
            small_sq = _grad_sq_norm(module) * (n / (b - a)) ** 2
    if stats:
        if world > 1:
            _all_reduce_mean(module)
        module.grad_stats = {
            "grad_sq_local": small_sq,
            "grad_sq_global": _grad_sq_norm(module),
            "batch_local": float(chunks[0][1] - chunks[0][0]),
            "batch_global": float(n * world),
        }
    optim_wrapper.step()
    optim_wrapper.zero_grad()
    return totals


def _all_reduce_mean(module: torch.nn.Module) -> None:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


@MODEL_WRAPPERS.register_module(name="MiniBEVDDP")
class MiniBEVDDP(MMDistributedDataParallel):
    """Real torch DDP whose train step accumulates micro-batches under no_sync."""

    def __init__(
        self, module: torch.nn.Module, device_ids: list[int] | None = None, **kwargs
    ) -> None:
        # mmengine passes device_ids=[LOCAL_RANK] unconditionally; CPU (gloo) DDP refuses them.
        on_gpu = next(module.parameters()).is_cuda
        super().__init__(module=module, device_ids=device_ids if on_gpu else None, **kwargs)

    def train_step(self, data: dict, optim_wrapper: OptimWrapper) -> dict[str, torch.Tensor]:
        return virtual_gpu_step(self, self.module, data, optim_wrapper)
