"""A dense centre-heatmap detection head (CenterPoint-style) on the BEV features.

Why not BEVFormer's DETR head: Hungarian matching with 900 queries needs hundreds of epochs to
converge, far beyond a one-minute CPU budget, and its set loss depends on the batch layout
only through the matching, which adds nothing to the scaling question. A dense head gives a
per-cell loss that trains in a few hundred steps and still outputs scored 3D boxes with
velocity and attribute, which is all the nuScenes metric looks at.

Every loss is a per-sample quantity averaged over the samples of the batch, so the gradient
of a batch is the mean of the per-sample gradients: splitting a batch across processes or
micro-batches changes nothing but float summation order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scaleout.minibev.scenes import ATTRIBUTES, SIZE_PRIORS

NUM_CLASSES = 10
NUM_REG = 10  # dx, dy, z, log w, log l, log h, sin yaw, cos yaw, vx, vy
REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
# Which attributes each class may take (the devkit scores only these); none for cone/barrier.
CLASS_ATTRS = [[5, 6, 7]] * 5 + [[2, 3, 4], [0, 1], [0, 1], [], []]


class CenterHead(nn.Module):
    def __init__(self, dims: int, bev_size: int, bev_range: float, prior: float = 0.1) -> None:
        super().__init__()
        self.bev_size, self.bev_range = bev_size, bev_range
        self.cell = 2 * bev_range / bev_size
        self.shared = nn.Sequential(nn.Conv2d(dims, dims, 3, padding=1), nn.ReLU())
        self.heatmap = nn.Conv2d(dims, NUM_CLASSES, 1)
        self.reg = nn.Conv2d(dims, NUM_REG, 1)
        self.attr = nn.Conv2d(dims, len(ATTRIBUTES), 1)
        # Initial heatmap probability (CenterNet uses 0.1). Only ~0.2% of class-cells hold a
        # box centre here, so a lower prior saves the first steps from unlearning it.
        nn.init.constant_(self.heatmap.bias, math.log(prior / (1 - prior)))
        attr_mask = torch.full((NUM_CLASSES, len(ATTRIBUTES)), float("-inf"))
        for c, allowed in enumerate(CLASS_ATTRS):
            attr_mask[c, allowed] = 0.0
        self.register_buffer("attr_mask", attr_mask, persistent=False)
        self.register_buffer("reg_weights", torch.tensor(REG_WEIGHTS), persistent=False)
        # Sizes and heights are regressed relative to the class's mean size (as anchor-based
        # detectors do) and the offset starts mid-cell: every target then starts near zero.
        # Adam moves a weight by about lr per step, so a bias that had to travel to
        # log(11 m) would cost a large-batch run, with its few steps, most of its budget.
        log_prior = torch.tensor(SIZE_PRIORS, dtype=torch.float32).log()
        self.register_buffer("log_size_prior", log_prior, persistent=False)
        with torch.no_grad():
            self.reg.bias.zero_()
            self.reg.bias[:2] = 0.5

    def forward(self, bev: torch.Tensor) -> dict[str, torch.Tensor]:
        """bev (B, N, C) -> maps of shape (B, *, G, G)."""
        B, _, C = bev.shape
        x = self.shared(bev.transpose(1, 2).reshape(B, C, self.bev_size, self.bev_size))
        return {"heatmap": self.heatmap(x), "reg": self.reg(x), "attr": self.attr(x)}

    def _cells(self, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Integer cell (ix, iy) of each box centre, and the fractional offset inside it."""
        pos = (gt[:, :2] + self.bev_range) / self.cell
        idx = pos.floor().clamp(0, self.bev_size - 1)
        return idx[:, 0].long(), idx[:, 1].long(), pos - idx

    def loss(
        self, preds: dict[str, torch.Tensor], gts: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Per-sample losses averaged over samples, vectorised over all boxes of the batch."""
        G, C = self.bev_size, NUM_CLASSES
        hm_logits = preds["heatmap"].float()
        B = hm_logits.shape[0]
        device = hm_logits.device
        counts = torch.tensor([len(g) for g in gts], device=device)
        gt = torch.cat(list(gts)).float() if gts else hm_logits.new_zeros((0, 11))
        bidx = torch.repeat_interleave(torch.arange(B, device=device), counts)
        n_per = counts.clamp(min=1).float()
        ix, iy, frac = self._cells(gt)
        labels = gt[:, 9].long()
        # Gaussian peaks (CenterNet), exactly 1 at each box's own cell; max over overlapping boxes.
        coords = torch.arange(G, device=device, dtype=torch.float32)
        centre = (gt[:, :2] + self.bev_range) / self.cell - 0.5
        sigma = (torch.sqrt(gt[:, 3] * gt[:, 4]) / (3 * self.cell)).clamp(min=0.6)
        gx = torch.exp(-((coords[None] - centre[:, :1]) ** 2) / (2 * sigma[:, None] ** 2))
        gy = torch.exp(-((coords[None] - centre[:, 1:]) ** 2) / (2 * sigma[:, None] ** 2))
        gauss = (gy[:, :, None] * gx[:, None, :]).flatten(1)
        gauss = torch.where(gauss < 1e-4, 0.0, gauss)  # no denormal tails (slow on CPUs)
        gauss[torch.arange(len(gt), device=device), iy * G + ix] = 1.0
        target = hm_logits.new_zeros((B * C, G * G))
        target.index_reduce_(0, bidx * C + labels, gauss, "amax", include_self=True)
        loss_heatmap = _focal_loss(hm_logits, target.view_as(hm_logits)).mean()

        log_prior = self.log_size_prior[labels]
        z_rel = gt[:, 2:3] - log_prior[:, 2:3].exp() / 2
        size_rel = gt[:, 3:6].log() - log_prior
        yaw = gt[:, 6:7]
        reg_t = torch.cat([frac, z_rel, size_rel, yaw.sin(), yaw.cos(), gt[:, 7:9]], -1)
        reg_p = preds["reg"].float()[bidx, :, iy, ix]
        per_box = ((reg_p - reg_t).abs() * self.reg_weights).sum(-1)
        loss_bbox = (_per_sample(per_box, bidx, B) / n_per).mean()

        attrs = gt[:, 10].long()
        # Cones and barriers have no attribute; their rows are masked out of the loss below.
        allowed = torch.where((attrs >= 0)[:, None], self.attr_mask[labels], 0.0)
        logits = preds["attr"].float()[bidx, :, iy, ix] + allowed
        ce = F.cross_entropy(logits, attrs.clamp(min=0), reduction="none") * (attrs >= 0)
        loss_attr = (_per_sample(ce, bidx, B) / n_per).mean()
        return {
            "loss_heatmap": loss_heatmap,
            "loss_bbox": 0.25 * loss_bbox,
            "loss_attr": 0.2 * loss_attr,
        }

    @torch.no_grad()
    def decode(self, preds: dict[str, torch.Tensor], topk: int) -> torch.Tensor:
        """Top-k peaks per sample: (B, k, 12) x, y, z, w, l, h, yaw, vx, vy, label, attr, score."""
        heat = preds["heatmap"].float().sigmoid()
        _, C, G, _ = heat.shape
        peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
        scores, idx = peaks.flatten(1).topk(min(topk, C * G * G))
        labels, cell = idx // (G * G), idx % (G * G)
        iy, ix = cell // G, cell % G
        reg = preds["reg"].float().flatten(2).gather(2, cell[:, None].expand(-1, NUM_REG, -1))
        reg = reg.transpose(1, 2)  # (B, k, NUM_REG)
        x = (ix + reg[..., 0]) * self.cell - self.bev_range
        y = (iy + reg[..., 1]) * self.cell - self.bev_range
        log_prior = self.log_size_prior[labels]
        size = (reg[..., 3:6].clamp(-3, 3) + log_prior).exp()
        z = reg[..., 2] + log_prior[..., 2].exp() / 2
        yaw = torch.atan2(reg[..., 6], reg[..., 7])
        attr_logits = (
            preds["attr"]
            .float()
            .flatten(2)
            .gather(2, cell[:, None].expand(-1, len(ATTRIBUTES), -1))
            .transpose(1, 2)
            + self.attr_mask[labels]
        )
        attr = attr_logits.argmax(-1).float()
        attr[self.attr_mask[labels].isinf().all(-1)] = -1
        cols = [
            x,
            y,
            z,
            size[..., 0],
            size[..., 1],
            size[..., 2],
            yaw,
            reg[..., 8],
            reg[..., 9],
        ]
        return torch.stack([*cols, labels.float(), attr, scores], dim=-1)


def _per_sample(values: torch.Tensor, bidx: torch.Tensor, batch: int) -> torch.Tensor:
    return values.new_zeros(batch).index_add(0, bidx, values)


def _focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised per sample by its number of peaks."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    log_p, log_1p = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos_loss = -(log_p * (1 - p) ** 2 * pos).flatten(1).sum(1)
    neg_loss = -(log_1p * p**2 * (1 - target) ** 4 * (1 - pos)).flatten(1).sum(1)
    num_pos = pos.flatten(1).sum(1).clamp(min=1)
    return (pos_loss + neg_loss) / num_pos
