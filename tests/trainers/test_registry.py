"""get_trainer and the reference merge that `scaleout plan` uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaleout.core.errors import UsageError
from scaleout.core.space import parse_space, resolve_reference
from scaleout.trainers import get_trainer
from scaleout.trainers.command import CommandTrainer
from scaleout.trainers.mmcv import MMCVTrainer
from scaleout.trainers.mmengine import MMEngineTrainer

FIX = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.mark.parametrize(
    "name, kwargs, cls, flavor",
    [
        ("bevformer", {"config": "projects/configs/bevformer/bevformer_base.py",
                       "repo": FIX / "bevformer"}, MMCVTrainer, "bevformer"),
        ("mmcv", {"config": "projects/configs/bevformer/bevformer_base.py",
                  "repo": FIX / "bevformer"}, MMCVTrainer, "bevformer"),
        ("easycv", {"config": "configs/detection3d/bevformer/bevformer_base_r101_dcn_nuscenes.py",
                    "repo": FIX / "easycv"}, MMCVTrainer, "easycv"),
        ("petr", {"config": "projects/configs/petrv2/petrv2_vovnet_gridmask_p4_800x320.py",
                  "repo": FIX / "petr"}, MMCVTrainer, "petr"),
        ("mmengine", {"config": "projects/DETR3D/configs/detr3d_r101_gridmask.py",
                      "repo": FIX / "mmdet3d"}, MMEngineTrainer, None),
        ("command", {"profile": "paddle3d_petrv2"}, CommandTrainer, None),
    ],
)  # fmt: skip
def test_get_trainer(name, kwargs, cls, flavor):
    t = get_trainer(name, **kwargs)
    assert isinstance(t, cls)
    if flavor:
        assert t.flavor.name == flavor


def test_unknown_trainer_lists_the_known_ones():
    with pytest.raises(UsageError, match="known: minibev, mmengine, bevformer, mmcv, easycv"):
        get_trainer("detectron")


@pytest.mark.parametrize("name, flag", [("bevformer", "--config"), ("command", "--profile")])
def test_required_flags(name, flag):
    with pytest.raises(UsageError, match=flag):
        get_trainer(name)


def test_space_file_values_win_and_every_value_says_where_it_came_from():
    trainer_ref = get_trainer(
        "bevformer",
        config="projects/configs/bevformer/bevformer_base.py",
        repo=FIX / "bevformer",
        reference_gpus=8,
    ).reference()
    space = parse_space({"reference": {"train_samples": 28130, "lr": 2.5e-4}})
    ref, sources = resolve_reference(space, trainer_ref, "lr_scaling.yaml")
    assert ref.lr == 2.5e-4 and ref.warmup_iters == 500 and ref.gpus == 8
    assert sources["lr"] == "lr_scaling.yaml: reference.lr"
    assert sources["train_samples"] == "lr_scaling.yaml: reference.train_samples"
    assert sources["warmup_iters"].endswith("bevformer_base.py: lr_config.warmup_iters")
    assert sources["gpus"] == "--reference-gpus"
