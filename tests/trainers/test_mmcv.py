"""The mmcv 1.x family: reading BEVFormer/EasyCV/PETR configs as data, rendering trials."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from scaleout.core.errors import StateError, UsageError
from scaleout.core.job import Layout, TrialParams
from scaleout.trainers import configread
from scaleout.trainers.mmcv import MMCVTrainer, generated_config

FIX = Path(__file__).resolve().parent.parent / "fixtures"
BEV = FIX / "bevformer"
BASE = "projects/configs/bevformer/bevformer_base.py"
TUNED = TrialParams(
    {"lr": 1e-3, "warmup_iters": 600, "min_lr_ratio": 1e-4}, gpus=160, samples_per_gpu=1
)


def bevformer(**kw) -> MMCVTrainer:
    return MMCVTrainer(BASE, repo=BEV, reference_gpus=8, **kw)


def test_reference_follows_base_files_and_names_sources():
    ref = bevformer().reference()
    sources = ref.pop("_sources")
    evaluation = ref.pop("evaluation")
    # data.samples_per_gpu is 4 in the dataset base and 1 in bevformer_base.py: the child wins.
    assert ref == {
        "lr": 2e-4,
        "warmup_iters": 500,
        "warmup_ratio": 1.0 / 3,
        "min_lr_ratio": 1e-3,
        "samples_per_gpu": 1,
        "epochs": 24,
        "gpus": 8,
        "train_samples": 28130,  # the named nuScenes train split (tests/trainers/test_datasets.py)
        "weight_decay": 0.01,  # optimizer.weight_decay
        "beta1": 0.9,  # no optimizer.betas: AdamW's default
        "beta2": 0.999,
    }
    # evaluation = dict(interval=1) in bevformer_base.py overrides the dataset base's 24.
    assert evaluation["interval"] == 1 and evaluation["source"] == f"{BASE}: evaluation.interval"
    assert sources["lr"] == f"{BASE}: optimizer.lr"
    assert sources["min_lr_ratio"] == f"{BASE}: lr_config.min_lr_ratio"
    assert sources["gpus"] == "--reference-gpus"


def test_reading_configs_imports_no_plugin_code_nor_torch():
    # The fixture's projects/mmdet3d_plugin raises ImportError when imported.
    before = set(sys.modules)
    bevformer().reference()
    new = set(sys.modules) - before
    assert not any(m.startswith(("projects", "torch")) for m in new)


@pytest.mark.parametrize(
    "layout, resume, expected",
    [
        (
            Layout(20, 8, 160),
            False,
            "python -m torch.distributed.launch --nnodes=20 --node_rank={node_rank} "
            "--nproc_per_node=8 --master_addr={master_addr} --master_port={master_port} "
            "tools/train.py projects/configs/bevformer/bevformer_base.py --launcher pytorch "
            "--work-dir /sweeps/bev160/trial-0003 --deterministic --cfg-options "
            "optimizer.lr=0.001 lr_config.warmup_iters=600 lr_config.min_lr_ratio=0.0001 "
            "data.samples_per_gpu=1",
        ),
        (
            Layout(1, 8, 8),
            True,
            "python -m torch.distributed.launch --nproc_per_node=8 --master_port={master_port} "
            "tools/train.py projects/configs/bevformer/bevformer_base.py --launcher pytorch "
            "--work-dir /sweeps/bev160/trial-0003 --resume-from "
            "/sweeps/bev160/trial-0003/latest.pth --deterministic --cfg-options "
            "optimizer.lr=0.001 lr_config.warmup_iters=600 lr_config.min_lr_ratio=0.0001 "
            "data.samples_per_gpu=1",
        ),
    ],
)
def test_bevformer_trial_is_the_command_a_user_types(layout, resume, expected, monkeypatch):
    params = (
        TUNED
        if layout.world_size == 160
        else TrialParams(
            {"lr": 1e-3, "warmup_iters": 600, "min_lr_ratio": 1e-4}, gpus=8, samples_per_gpu=1
        )
    )
    monkeypatch.setattr(Path, "exists", lambda self: str(self).endswith("latest.pth"))
    spec = bevformer().render(
        params, layout, Path("/sweeps/bev160/trial-0003"), resume=resume, name="trial-0003"
    )
    assert " ".join(spec.argv) == expected
    assert spec.cwd == str(BEV.resolve())
    assert spec.env == {"PYTHONPATH": str(BEV.resolve())}
    assert spec.launch == "node"
    assert "--autoscale-lr" not in spec.argv


def test_fp16_config_uses_the_fp16_script():
    t = MMCVTrainer("projects/configs/bevformer_fp16/bevformer_tiny_fp16.py", repo=BEV)
    assert t.fp16
    ref = t.reference()
    assert (ref["lr"], ref["samples_per_gpu"]) == (2.8e-4, 2)
    spec = t.render(
        TrialParams.of(16, 2, lr=5e-4, warmup_iters=500, min_lr_ratio=1e-3),
        Layout(2, 8, 16),
        Path("/w"),
        resume=False,
        name="t",
    )
    assert "tools/fp16/train.py" in spec.argv


def test_optional_flags_seed_warmup_ratio_epochs_and_torchrun():
    t = bevformer(launch_module="torch.distributed.run", deterministic=False, python="python3")
    params = TrialParams(
        {
            "lr": 1e-3,
            "warmup_iters": 600,
            "min_lr_ratio": 1e-4,
            "warmup_ratio": 0.25,
            "epochs": 12,
            "seed": 7,
        },
        gpus=8,
        samples_per_gpu=1,
    )
    argv = t.render(params, Layout(1, 8, 8), Path("/w"), resume=False, name="t").argv
    assert argv[:3] == ("python3", "-m", "torch.distributed.run")
    assert "--deterministic" not in argv
    assert argv[argv.index("--seed") + 1] == "7"
    opts = argv[argv.index("--cfg-options") + 1 :]
    assert opts == (
        "optimizer.lr=0.001",
        "lr_config.warmup_iters=600",
        "lr_config.warmup_ratio=0.25",
        "lr_config.min_lr_ratio=0.0001",
        "data.samples_per_gpu=1",
        "total_epochs=12",
        "runner.max_epochs=12",
    )


def test_slurm_launcher_is_one_task_per_gpu():
    spec = bevformer(launcher="slurm").render(TUNED, Layout(20, 8, 160), Path("/w"),
                                             resume=False, name="t")  # fmt: skip
    assert spec.launch == "task"
    assert spec.argv[:6] == (
        "python", "-u", "tools/train.py", BASE, "--work-dir=/w", "--launcher=slurm",
    )  # fmt: skip


def test_resume_refuses_a_missing_checkpoint(tmp_path):
    t = bevformer()
    assert not t.has_checkpoint(tmp_path)
    with pytest.raises(StateError, match=r"latest\.pth"):
        t.render(TUNED, Layout(20, 8, 160), tmp_path, resume=True, name="t")
    (tmp_path / "latest.pth").write_bytes(b"")
    assert t.has_checkpoint(tmp_path)
    argv = t.render(TUNED, Layout(20, 8, 160), tmp_path, resume=True, name="t").argv
    assert argv[argv.index("--resume-from") + 1] == str(tmp_path / "latest.pth")


def test_virtual_gpus_are_refused():
    with pytest.raises(UsageError, match="one process per GPU"):
        bevformer().render(TUNED, Layout(1, 2, 160), Path("/w"), resume=False, name="t")


def test_easycv_spells_batch_and_flags_its_way_and_gets_a_generated_config():
    easy = FIX / "easycv"
    cfg = "configs/detection3d/bevformer/bevformer_base_r101_dcn_nuscenes.py"
    t = MMCVTrainer(cfg, repo=easy, flavor="easycv")
    ref = t.reference()
    assert ref["samples_per_gpu"] == 1
    assert ref["_sources"]["samples_per_gpu"] == f"{cfg}: data.imgs_per_gpu"
    spec = t.render(TUNED, Layout(20, 8, 160), Path("/w/t1"), resume=False, name="t1")
    assert spec.argv[spec.argv.index("tools/train.py") :] == (
        "tools/train.py", "/w/t1/trial_config.py", "--launcher", "pytorch", "--work_dir", "/w/t1",
    )  # fmt: skip
    text = spec.files["trial_config.py"]
    assert "data = dict(imgs_per_gpu=1)" in text
    assert "optimizer = dict(lr=0.001)" in text


def test_generated_config_merges_into_the_original(tmp_path):
    # What mmcv does with it: the child's dicts merge into the base's.
    text = generated_config(
        (BEV / BASE).resolve(),
        [("optimizer.lr", 0.001), ("lr_config.warmup_iters", 600), ("data.samples_per_gpu", 2)],
        "t",
    )
    (tmp_path / "trial_config.py").write_text(text)
    cfg = configread.load_config(tmp_path / "trial_config.py", repo=BEV)
    assert cfg.optimizer.lr == 0.001 and cfg.optimizer.type == "AdamW"
    assert cfg.optimizer.paramwise_cfg.custom_keys.img_backbone.lr_mult == 0.1
    assert cfg.lr_config.warmup_iters == 600 and cfg.lr_config.min_lr_ratio == 1e-3
    assert cfg.data.samples_per_gpu == 2 and cfg.data.workers_per_gpu == 4


def test_petr_absolute_min_lr_becomes_a_ratio_and_renders_absolute():
    petr = FIX / "petr"
    t = MMCVTrainer("projects/configs/petrv2/petrv2_vovnet_gridmask_p4_800x320.py", repo=petr,
                    flavor="petr")  # fmt: skip
    ref = t.reference()
    assert ref["min_lr_ratio"] == 1e-3
    assert ref["_sources"]["min_lr_ratio"].endswith("lr_config.min_lr / optimizer.lr")
    argv = t.render(TUNED, Layout(20, 8, 160), Path("/w"), resume=False, name="t").argv
    assert "lr_config.min_lr=1e-07" in argv
    assert "--deterministic" not in argv


def test_repo_is_found_above_an_absolute_config():
    t = MMCVTrainer(BEV / BASE)
    assert t.repo == BEV.resolve()
    assert t.config_arg == BASE


# ---- bad input ------------------------------------------------------------------------


def write_config(tmp_path: Path, body: str) -> Path:
    shutil.copytree(BEV / "tools", tmp_path / "tools")
    path = tmp_path / "cfg.py"
    path.write_text(body)
    return path


GOOD_LR_CONFIG = (
    "lr_config = dict(policy='CosineAnnealing', warmup='linear', warmup_iters=500, "
    "warmup_ratio=1.0 / 3, min_lr_ratio=1e-3)\n"
)


@pytest.mark.parametrize(
    "body, match",
    [
        ("optimizer = dict(type='AdamW')\n" + GOOD_LR_CONFIG, r"cfg.py: optimizer.lr: missing"),
        (
            "optimizer = dict(type='SGD', lr=0.02)\n"
            "lr_config = dict(policy='step', warmup='linear', warmup_iters=500, step=[8, 11])\n",
            r"cfg.py: lr_config.policy: 'step' cannot be mapped; supported: CosineAnnealing",
        ),
        (
            "optimizer = dict(type='AdamW', lr=2e-4)\n"
            "lr_config = dict(policy='CosineRestart', periods=[10], restart_weights=[1])\n",
            r"lr_config.policy: 'CosineRestart'",
        ),
        ("optimizer = dict(type='AdamW', lr=2e-4)\n", r"lr_config.policy: None"),
        (
            "optimizer = dict(type='AdamW', lr=2e-4)\n"
            "lr_config = dict(policy='CosineAnnealing', warmup='exp', warmup_iters=5, "
            "min_lr_ratio=1e-3)\n",
            r"lr_config.warmup: 'exp'",
        ),
        ("optimizer = dict(lr=2e-4\n", r"cfg.py: cannot read the config"),
        (
            "_base_ = ['missing_base.py']\noptimizer = dict(lr=2e-4)\n" + GOOD_LR_CONFIG,
            r"cfg.py: cannot read the config",
        ),
    ],
)
def test_bad_configs_name_the_file_and_key(tmp_path, body, match):
    path = write_config(tmp_path, body)
    with pytest.raises(UsageError, match=match):
        MMCVTrainer(path, repo=tmp_path).reference()


def test_missing_repo_or_config(tmp_path):
    with pytest.raises(UsageError, match=r"nope: --repo: .* does not exist"):
        MMCVTrainer(BASE, repo="nope")
    with pytest.raises(UsageError, match=r"missing.py: --config: .* does not exist"):
        MMCVTrainer("projects/configs/missing.py", repo=BEV)


def test_render_without_a_train_script(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text("optimizer = dict(lr=2e-4)\n" + GOOD_LR_CONFIG)
    t = MMCVTrainer(path)
    assert t.reference()["lr"] == 2e-4  # reading needs no repo
    with pytest.raises(UsageError, match="--repo"):
        t.render(TUNED, Layout(20, 8, 160), Path("/w"), resume=False, name="t")
