"""The mmengine metric: nuScenes NDS/mAP through `nuscenes_metric.evaluate`, logged with
mmdet3d 1.x key names (`NuScenes metric/pred_instances_3d_NuScenes/NDS`, ...).

Our scenes are smaller than nuScenes' 50 m, so every class is evaluated out to the BEV range
(the devkit's class range filter, scaled to the synthetic world).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

from scaleout.minibev.nuscenes_metric import CLASSES, Box, evaluate
from scaleout.minibev.scenes import ATTRIBUTES

KEY_PREFIX = "pred_instances_3d_NuScenes/"


def to_boxes(sample: str, rows: np.ndarray, *, is_pred: bool) -> list[Box]:
    """Rows of x, y, z, w, l, h, yaw, vx, vy, label, attribute[, score] -> devkit boxes."""
    boxes = []
    for r in rows:
        attr = int(r[10])
        boxes.append(
            Box(
                sample=sample,
                label=CLASSES[int(r[9])],
                x=float(r[0]),
                y=float(r[1]),
                z=float(r[2]),
                w=max(float(r[3]), 1e-3),
                l=max(float(r[4]), 1e-3),
                h=max(float(r[5]), 1e-3),
                yaw=float(r[6]),
                vx=float(r[7]),
                vy=float(r[8]),
                attribute=ATTRIBUTES[attr] if attr >= 0 else None,
                score=float(r[11]) if is_pred else 1.0,
            )
        )
    return boxes


@METRICS.register_module(name="MiniBEVNuScenesMetric")
class NuScenesMetric(BaseMetric):
    default_prefix = "NuScenes metric"

    def __init__(
        self, class_range: float = 24.0, collect_device: str = "cpu", prefix: str | None = None
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.class_range = dict.fromkeys(CLASSES, float(class_range))

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        self.results.extend(data_samples)

    def compute_metrics(self, results: list) -> dict[str, float]:
        gts, preds = [], []
        for r in results:
            gts += to_boxes(r["sample_idx"], r["gt"], is_pred=False)
            preds += to_boxes(r["sample_idx"], r["pred"], is_pred=True)
        return evaluate(gts, preds, class_range=self.class_range).to_flat(KEY_PREFIX)
