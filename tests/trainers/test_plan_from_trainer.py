"""What the plan makes of the trainer's config beside the reference: conflicts with the
space file, the trainer that supplied the values, the evaluation interval, the dataset size.

Configs: tests/fixtures/bevformer (fundamentalvision/BEVFormer, evaluation every epoch, the
fp16 variant's lr 2.8e-4 at 2 samples per GPU), tests/fixtures/hfai_bevformer (HFAiLab's
bevformer_base, evaluation every 24 epochs), tests/fixtures/petr (PETRv2, evaluation at the
last epoch only), tests/fixtures/mmdet3d (DETR3D, val_interval 2). The space file is the
shipped search_spaces/bevformer_base.yaml.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaleout.core.errors import SpaceError
from scaleout.core.job import Layout
from scaleout.core.plan import evaluation_epochs, make_plan, plan_to_dict
from scaleout.core.space import parse_space, resolve_reference
from scaleout.trainers.mmcv import MMCVTrainer
from scaleout.trainers.mmengine import MMEngineTrainer

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
SPACE = yaml.safe_load((ROOT / "search_spaces" / "bevformer_base.yaml").read_text())
BASE = "projects/configs/bevformer/bevformer_base.py"
FP16 = "projects/configs/bevformer_fp16/bevformer_tiny_fp16.py"


def space(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(SPACE)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return data


def plan_with(data: dict[str, Any], trainer: Any, gpus: int = 160, choice: Any = None):
    """What build_plan does with a trainer: the space file's reference over the config's."""
    sp = parse_space(data, "space.yaml")
    values = trainer.reference()
    reference, sources = resolve_reference(sp, values, "space.yaml")
    return make_plan(sp, reference, gpus, reference_sources=sources, space_path="space.yaml",
                     trainer_values=values, trainer=choice)  # fmt: skip


# ---- conflicts and the trainer ----------------------------------------------------------


def test_each_override_of_the_trainer_config_is_listed_with_the_winner():
    fp16 = MMCVTrainer(FP16, repo=FIX / "bevformer")
    choice = {"name": "bevformer", "config": FP16, "repo": str(FIX / "bevformer")}
    plan = plan_with(space(), fp16, choice=choice)
    d = plan_to_dict(plan)
    assert d["reference_conflicts"] == [
        {
            "key": "samples_per_gpu",
            "used": 1,
            "used_source": "space.yaml: reference.samples_per_gpu",
            "overridden": 2,
            "overridden_source": f"{FP16}: data.samples_per_gpu",
        },
        {
            "key": "lr",
            "used": 2e-4,
            "used_source": "space.yaml: reference.lr",
            "overridden": 2.8e-4,
            "overridden_source": f"{FP16}: optimizer.lr",
        },
    ]
    assert plan.reference.lr == 2e-4 and plan.samples_per_gpu == 1  # the space file won
    assert (
        "reference.lr: 0.0002 from the space file is used; the trainer config says 0.00028 "
        f"({FP16}: optimizer.lr)" in plan.notes
    )
    # The plan names the trainer that supplied the values, not the space file's default.
    assert d["trainer"] == choice


def test_equal_values_are_no_conflict_and_a_plan_without_a_trainer_says_the_space_files():
    plan = plan_with(space(), MMCVTrainer(BASE, repo=FIX / "bevformer"))
    assert plan.conflicts == ()  # 1.0 / 3 in the config, 0.3333333333333333 in the file
    d = plan_to_dict(plan)
    assert d["reference_conflicts"] == []
    # Without a trainer choice the plan states the space file's trainer section.
    assert d["trainer"] == parse_space(space(), "space.yaml").trainer.model_dump()


def test_train_samples_from_the_config_with_its_provenance():
    plan = plan_with(
        space(reference__train_samples=None), MMCVTrainer(BASE, repo=FIX / "bevformer")
    )
    assert plan.reference.train_samples == 28130
    assert plan.reference_sources["train_samples"].endswith(
        "the known size of the nuScenes train split, 28,130 samples"
    )
    assert plan.scale.target_iters_per_epoch == 176  # ceil(28130 / 160)


# ---- the evaluation interval ---------------------------------------------------------------


def test_hfai_config_evaluates_once_and_the_plan_says_what_that_does_to_pruning():
    plan = plan_with(space(), MMCVTrainer(BASE, repo=FIX / "hfai_bevformer"))
    e = plan_to_dict(plan)["evaluation"]
    assert e["interval"] == 24 and e["epochs"] == [24] and e["per_trial"] == 1
    assert e["source"] == f"{BASE}: evaluation.interval"
    assert any(
        n.startswith("each trial evaluates once, at epoch 24")
        and "the median pruner sees one NDS per trial and cannot stop one early" in n
        for n in plan.notes
    )


def test_a_shortened_trial_that_never_evaluates_is_refused_up_front():
    petr = MMCVTrainer("projects/configs/petrv2/petrv2_vovnet_gridmask_p4_800x320.py",
                       repo=FIX / "petr", flavor="petr", reference_gpus=8)  # fmt: skip
    with pytest.raises(SpaceError, match=r"space.yaml: search.fixed.epochs: a trial of 12 "
                       r"epochs never evaluates: .*evaluation.interval is 24") as err:  # fmt: skip
        plan_with(space(search__fixed={"epochs": 12}), petr)
    assert "search.fixed.eval_interval to 12 or less" in str(err.value)


def test_the_space_file_sets_the_trials_interval_and_the_trainer_renders_it():
    hfai = MMCVTrainer(BASE, repo=FIX / "hfai_bevformer")
    plan = plan_with(space(search__fixed={"epochs": 12, "eval_interval": 4}), hfai)
    e = plan.evaluation
    assert (e.interval, e.epochs) == (4, (4, 8, 12))
    assert (e.config_interval, e.config_source) == (24, f"{BASE}: evaluation.interval")
    assert any(n.startswith("trials evaluate at epochs 4, 8, 12") for n in plan.notes)
    params = plan.trial_params({"lr": 1e-3, "warmup_iters": 500, "min_lr_ratio": 1e-4})
    assert params["eval_interval"] == 4
    argv = hfai.render(params, Layout(20, 8, 160), Path("/w"), resume=False, name="t").argv
    assert "evaluation.interval=4" in argv and "total_epochs=12" in argv
    with pytest.raises(SpaceError, match=r"search.fixed.eval_interval: a trial of 12 epochs"):
        plan_with(space(search__fixed={"epochs": 12, "eval_interval": 24}), hfai)


def test_mmengine_evaluates_at_the_last_epoch_as_well():
    detr3d = MMEngineTrainer("projects/DETR3D/configs/detr3d_r101_gridmask.py",
                             repo=FIX / "mmdet3d", reference_gpus=8)  # fmt: skip
    plan = plan_with(space(search__fixed={"epochs": 5}), detr3d)
    assert plan.evaluation.epochs == (2, 4, 5)


def test_eval_interval_must_be_a_positive_whole_number():
    with pytest.raises(SpaceError, match=r"search\.fixed: eval_interval must be a positive"):
        parse_space(space(search__fixed={"eval_interval": 0}), "space.yaml")


@pytest.mark.parametrize(
    ("epochs", "interval", "start", "last", "want"),
    [
        (24, 1, None, False, tuple(range(1, 25))),
        (24, 24, None, False, (24,)),
        (12, 24, None, False, ()),
        (12, 24, None, True, (12,)),  # mmengine
        (10, 4, 3, False, (3, 7)),  # mmcv's EvalHook(start=3, interval=4)
        (10, 3, None, True, (3, 6, 9, 10)),
    ],
)
def test_evaluation_epochs(epochs, interval, start, last, want):
    assert evaluation_epochs(epochs, interval, start=start, last_epoch=last) == want
