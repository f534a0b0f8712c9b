"""The co-scaled knobs in each trainer family's own keys: weight decay and betas read from the
config (or its optimizer's default) as the reference, and written into each trial with the
trial's epochs and batch (docs/trainers.md)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from scaleout.core.errors import SpaceError
from scaleout.core.job import Layout, TrialParams
from scaleout.sweep.session import build_plan, check_trainer_takes
from scaleout.trainers import configread
from scaleout.trainers.command import CommandTrainer
from scaleout.trainers.mmcv import MMCVTrainer
from scaleout.trainers.mmengine import MMEngineTrainer, minibev

FIX = Path(__file__).resolve().parent.parent / "fixtures"
BASE = "projects/configs/bevformer/bevformer_base.py"
DETR3D = "projects/DETR3D/configs/detr3d_r101_gridmask.py"
CO = {"weight_decay": 0.04, "beta2": 0.999**20, "epochs": 36}


def trial(gpus=160, spg=2, **values):
    base = {"lr": 1e-3, "warmup_iters": 600, "min_lr_ratio": 1e-4}
    return TrialParams({**base, **values}, gpus=gpus, samples_per_gpu=spg)


def test_mmcv_reference_reads_weight_decay_and_names_adamws_default_betas():
    ref = MMCVTrainer(BASE, repo=FIX / "bevformer", reference_gpus=8).reference()
    src = ref["_sources"]
    assert (ref["weight_decay"], ref["beta1"], ref["beta2"]) == (0.01, 0.9, 0.999)
    assert src["weight_decay"] == f"{BASE}: optimizer.weight_decay"
    assert src["beta2"] == f"{BASE}: no optimizer.betas (AdamW's default)"


def test_mmcv_trial_writes_weight_decay_betas_epochs_and_batch():
    t = MMCVTrainer(BASE, repo=FIX / "bevformer", reference_gpus=8)
    items = dict(t.overrides_for(trial(**CO)))
    assert items["optimizer.weight_decay"] == 0.04
    assert items["optimizer.betas"] == (0.9, 0.999**20)  # beta1 kept: AdamW's default
    assert (items["total_epochs"], items["runner.max_epochs"]) == (36, 36)
    assert items["data.samples_per_gpu"] == 2
    spec = t.render(trial(**CO), Layout(20, 8, 160), Path("/w/t1"), resume=False, name="t1")
    argv = spec.argv
    assert f"optimizer.betas=(0.9,{0.999**20!r})" in argv
    assert "optimizer.weight_decay=0.04" in argv
    # without the knobs, nothing of the optimizer but its lr is written
    plain = dict(t.overrides_for(trial()))
    assert not any(k in plain for k in ("optimizer.weight_decay", "optimizer.betas"))


def test_easycv_generated_config_holds_the_betas_as_a_tuple(tmp_path):
    t = MMCVTrainer("configs/detection3d/bevformer/bevformer_base_r101_dcn_nuscenes.py",
                    repo=FIX / "easycv", flavor="easycv", reference_gpus=8)  # fmt: skip
    spec = t.render(trial(beta2=0.98), Layout(20, 8, 160), tmp_path, resume=False, name="t")
    text = spec.files["trial_config.py"]
    assert "betas=(" in text and "0.98)" in text


def test_mmengine_reads_and_writes_the_optimizer_keys(tmp_path):
    t = MMEngineTrainer(DETR3D, repo=FIX / "mmdet3d", reference_gpus=8)
    ref = t.reference()
    assert (ref["weight_decay"], ref["beta2"]) == (0.01, 0.999)
    assert "AdamW's default" in ref["_sources"]["beta1"]
    spec = t.render(trial(gpus=16, spg=1, **CO), Layout(2, 8, 16), tmp_path, resume=False,
                    name="t")  # fmt: skip
    path = tmp_path / "trial_config.py"
    path.write_text(spec.files["trial_config.py"])
    cfg = configread.load_config(path)
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.04
    assert tuple(cfg.optim_wrapper.optimizer.betas) == (0.9, 0.999**20)
    assert cfg.train_cfg.max_epochs == 36


def test_minibev_takes_every_coscaled_knob(tmp_path):
    t = minibev("small")
    ref = t.reference()
    assert (ref["weight_decay"], ref["beta1"], ref["beta2"]) == (0.01, 0.9, 0.999)
    assert ref["_sources"]["beta2"].endswith("optim_wrapper.optimizer.betas[1]")
    spec = t.render(trial(**CO), Layout(1, 1, 160), tmp_path, resume=False, name="t")
    path = tmp_path / "trial_config.py"
    path.write_text(spec.files["trial_config.py"])
    cfg = configread.load_config(path)
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.04
    assert tuple(cfg.optim_wrapper.optimizer.betas) == (0.9, 0.999**20)
    assert (cfg.train_cfg.max_epochs, cfg.train_dataloader.batch_size) == (36, 2)


def _profile(tmp_path: Path, argv: list[str]) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "name": "toy", "argv": argv,
        "reference": {"gpus": 8, "samples_per_gpu": 1, "lr": 2e-4, "warmup_iters": 10,
                      "warmup_ratio": 0.1, "min_lr_ratio": 1e-3, "epochs": 4,
                      "train_samples": 800, "weight_decay": 0.05, "beta2": 0.99},
        "metrics": {"files": ["log.txt"], "objective": "NDS", "val": ["NDS (?P<NDS>[.0-9]+)"]},
    }))  # fmt: skip
    return path


def test_command_profile_placeholders_take_the_trials_else_the_references(tmp_path):
    argv = ["train", "--wd", "{weight_decay}", "--b2", "{beta2}", "--bs", "{samples_per_gpu}"]
    t = CommandTrainer(_profile(tmp_path, argv))
    spec = t.render(trial(gpus=8, spg=2, weight_decay=0.1), Layout(1, 8, 8), tmp_path,
                    resume=False, name="t")  # fmt: skip
    assert shlex.join(spec.argv) == "train --wd 0.1 --b2 0.99 --bs 2"
    assert {"weight_decay", "beta2", "samples_per_gpu"} <= t.knob_keys()


def _space(tmp_path: Path, profile: Path, search: dict) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "trainer": {"name": "command", "profile": str(profile)}, "search": search,
    }))  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("search", "key", "placeholder"),
    [
        ({"samples_per_gpu": {"range": [1, 4]}}, "search.samples_per_gpu", "{samples_per_gpu}"),
        ({"beta2": {}}, "search.beta2", "{beta2}"),
        ({"epochs": {}}, "search.epochs", "{epochs}"),
    ],
)
def test_a_knob_the_profile_cannot_take_is_refused(tmp_path, search, key, placeholder):
    profile = _profile(tmp_path, ["train", "--lr", "{lr}", "--wd", "{weight_decay}"])
    with pytest.raises(SpaceError) as exc:
        build_plan(_space(tmp_path, profile, search), 8)
    assert exc.value.key == key
    assert placeholder in str(exc.value) and "cannot take" in str(exc.value)


def test_a_knob_the_profile_takes_passes(tmp_path):
    profile = _profile(tmp_path, ["train", "--lr", "{lr}", "--bs", "{global_batch}"])
    plan, trainer, _ = build_plan(_space(tmp_path, profile, {"samples_per_gpu": {"range": [1, 2]}}),
                                  8)  # fmt: skip
    check_trainer_takes(plan, trainer)  # no error: {global_batch} carries the batch
