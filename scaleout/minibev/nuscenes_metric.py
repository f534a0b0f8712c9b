"""nuScenes detection metrics (mAP, TP errors, NDS) in numpy, computed as the nuscenes-devkit does.

This mirrors nuscenes-devkit 1.2.0 (``nuscenes/eval/detection/{algo,data_classes}.py``,
``nuscenes/eval/common/{utils,loaders}.py``) with its ``detection_cvpr_2019`` config, including its
corner cases:

* Boxes farther than the class range from the ego vehicle (``hypot(x, y) < range`` is kept) are
  dropped from ground truth and predictions alike, before anything else.
* A sample may hold at most ``max_boxes_per_sample`` predictions (counted before the range
  filter); the devkit refuses such a submission and so does :func:`evaluate`.
* Predictions of a class are matched greedily in descending score; among equal scores the one
  that comes *later* in the sample-by-sample concatenation goes first (the devkit sorts
  ``(score, index)`` pairs ascending and reverses them). Each prediction takes the nearest
  untaken ground-truth box of its class and sample (the first one on distance ties) and is a
  true positive when that distance is strictly below the threshold.
* A class without ground truth, or without a single match, gets AP 0 and TP errors 1.0.
* TP errors average the cumulative-mean error curve over recall > min_recall up to the highest
  recall reached; NaN errors (a ground truth without attribute, a NaN velocity) are skipped by
  that cumulative mean, and a curve that is NaN throughout counts as 1.0.
* traffic_cone has no orientation, velocity or attribute error and barrier no velocity or
  attribute error: those entries are NaN and the class means (mATE..mAAE) are NaN-means.

Boxes are given in the ego frame, so the matching distance and the range-filter distance are
both taken from ``(x, y)``. The devkit's other GT filters (boxes without lidar/radar points,
bicycles in bike racks) need the nuScenes database and do not apply here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CLASSES",
    "DEFAULT_CLASS_RANGE",
    "DIST_THRESHOLDS",
    "TP_METRICS",
    "Box",
    "NuScenesResult",
    "evaluate",
]

CLASSES: tuple[str, ...] = (
    "car",
    "truck",
    "bus",
    "trailer",
    "construction_vehicle",
    "pedestrian",
    "motorcycle",
    "bicycle",
    "traffic_cone",
    "barrier",
)
DEFAULT_CLASS_RANGE: dict[str, float] = {
    **dict.fromkeys(CLASSES[:5], 50.0),
    **dict.fromkeys(CLASSES[5:8], 40.0),
    **dict.fromkeys(CLASSES[8:], 30.0),
}
DIST_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
TP_METRICS: tuple[str, ...] = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")

_DIST_TH_TP = 2.0
_MIN_RECALL = 0.1
_MIN_PRECISION = 0.1
_MEAN_AP_WEIGHT = 5
_N_RECALL = 101
_UNDEFINED_TP = {
    "traffic_cone": frozenset({"orient_err", "vel_err", "attr_err"}),
    "barrier": frozenset({"vel_err", "attr_err"}),
}
_MEAN_TP_NAMES = {
    "trans_err": "mATE",
    "scale_err": "mASE",
    "orient_err": "mAOE",
    "vel_err": "mAVE",
    "attr_err": "mAAE",
}


@dataclass(frozen=True)
class Box:
    """A ground-truth or predicted 3D box in the ego frame (metres, radians, m/s).

    ``w, l, h`` must be positive. ``vx, vy`` may be NaN (unknown velocity; such a match is
    left out of the velocity error). ``attribute`` None means "no attribute": on a ground-truth
    box it leaves the match out of the attribute error. ``score`` is ignored on ground truth.
    """

    sample: str
    label: str
    x: float
    y: float
    z: float
    w: float
    l: float  # noqa: E741 - the nuScenes name
    h: float
    yaw: float
    vx: float = 0.0
    vy: float = 0.0
    attribute: str | None = None
    score: float = 1.0


@dataclass(frozen=True)
class NuScenesResult:
    """What the devkit's ``DetectionMetrics`` summarises.

    ``per_class_ap[cls][dist_th]`` for every class and threshold in :data:`DIST_THRESHOLDS`;
    ``per_class_tp[cls][metric]`` for every :data:`TP_METRICS` entry (NaN where undefined);
    ``tp_errors[metric]`` is the NaN-mean of ``per_class_tp`` over classes.
    """

    nds: float
    map: float
    tp_errors: dict[str, float]
    per_class_ap: dict[str, dict[float, float]]
    per_class_tp: dict[str, dict[str, float]]

    def to_flat(self, prefix: str) -> dict[str, float]:
        """Flatten with mmdet3d's ``NuScenesMetric`` key names (unrounded values).

        ``prefix`` is prepended verbatim, e.g. ``"NuScenes metric/pred_instances_3d_NuScenes/"``.
        """
        flat = {f"{prefix}NDS": self.nds, f"{prefix}mAP": self.map}
        for metric, name in _MEAN_TP_NAMES.items():
            flat[f"{prefix}{name}"] = self.tp_errors[metric]
        for cls in CLASSES:
            for dist_th, ap in self.per_class_ap[cls].items():
                flat[f"{prefix}{cls}_AP_dist_{dist_th}"] = ap
            for metric, err in self.per_class_tp[cls].items():
                flat[f"{prefix}{cls}_{metric}"] = err
        return flat


def evaluate(
    gts: Sequence[Box],
    preds: Sequence[Box],
    *,
    class_range: dict[str, float] | None = None,
    max_boxes_per_sample: int = 500,
) -> NuScenesResult:
    """Score ``preds`` against ``gts`` with the nuScenes detection metrics.

    ``class_range`` maps every class in :data:`CLASSES` to its evaluation range in metres
    (default :data:`DEFAULT_CLASS_RANGE`). Raises ValueError on an unknown label, a non-finite
    coordinate, a non-positive size, a NaN, infinite or negative score, or a sample with more
    than ``max_boxes_per_sample`` predictions. The size check is stricter than the devkit's,
    which asserts positive sizes only for boxes that get matched.
    """
    ranges = dict(DEFAULT_CLASS_RANGE if class_range is None else class_range)
    if set(ranges) != set(CLASSES):
        raise ValueError(f"class_range must have exactly the keys {CLASSES}, got {sorted(ranges)}")
    _check_max_boxes(preds, max_boxes_per_sample)

    samples: dict[str, int] = {}
    attributes: dict[str, int] = {}
    pred = _Columns.of(preds, samples, attributes, is_pred=True)
    gt = _Columns.of(gts, samples, attributes, is_pred=False)
    max_dist = np.array([float(ranges[c]) for c in CLASSES])
    pred_kept = pred.ego_dist < max_dist[pred.label]
    gt_kept = gt.ego_dist < max_dist[gt.label]

    per_class_ap: dict[str, dict[float, float]] = {}
    per_class_tp: dict[str, dict[str, float]] = {}
    for c, cls in enumerate(CLASSES):
        curves = _accumulate(
            gt,
            np.flatnonzero(gt_kept & (gt.label == c)),
            pred,
            np.flatnonzero(pred_kept & (pred.label == c)),
            orient_period=np.pi if cls == "barrier" else 2 * np.pi,
        )
        per_class_ap[cls] = {th: _calc_ap(curves[th]) for th in DIST_THRESHOLDS}
        undefined = _UNDEFINED_TP.get(cls, frozenset())
        per_class_tp[cls] = {
            m: float("nan") if m in undefined else _calc_tp(curves[_DIST_TH_TP], m)
            for m in TP_METRICS
        }

    mean_ap = float(np.mean([np.mean(list(per_class_ap[c].values())) for c in CLASSES]))
    tp_errors = {m: float(np.nanmean([per_class_tp[c][m] for c in CLASSES])) for m in TP_METRICS}
    tp_scores = [max(0.0, 1.0 - tp_errors[m]) for m in TP_METRICS]
    nds = float(_MEAN_AP_WEIGHT * mean_ap + np.sum(tp_scores)) / float(
        _MEAN_AP_WEIGHT + len(TP_METRICS)
    )
    return NuScenesResult(nds, mean_ap, tp_errors, per_class_ap, per_class_tp)


def _check_max_boxes(preds: Sequence[Box], max_boxes_per_sample: int) -> None:
    counts: dict[str, int] = {}
    for box in preds:
        counts[box.sample] = counts.get(box.sample, 0) + 1
    for sample, n in counts.items():
        if n > max_boxes_per_sample:
            raise ValueError(
                f"sample {sample!r} has {n} predictions; nuScenes allows at most "
                f"{max_boxes_per_sample} per sample (keep the highest-scoring ones)"
            )


@dataclass(frozen=True)
class _Columns:
    """Boxes as column arrays. ``order`` is the position in the devkit's concatenation:
    sample by sample (samples in order of first appearance), boxes in given order."""

    sample: np.ndarray
    order: np.ndarray
    label: np.ndarray
    xy: np.ndarray
    wlh: np.ndarray
    yaw: np.ndarray
    vel: np.ndarray
    attribute: np.ndarray  # -1: none
    score: np.ndarray
    ego_dist: np.ndarray

    @classmethod
    def of(
        cls,
        boxes: Sequence[Box],
        samples: dict[str, int],
        attributes: dict[str, int],
        is_pred: bool,
    ) -> _Columns:
        label_ids = {c: i for i, c in enumerate(CLASSES)}
        unknown = {b.label for b in boxes} - set(label_ids)
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)}; expected one of {CLASSES}")
        sample = np.array([samples.setdefault(b.sample, len(samples)) for b in boxes], dtype=int)
        attribute = np.array(
            [
                attributes.setdefault(b.attribute, len(attributes)) if b.attribute else -1
                for b in boxes
            ],
            dtype=int,
        )
        num = np.array(
            [(b.x, b.y, b.z, b.w, b.l, b.h, b.yaw, b.vx, b.vy, b.score) for b in boxes], dtype=float
        ).reshape(-1, 10)
        if not np.isfinite(num[:, :7]).all():
            raise ValueError("box positions, sizes and yaws must be finite")
        if not (num[:, 3:6] > 0).all():
            raise ValueError("box sizes (w, l, h) must be positive")
        if is_pred and not (np.isfinite(num[:, 9]).all() and (num[:, 9] >= 0).all()):
            raise ValueError("prediction scores must be finite and non-negative")
        order = np.empty(len(boxes), dtype=int)
        order[np.argsort(sample, kind="stable")] = np.arange(len(boxes))
        xy = num[:, :2]
        return cls(
            sample=sample,
            order=order,
            label=np.array([label_ids[b.label] for b in boxes], dtype=int),
            xy=xy,
            wlh=num[:, 3:6],
            yaw=num[:, 6],
            vel=num[:, 7:9],
            attribute=attribute,
            score=num[:, 9],
            ego_dist=np.sqrt(np.sum(xy**2, axis=1)),
        )


def _code(codes: dict[str, int], attribute: str | None) -> int:
    """A shared integer code per attribute name; -1 for no attribute (None or "")."""
    return codes.setdefault(attribute, len(codes)) if attribute else -1


@dataclass(frozen=True)
class _Curves:
    """The devkit's ``DetectionMetricData``: values at the 101 recall points 0, 0.01, ..., 1."""

    precision: np.ndarray
    confidence: np.ndarray
    errors: dict[str, np.ndarray]

    @classmethod
    def no_predictions(cls) -> _Curves:
        ones = np.ones(_N_RECALL)
        return cls(np.zeros(_N_RECALL), np.zeros(_N_RECALL), dict.fromkeys(TP_METRICS, ones))


def _accumulate(
    gt: _Columns, g: np.ndarray, pred: _Columns, p: np.ndarray, orient_period: float
) -> dict[float, _Curves]:
    """Match one class's in-range predictions ``p`` to its ground truth ``g`` at every threshold."""
    if len(g) == 0:
        return dict.fromkeys(DIST_THRESHOLDS, _Curves.no_predictions())
    p = p[np.lexsort((pred.order[p], pred.score[p]))[::-1]]
    matched = _greedy_match(gt, g, pred, p)
    curves = {}
    for t, dist_th in enumerate(DIST_THRESHOLDS):
        is_tp = matched[t] >= 0
        if not is_tp.any():
            curves[dist_th] = _Curves.no_predictions()
            continue
        tp = np.cumsum(is_tp).astype(float)
        fp = np.cumsum(~is_tp).astype(float)
        rec = tp / float(len(g))
        conf = pred.score[p]
        rec_interp = np.linspace(0, 1, _N_RECALL)
        precision = np.interp(rec_interp, rec, tp / (fp + tp), right=0)
        confidence = np.interp(rec_interp, rec, conf, right=0)
        errors = {}
        if dist_th == _DIST_TH_TP:
            raw = _match_errors(gt, matched[t][is_tp], pred, p[is_tp], orient_period)
            match_conf = conf[is_tp][::-1]
            for metric, err in raw.items():
                # Resample the running mean at the recall points' confidences, as the devkit
                # does (np.interp needs increasing x, hence the reversals).
                errors[metric] = np.interp(confidence[::-1], match_conf, _cummean(err)[::-1])[::-1]
        curves[dist_th] = _Curves(precision, confidence, errors)
    return curves


def _greedy_match(gt: _Columns, g: np.ndarray, pred: _Columns, p: np.ndarray) -> np.ndarray:
    """For each threshold and each prediction in ``p`` (already in match order), the index of
    the ground-truth box it matched, or -1.

    Matching never crosses samples, so all samples advance together: step k takes the k-th
    prediction of every sample, which keeps the devkit's order within each sample.
    """
    matched = np.full((len(DIST_THRESHOLDS), len(p)), -1)
    if len(p) == 0:
        return matched
    # Rank samples by prediction count so the samples still active at step k are a prefix.
    uniq, inv, counts = np.unique(pred.sample[p], return_inverse=True, return_counts=True)
    by_count = np.argsort(-counts, kind="stable")
    slot = np.empty_like(by_count)
    slot[by_count] = np.arange(len(uniq))
    counts = counts[by_count]
    pred_slot, pred_rank = slot[inv], _rank_within(slot[inv])

    g_pos = np.searchsorted(uniq, gt.sample[g])
    g_pos = np.minimum(g_pos, len(uniq) - 1)
    has_pred = uniq[g_pos] == gt.sample[g]
    g = g[has_pred]  # ground truth in samples without predictions stays unmatched
    if len(g) == 0:
        return matched
    gt_slot = slot[g_pos[has_pred]]
    gt_rank = _rank_within(gt_slot)

    n_slots, width = len(uniq), int(gt_rank.max()) + 1
    gt_xy = np.full((n_slots, width, 2), np.inf)
    gt_xy[gt_slot, gt_rank] = gt.xy[g]
    gt_index = np.full((n_slots, width), -1)
    gt_index[gt_slot, gt_rank] = g
    pred_xy = np.zeros((n_slots, int(counts[0]), 2))
    pred_xy[pred_slot, pred_rank] = pred.xy[p]
    pred_pos = np.zeros((n_slots, int(counts[0])), dtype=int)
    pred_pos[pred_slot, pred_rank] = np.arange(len(p))

    thresholds = np.array(DIST_THRESHOLDS)[:, None]
    taken = np.zeros((len(DIST_THRESHOLDS), n_slots, width), dtype=bool)
    for k in range(int(counts[0])):
        active = int(np.searchsorted(-counts, -k, side="left"))  # slots with > k predictions
        diff = pred_xy[:active, k, None, :] - gt_xy[:active]
        dist = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2)  # inf for padded ground truth
        free = np.where(taken[:, :active], np.inf, dist[None])
        nearest = free.argmin(axis=2)
        hit = np.take_along_axis(free, nearest[..., None], axis=2)[..., 0] < thresholds
        t_hit, s_hit = np.nonzero(hit)
        j_hit = nearest[t_hit, s_hit]
        taken[t_hit, s_hit, j_hit] = True
        matched[t_hit, pred_pos[s_hit, k]] = gt_index[s_hit, j_hit]
    return matched


def _rank_within(group: np.ndarray) -> np.ndarray:
    """Position of each element among the elements of its group, in array order."""
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group)
    starts = np.cumsum(counts) - counts
    rank = np.empty_like(order)
    rank[order] = np.arange(len(group)) - starts[group[order]]
    return rank


def _match_errors(
    gt: _Columns, g: np.ndarray, pred: _Columns, p: np.ndarray, orient_period: float
) -> dict[str, np.ndarray]:
    """Errors of the matched pairs ``(g[i], p[i])`` as devkit common/utils.py defines them."""
    d = pred.xy[p] - gt.xy[g]
    v = pred.vel[p] - gt.vel[g]
    gt_wlh, pred_wlh = gt.wlh[g], pred.wlh[p]
    intersection = np.prod(np.minimum(gt_wlh, pred_wlh), axis=1)
    union = np.prod(gt_wlh, axis=1) + np.prod(pred_wlh, axis=1) - intersection
    yaw_diff = (gt.yaw[g] - pred.yaw[p] + orient_period / 2) % orient_period - orient_period / 2
    yaw_diff = np.where(yaw_diff > np.pi, yaw_diff - 2 * np.pi, yaw_diff)
    gt_attr = gt.attribute[g]
    attr_acc = np.where(gt_attr < 0, np.nan, (gt_attr == pred.attribute[p]).astype(float))
    return {
        "trans_err": np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2),
        "scale_err": 1 - intersection / union,
        "orient_err": np.abs(yaw_diff),
        "vel_err": np.sqrt(v[:, 0] ** 2 + v[:, 1] ** 2),
        "attr_err": 1 - attr_acc,
    }


def _cummean(x: np.ndarray) -> np.ndarray:
    """Running mean that skips NaNs (0 before the first number); all-NaN gives all ones."""
    if np.isnan(x).all():
        return np.ones(len(x))
    sums = np.nancumsum(x)
    counts = np.cumsum(~np.isnan(x))
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)


def _calc_ap(curves: _Curves) -> float:
    # Recall points strictly above min_recall (the devkit's +1 drops the min-recall bin).
    precision = curves.precision[round(100 * _MIN_RECALL) + 1 :] - _MIN_PRECISION
    precision[precision < 0] = 0
    return float(np.mean(precision)) / (1.0 - _MIN_PRECISION)


def _calc_tp(curves: _Curves, metric: str) -> float:
    first = round(100 * _MIN_RECALL) + 1
    nonzero = np.nonzero(curves.confidence)[0]
    last = nonzero[-1] if len(nonzero) else 0  # highest recall point reached
    if last < first:
        return 1.0
    return float(np.mean(curves.errors[metric][first : last + 1]))
