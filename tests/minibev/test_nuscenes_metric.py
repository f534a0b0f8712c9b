"""Tests for scaleout.minibev.nuscenes_metric.

Two kinds: hand-derived values for the corner cases the devkit defines, and agreement with the
real nuscenes-devkit algorithms (accumulate, calc_ap, calc_tp, DetectionMetrics) on random
boxes. The devkit is not importable as a package under numpy 2 (its ``__init__`` pulls in cv2,
matplotlib and the database loader), so :func:`_load_devkit` imports only the evaluation files
from the installed distribution. CI installs it with::

    pip install --no-deps nuscenes-devkit==1.2.0 pyquaternion==0.9.9
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import time
import types
from dataclasses import replace

import numpy as np
import pytest

from scaleout.minibev.nuscenes_metric import (
    CLASSES,
    DEFAULT_CLASS_RANGE,
    DIST_THRESHOLDS,
    TP_METRICS,
    Box,
    NuScenesResult,
    evaluate,
)

NAN = float("nan")
TIGHT = 1e-12


def car(sample: str = "s0", x: float = 10.0, y: float = 0.0, **kw) -> Box:
    fields = dict(z=0.0, w=2.0, l=4.5, h=1.6, yaw=0.3, attribute="vehicle.moving")
    fields.update(kw)
    return Box(sample, fields.pop("label", "car"), x, y, **fields)


def one_per_class(sample: str = "s0") -> list[Box]:
    """One box per class, 10 m apart, each class with a fitting attribute."""
    attrs = {"pedestrian": "pedestrian.standing", "motorcycle": "cycle.with_rider"}
    attrs["bicycle"] = "cycle.without_rider"
    return [
        car(
            sample,
            x=5.0 + 2.0 * i,
            y=float(i),
            label=cls,
            attribute=attrs.get(cls, "vehicle.parked"),
        )
        for i, cls in enumerate(CLASSES)
    ]


def assert_aps(res: NuScenesResult, cls: str, expected: dict[float, float] | float) -> None:
    if not isinstance(expected, dict):
        expected = dict.fromkeys(DIST_THRESHOLDS, expected)
    assert list(res.per_class_ap[cls]) == list(DIST_THRESHOLDS)
    for th, ap in expected.items():
        assert_close(res.per_class_ap[cls][th], ap)


def assert_close(actual: float, expected: float, tol: float = TIGHT) -> None:
    if math.isnan(expected):
        assert math.isnan(actual), actual
    else:
        assert actual == pytest.approx(expected, abs=tol, rel=0)


# --------------------------------------------------------------------------------------------
# Hand-derived cases
# --------------------------------------------------------------------------------------------


def test_perfect_predictions_score_one():
    gts = one_per_class()
    res = evaluate(gts, gts)
    for cls in CLASSES:
        for th in DIST_THRESHOLDS:
            assert_close(res.per_class_ap[cls][th], 1.0)
    assert_close(res.map, 1.0)
    for m in TP_METRICS:
        assert_close(res.tp_errors[m], 0.0)
    assert_close(res.nds, 1.0)
    assert math.isnan(res.per_class_tp["traffic_cone"]["orient_err"])
    assert math.isnan(res.per_class_tp["traffic_cone"]["vel_err"])
    assert math.isnan(res.per_class_tp["traffic_cone"]["attr_err"])
    assert math.isnan(res.per_class_tp["barrier"]["vel_err"])
    assert math.isnan(res.per_class_tp["barrier"]["attr_err"])
    assert_close(res.per_class_tp["traffic_cone"]["trans_err"], 0.0)
    assert_close(res.per_class_tp["barrier"]["orient_err"], 0.0)


@pytest.mark.parametrize("gts", [[], one_per_class()], ids=["no-gt", "gt"])
def test_empty_predictions(gts):
    # Every class is "no predictions": AP 0, every defined TP error 1.0, so NDS 0.
    res = evaluate(gts, [])
    assert res.map == 0.0
    assert all(ap == 0.0 for aps in res.per_class_ap.values() for ap in aps.values())
    assert res.tp_errors == dict.fromkeys(TP_METRICS, 1.0)
    assert res.per_class_tp["car"] == dict.fromkeys(TP_METRICS, 1.0)
    assert math.isnan(res.per_class_tp["traffic_cone"]["orient_err"])
    assert res.nds == 0.0


def test_class_without_gt_counts_as_zero_ap_and_unit_errors():
    # Only cars exist; a bus prediction without bus GT changes nothing.
    gts = [car()]
    res = evaluate(gts, [car(), car(x=20.0, label="bus")])
    assert_aps(res, "car", 1.0)
    assert_aps(res, "bus", 0.0)
    assert res.per_class_tp["bus"] == dict.fromkeys(TP_METRICS, 1.0)
    assert_close(res.map, 0.1)  # 1 of 10 classes
    assert_close(res.tp_errors["trans_err"], 9 / 10)  # car 0, nine classes 1
    assert_close(res.tp_errors["scale_err"], 9 / 10)
    assert_close(res.tp_errors["orient_err"], 8 / 9)  # traffic_cone NaN
    assert_close(res.tp_errors["vel_err"], 7 / 8)  # traffic_cone, barrier NaN
    assert_close(res.tp_errors["attr_err"], 7 / 8)
    assert_close(res.nds, (5 * 0.1 + 0.1 + 0.1 + 1 / 9 + 1 / 8 + 1 / 8) / 10)


def test_gt_without_attributes_gives_attr_err_one():
    # All attribute accuracies are NaN; the devkit's cummean turns an all-NaN curve into ones.
    gts = [car(attribute=None)]
    res = evaluate(gts, [car(attribute="vehicle.moving")])
    assert res.per_class_tp["car"]["attr_err"] == 1.0
    assert res.per_class_tp["car"]["trans_err"] == 0.0


def test_wrong_attribute_gives_attr_err_one():
    res = evaluate([car()], [car(attribute="vehicle.parked")])
    assert res.per_class_tp["car"]["attr_err"] == 1.0


def test_orientation_error_wraps_and_barrier_is_pi_periodic():
    gts = [car(yaw=3.0), car(x=20.0, yaw=0.2, label="barrier")]
    preds = [car(yaw=-3.0), car(x=20.0, yaw=0.2 + math.pi + 0.1, label="barrier")]
    res = evaluate(gts, preds)
    assert_close(res.per_class_tp["car"]["orient_err"], 2 * math.pi - 6.0)
    assert_close(res.per_class_tp["barrier"]["orient_err"], 0.1)


def test_scale_error_is_one_minus_aligned_iou():
    # Centre and yaw are ignored; the intersection is the box of the smaller dimensions.
    res = evaluate([car(w=2.0, l=4.0, h=1.5)], [car(x=10.5, yaw=1.0, w=1.0, l=5.0, h=1.5)])
    intersection = 1.0 * 4.0 * 1.5
    assert_close(
        res.per_class_tp["car"]["scale_err"], 1 - intersection / (12.0 + 7.5 - intersection)
    )
    assert_close(res.per_class_tp["car"]["trans_err"], 0.5)


def test_velocity_error_and_nan_gt_velocity():
    # Two matches, scores 0.9 then 0.8: velocity errors [NaN, 1]. The devkit's cummean gives
    # [0, 1] (a leading NaN counts as 0), resampled over confidence: 0 up to recall 0.5, then
    # 2r - 1. Mean over recall 0.11..1.00: sum_{i=51}^{100}(i/50 - 1) / 90 = 25.5 / 90.
    gts = [car(vx=NAN, vy=0.0), car(x=20.0)]
    preds = [car(score=0.9, vx=5.0), car(x=20.0, score=0.8, vx=1.0)]
    res = evaluate(gts, preds)
    assert_close(res.per_class_tp["car"]["vel_err"], 25.5 / 90, tol=1e-9)
    all_nan = evaluate([car(vx=NAN)], [car()])
    assert all_nan.per_class_tp["car"]["vel_err"] == 1.0


def test_offset_of_1_5_m_matches_only_at_2_and_4_m():
    res = evaluate([car()], [car(x=11.5)])
    assert_aps(res, "car", {0.5: 0.0, 1.0: 0.0, 2.0: 1.0, 4.0: 1.0})
    assert_close(res.map, 0.05)
    assert_close(res.per_class_tp["car"]["trans_err"], 1.5)


def test_match_needs_distance_strictly_below_threshold():
    # Exactly 2 m: a match at 4 m only, and TP errors (taken at 2 m) are 1.0.
    res = evaluate([car()], [car(x=12.0)])
    assert_aps(res, "car", {0.5: 0.0, 1.0: 0.0, 2.0: 0.0, 4.0: 1.0})
    assert res.per_class_tp["car"]["trans_err"] == 1.0


def test_score_tie_within_a_sample_matches_the_later_prediction_first():
    # Equal scores: the devkit reverses an ascending sort of (score, index), so the later box
    # is matched first. Later box 0.1 m off -> TP, the other becomes an FP.
    gts = [car()]
    res = evaluate(gts, [car(x=10.3, score=0.5), car(x=10.1, score=0.5)])
    assert_close(res.per_class_tp["car"]["trans_err"], 0.1)
    swapped = evaluate(gts, [car(x=10.1, score=0.5), car(x=10.3, score=0.5)])
    assert_close(swapped.per_class_tp["car"]["trans_err"], 0.3)
    # Precision 1 up to recall 1, where it drops to 1/2: (89 * 0.9 + 0.4) / 90 / 0.9.
    assert_close(res.per_class_ap["car"][2.0], 80.5 / 81)


def test_score_tie_across_samples_follows_sample_concatenation_order():
    # s0 holds a TP, s1 an FP, same score. Concatenated s0 then s1, the FP (later) comes first:
    # precision rises linearly 0 -> 1/2 over recall 0 -> 1, AP = sum_{i=21}^{100}(i/200 - 0.1)
    # / 90 / 0.9 = 0.2. Listing s1 first makes the TP come first: AP 80.5 / 81.
    tp, fp = car("s0", score=0.5), car("s1", score=0.5)
    assert_close(evaluate([car("s0")], [tp, fp]).per_class_ap["car"][1.0], 0.2, tol=1e-9)
    assert_close(evaluate([car("s0")], [fp, tp]).per_class_ap["car"][1.0], 80.5 / 81)


def test_equidistant_gt_goes_to_the_first_listed():
    # Both GT boxes are at distance 0; the devkit keeps the first strict minimum.
    gts = [car(attribute="vehicle.moving"), car(attribute="vehicle.parked")]
    res = evaluate(gts, [car(attribute="vehicle.parked")])
    assert res.per_class_tp["car"]["attr_err"] == 1.0
    assert (
        evaluate(gts[::-1], [car(attribute="vehicle.parked")]).per_class_tp["car"]["attr_err"]
        == 0.0
    )


def test_greedy_matching_takes_nearest_free_gt_by_score_order():
    # p1 (0.9) is 0.8 m from g2 and 1.0 m from g1, so takes g2. p2 (0.8) is 0.7 m from g2 but
    # g2 is taken; g1 is 2.5 m away: a match at 4 m only.
    gts = [car(x=10.0), car(x=11.8)]
    preds = [car(x=11.0, score=0.9), car(x=12.5, score=0.8)]
    res = evaluate(gts, preds)
    # At 1 and 2 m: TP then FP, both at recall 0.5. np.interp over the repeated recall gives
    # precision 1 below 0.5 and 1/2 at 0.5: (39 * 0.9 + 0.4) / 90 / 0.9 = 35.5 / 81.
    assert_close(res.per_class_ap["car"][2.0], 35.5 / 81)
    assert_close(res.per_class_ap["car"][4.0], 1.0)
    assert_close(res.per_class_tp["car"]["trans_err"], 0.8)


def test_boxes_outside_class_range_are_dropped():
    gts = [
        car(x=49.9),
        car(x=30.0, y=40.0),  # exactly 50 m: dropped (the devkit keeps dist < range)
        car(x=55.0),
        car(x=45.0, label="pedestrian"),  # pedestrian range is 40 m
    ]
    preds = [car(x=49.9), car(x=30.0, y=40.0), car(x=45.0, label="pedestrian")]
    res = evaluate(gts, preds)
    assert_aps(res, "car", 1.0)
    assert_aps(res, "pedestrian", 0.0)
    # With a 60 m car range, the 50 m and 55 m GT count and the 55 m one is missed:
    # recall 2/3, precision 1 for recall 0.11..0.66 (56 points): AP 56 / 90.
    wider = evaluate(gts, preds, class_range={**DEFAULT_CLASS_RANGE, "car": 60.0})
    assert_close(wider.per_class_ap["car"][0.5], 56 / 90)


def test_class_range_must_name_every_class():
    with pytest.raises(ValueError, match="class_range"):
        evaluate([car()], [car()], class_range={"car": 50.0})


def test_more_than_max_boxes_per_sample_is_refused():
    boxes = [car(x=float(i % 40), y=float(i // 40)) for i in range(501)]
    with pytest.raises(ValueError, match="at most 500"):
        evaluate([car()], boxes)
    evaluate([car()], boxes[:500])  # 500 is allowed
    evaluate([car()], boxes[:250] + [replace(b, sample="s1") for b in boxes[250:]])
    with pytest.raises(ValueError, match="at most 10"):
        evaluate([car()], boxes[:11], max_boxes_per_sample=10)


@pytest.mark.parametrize(
    "bad",
    [
        car(label="van"),
        car(score=NAN),
        car(score=-0.1),
        car(w=0.0),
        car(x=NAN),
    ],
    ids=["label", "nan-score", "negative-score", "zero-size", "nan-position"],
)
def test_invalid_predictions_are_refused(bad):
    with pytest.raises(ValueError):
        evaluate([car()], [bad])


def test_to_flat_uses_mmdet3d_names():
    res = evaluate([car()], [car(x=11.5)])
    prefix = "NuScenes metric/pred_instances_3d_NuScenes/"
    flat = res.to_flat(prefix)
    assert len(flat) == 2 + 5 + len(CLASSES) * (4 + 5)
    assert flat[prefix + "NDS"] == res.nds
    assert flat[prefix + "mAP"] == res.map
    assert flat[prefix + "mATE"] == res.tp_errors["trans_err"]
    assert flat[prefix + "mAAE"] == res.tp_errors["attr_err"]
    assert flat[prefix + "car_AP_dist_0.5"] == 0.0
    assert_close(flat[prefix + "car_AP_dist_2.0"], 1.0)
    assert flat[prefix + "car_trans_err"] == 1.5
    assert math.isnan(flat[prefix + "traffic_cone_vel_err"])


def test_large_evaluation_is_fast():
    gts, preds = random_scene(np.random.default_rng(0), n_samples=500, max_gt=30)
    evaluate(gts[:10], preds[:10])  # warm-up
    start = time.perf_counter()
    evaluate(gts, preds)
    # ~15k GT and ~20k predictions; about 0.3 s on one core, so 10 s is a wide margin.
    assert time.perf_counter() - start < 10.0


# --------------------------------------------------------------------------------------------
# Agreement with the real nuscenes-devkit
# --------------------------------------------------------------------------------------------

ATTRIBUTES = (
    "pedestrian.moving",
    "pedestrian.sitting_lying_down",
    "pedestrian.standing",
    "cycle.with_rider",
    "cycle.without_rider",
    "vehicle.moving",
    "vehicle.parked",
    "vehicle.stopped",
)


def random_scene(
    rng: np.random.Generator, n_samples: int, max_gt: int
) -> tuple[list[Box], list[Box]]:
    """GT scattered to 60 m, predictions as noisy copies (0.1-3 m off), duplicates and
    clutter, scores on a coarse grid so that ties are common, some NaN velocities."""
    gts, preds = [], []
    for s in range(n_samples):
        sample = f"sample-{s}"
        for _ in range(rng.integers(0, max_gt + 1)):
            label = CLASSES[rng.integers(len(CLASSES))]
            r, phi = 60.0 * math.sqrt(rng.random()), rng.uniform(-math.pi, math.pi)
            gt = Box(
                sample,
                label,
                r * math.cos(phi),
                r * math.sin(phi),
                rng.normal(),
                *rng.uniform(0.3, 5.0, size=3),
                yaw=rng.uniform(-4.0, 4.0),
                vx=NAN if rng.random() < 0.1 else rng.normal(0, 3),
                vy=rng.normal(0, 3),
                attribute=None if rng.random() < 0.2 else ATTRIBUTES[rng.integers(8)],
            )
            gts.append(gt)
            for _ in range(rng.choice(3, p=(0.25, 0.6, 0.15))):
                off = rng.normal(0.0, rng.choice((0.1, 0.5, 1.5, 3.0)), size=2)
                preds.append(
                    replace(
                        gt,
                        label=label if rng.random() < 0.9 else CLASSES[rng.integers(10)],
                        x=gt.x + off[0],
                        y=gt.y + off[1],
                        w=gt.w * rng.uniform(0.7, 1.3),
                        yaw=gt.yaw + rng.normal(0, 0.5) + math.pi * rng.integers(2),
                        vx=NAN if rng.random() < 0.05 else rng.normal(0, 3),
                        vy=rng.normal(0, 3),
                        attribute=ATTRIBUTES[rng.integers(8)] if rng.random() < 0.9 else None,
                        score=float(rng.integers(0, 21)) / 20,
                    )
                )
        for _ in range(rng.integers(0, 6)):  # clutter
            preds.append(
                Box(
                    sample,
                    CLASSES[rng.integers(10)],
                    *rng.uniform(-55, 55, size=2),
                    0.0,
                    *rng.uniform(0.3, 5.0, size=3),
                    yaw=rng.uniform(-4.0, 4.0),
                    attribute=ATTRIBUTES[rng.integers(8)],
                    score=float(rng.integers(0, 21)) / 20,
                )
            )
    order = rng.permutation(len(preds))  # interleave samples
    return gts, [preds[i] for i in order]


DEVKIT_MISSING = (
    "the nuscenes-devkit evaluation files are needed for this test; install them with "
    "`pip install --no-deps nuscenes-devkit==1.2.0 pyquaternion==0.9.9`"
)


def _load_devkit() -> types.SimpleNamespace:
    """Import nuscenes.eval.{common,detection} without running ``nuscenes/__init__.py``.

    The package ``__init__`` and ``nuscenes.utils.data_classes`` import cv2, matplotlib and the
    database loader, none of which the evaluation algorithm uses, so the two packages are
    replaced by bare modules while the evaluation files load, then sys.modules is restored.
    """
    spec = importlib.util.find_spec("nuscenes")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(DEVKIT_MISSING)
    if importlib.util.find_spec("pyquaternion") is None:
        pytest.fail(DEVKIT_MISSING)
    root = next(iter(spec.submodule_search_locations))
    saved = {k: v for k, v in sys.modules.items() if k == "nuscenes" or k.startswith("nuscenes.")}
    stubs = {
        "nuscenes": [root],
        "nuscenes.utils": [f"{root}/utils"],
        "nuscenes.utils.data_classes": None,  # only boxes_to_sensor uses its Box
    }
    try:
        for name, path in stubs.items():
            module = types.ModuleType(name)
            if path is not None:
                module.__path__ = path
            sys.modules[name] = module
        sys.modules["nuscenes.utils.data_classes"].Box = object
        algo = importlib.import_module("nuscenes.eval.detection.algo")
        data = importlib.import_module("nuscenes.eval.detection.data_classes")
        common = importlib.import_module("nuscenes.eval.common.data_classes")
        utils = importlib.import_module("nuscenes.eval.common.utils")
        constants = importlib.import_module("nuscenes.eval.detection.constants")
    except ImportError as exc:
        pytest.fail(f"{DEVKIT_MISSING} ({exc!r})")
    finally:
        for name in [k for k in sys.modules if k == "nuscenes" or k.startswith("nuscenes.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    from pyquaternion import Quaternion

    return types.SimpleNamespace(
        accumulate=algo.accumulate,
        calc_ap=algo.calc_ap,
        calc_tp=algo.calc_tp,
        center_distance=utils.center_distance,
        DetectionBox=data.DetectionBox,
        DetectionConfig=data.DetectionConfig,
        DetectionMetrics=data.DetectionMetrics,
        EvalBoxes=common.EvalBoxes,
        TP_METRICS=constants.TP_METRICS,
        Quaternion=Quaternion,
    )


@pytest.fixture(scope="module")
def devkit() -> types.SimpleNamespace:
    return _load_devkit()


UNDEFINED_TP = {
    "traffic_cone": ("attr_err", "vel_err", "orient_err"),
    "barrier": ("attr_err", "vel_err"),
}


def devkit_evaluate(dk, gts: list[Box], preds: list[Box], class_range: dict[str, float]):
    """DetectionEval.__init__'s distance filter and DetectionEval.evaluate, minus file I/O."""
    cfg = dk.DetectionConfig(
        class_range=dict(class_range),
        dist_fcn="center_distance",
        dist_ths=list(DIST_THRESHOLDS),
        dist_th_tp=2.0,
        min_recall=0.1,
        min_precision=0.1,
        max_boxes_per_sample=500,
        mean_ap_weight=5,
    )

    def eval_boxes(boxes: list[Box], is_pred: bool):
        out = dk.EvalBoxes()
        for b in boxes:
            rotation = dk.Quaternion(axis=[0.0, 0.0, 1.0], angle=b.yaw)
            box = dk.DetectionBox(
                sample_token=b.sample,
                translation=(b.x, b.y, b.z),
                size=(b.w, b.l, b.h),
                rotation=tuple(rotation.elements),
                velocity=(b.vx, b.vy),
                ego_translation=(b.x, b.y, b.z),
                detection_name=b.label,
                detection_score=float(b.score) if is_pred else -1.0,
                attribute_name=b.attribute or "",
            )
            out.add_boxes(b.sample, [box])
        for token in out.sample_tokens:  # loaders.filter_eval_boxes, distance part
            out.boxes[token] = [
                box for box in out[token] if box.ego_dist < class_range[box.detection_name]
            ]
        return out

    # The devkit requires the same sample set on both sides.
    tokens = list(dict.fromkeys(b.sample for b in [*preds, *gts]))
    pred_boxes, gt_boxes = eval_boxes(preds, True), eval_boxes(gts, False)
    for token in tokens:
        pred_boxes.add_boxes(token, [])
        gt_boxes.add_boxes(token, [])

    metrics = dk.DetectionMetrics(cfg)
    for cls in cfg.class_names:
        mds = {
            th: dk.accumulate(gt_boxes, pred_boxes, cls, dk.center_distance, th)
            for th in cfg.dist_ths
        }
        for th in cfg.dist_ths:
            metrics.add_label_ap(cls, th, dk.calc_ap(mds[th], cfg.min_recall, cfg.min_precision))
        for metric in dk.TP_METRICS:
            # evaluate.py: these errors are undefined for cones and barriers.
            if metric in UNDEFINED_TP.get(cls, ()):
                tp = np.nan
            else:
                tp = dk.calc_tp(mds[cfg.dist_th_tp], cfg.min_recall, metric)
            metrics.add_label_tp(cls, metric, tp)
    return metrics


def assert_matches_devkit(res: NuScenesResult, metrics) -> None:
    for cls in CLASSES:
        for th in DIST_THRESHOLDS:
            assert_close(res.per_class_ap[cls][th], metrics.get_label_ap(cls, th), tol=1e-6)
        for m in TP_METRICS:
            assert_close(res.per_class_tp[cls][m], metrics.get_label_tp(cls, m), tol=1e-6)
    for m in TP_METRICS:
        assert_close(res.tp_errors[m], metrics.tp_errors[m], tol=1e-6)
    assert_close(res.map, metrics.mean_ap, tol=1e-6)
    assert_close(res.nds, metrics.nd_score, tol=1e-6)


@pytest.mark.parametrize(
    ("seed", "n_samples", "max_gt"),
    [(1, 2, 6), (2, 3, 20), (3, 8, 12), (4, 20, 8), (5, 40, 6), (6, 6, 40)],
)
def test_agrees_with_devkit_on_random_scenes(devkit, seed, n_samples, max_gt):
    gts, preds = random_scene(np.random.default_rng(seed), n_samples, max_gt)
    res = evaluate(gts, preds)
    assert_matches_devkit(res, devkit_evaluate(devkit, gts, preds, DEFAULT_CLASS_RANGE))
    assert 0.0 < res.map < 1.0  # the scenes are neither trivial nor hopeless


def test_agrees_with_devkit_with_other_ranges(devkit):
    gts, preds = random_scene(np.random.default_rng(7), 10, 15)
    ranges = {cls: 20.0 + 4 * i for i, cls in enumerate(CLASSES)}
    res = evaluate(gts, preds, class_range=ranges)
    assert_matches_devkit(res, devkit_evaluate(devkit, gts, preds, ranges))


@pytest.mark.parametrize(
    "case",
    [
        "empty-preds",
        "empty-all",
        "perfect",
        "ties",
        "tie-across-samples",
        "nan-velocity",
        "at-threshold",
        "at-range",
        "gt-distance-tie",
    ],
)
def test_agrees_with_devkit_on_corner_cases(devkit, case):
    gts, preds = {
        "empty-preds": (one_per_class(), []),
        "empty-all": ([], []),
        "perfect": (one_per_class(), one_per_class()),
        "ties": ([car()], [car(x=10.3, score=0.5), car(x=10.1, score=0.5)]),
        "tie-across-samples": ([car("s0")], [car("s0", score=0.5), car("s1", score=0.5)]),
        "nan-velocity": (
            [car(vx=NAN), car(x=20.0)],
            [car(score=0.9, vx=5.0), car(x=20.0, score=0.8, vx=1.0)],
        ),
        "at-threshold": ([car(), car(x=20.0)], [car(x=12.0), car(x=21.0, score=0.4)]),
        "at-range": ([car(x=30.0, y=40.0), car(x=49.0)], [car(x=30.0, y=40.0), car(x=49.5)]),
        "gt-distance-tie": (
            [car(attribute="vehicle.moving"), car(attribute="vehicle.parked")],
            [car(attribute="vehicle.parked")],
        ),
    }[case]
    res = evaluate(gts, preds)
    assert_matches_devkit(res, devkit_evaluate(devkit, gts, preds, DEFAULT_CLASS_RANGE))
