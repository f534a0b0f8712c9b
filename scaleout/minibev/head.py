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

import torch
import torch.nn.functional as F
from torch import nn

from scaleout.minibev.scenes import ATTRIBUTES

NUM_CLASSES = 10
NUM_REG = 10  # dx, dy, z, log w, log l, log h, sin yaw, cos yaw, vx, vy
REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
# Which attributes each class may take (the devkit scores only these); none for cone/barrier.
CLASS_ATTRS = [[5, 6, 7]] * 5 + [[2, 3, 4], [0, 1], [0, 1], [], []]


class CenterHead(nn.Module):
    def __init__(self, dims: int, bev_size: int, bev_range: float) -> None:
        super().__init__()
        self.bev_size, self.bev_range = bev_size, bev_range
        self.cell = 2 * bev_range / bev_size
        self.shared = nn.Sequential(nn.Conv2d(dims, dims, 3, padding=1), nn.ReLU())
        self.heatmap = nn.Conv2d(dims, NUM_CLASSES, 1)
        self.reg = nn.Conv2d(dims, NUM_REG, 1)
        self.attr = nn.Conv2d(dims, len(ATTRIBUTES), 1)
        nn.init.constant_(self.heatmap.bias, -2.19)  # prior 0.1, as in CenterNet
        attr_mask = torch.full((NUM_CLASSES, len(ATTRIBUTES)), float("-inf"))
        for c, allowed in enumerate(CLASS_ATTRS):
            attr_mask[c, allowed] = 0.0
        self.register_buffer("attr_mask", attr_mask, persistent=False)
        self.register_buffer("reg_weights", torch.tensor(REG_WEIGHTS), persistent=False)

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
        G = self.bev_size
        hm_logits = preds["heatmap"].float()
        target = torch.zeros_like(hm_logits)
        yy, xx = torch.meshgrid(
            torch.arange(G, device=target.device),
            torch.arange(G, device=target.device),
            indexing="ij",
        )
        reg_losses, attr_losses = [], []
        for b, gt in enumerate(gts):
            if len(gt) == 0:
                reg_losses.append(hm_logits.new_zeros(()))
                attr_losses.append(hm_logits.new_zeros(()))
                continue
            ix, iy, frac = self._cells(gt)
            labels = gt[:, 9].long()
            centre = (gt[:, :2] + self.bev_range) / self.cell - 0.5  # continuous cell coords
            sigma = (torch.sqrt(gt[:, 3] * gt[:, 4]) / (3 * self.cell)).clamp(min=0.6)
            d2 = (xx[None] - centre[:, 0, None, None]) ** 2 + (
                yy[None] - centre[:, 1, None, None]
            ) ** 2
            gauss = torch.exp(-d2 / (2 * sigma[:, None, None] ** 2))
            gauss[torch.arange(len(gt)), iy, ix] = 1.0  # the peak is exactly 1 at the centre cell
            for c in labels.unique():
                target[b, c] = gauss[labels == c].amax(0)
            reg_t = torch.cat(
                [
                    frac,
                    gt[:, 2:3],
                    gt[:, 3:6].log(),
                    gt[:, 6:7].sin(),
                    gt[:, 6:7].cos(),
                    gt[:, 7:9],
                ],
                dim=-1,
            )
            reg_p = preds["reg"][b, :, iy, ix].t().float()
            l1 = ((reg_p - reg_t).abs() * self.reg_weights).sum(-1)
            reg_losses.append(l1.mean())
            attrs = gt[:, 10].long()
            has = attrs >= 0
            if has.any():
                logits = preds["attr"][b, :, iy, ix].t().float() + self.attr_mask[labels]
                ce = F.cross_entropy(logits[has], attrs[has], reduction="sum")
                attr_losses.append(ce / len(gt))
            else:
                attr_losses.append(hm_logits.new_zeros(()))
        return {
            "loss_heatmap": _focal_loss(hm_logits, target).mean(),
            "loss_bbox": 0.25 * torch.stack(reg_losses).mean(),
            "loss_attr": 0.2 * torch.stack(attr_losses).mean(),
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
        size = reg[..., 3:6].clamp(-3, 3).exp()
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
            reg[..., 2],
            size[..., 0],
            size[..., 1],
            size[..., 2],
            yaw,
            reg[..., 8],
            reg[..., 9],
        ]
        return torch.stack([*cols, labels.float(), attr, scores], dim=-1)


def _focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised per sample by its number of peaks."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    log_p, log_1p = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos_loss = -(log_p * (1 - p) ** 2 * pos).flatten(1).sum(1)
    neg_loss = -(log_1p * p**2 * (1 - target) ** 4 * (1 - pos)).flatten(1).sum(1)
    num_pos = pos.flatten(1).sum(1).clamp(min=1)
    return (pos_loss + neg_loss) / num_pos
