"""The mmengine family: mmdet3d 1.x configs (DETR3D-shaped fixture) and minibev."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scaleout.core.errors import UsageError
from scaleout.core.job import Layout, TrialParams
from scaleout.trainers import configread
from scaleout.trainers.mmengine import MMEngineTrainer, minibev

FIX = Path(__file__).resolve().parent.parent / "fixtures"
MMDET3D = FIX / "mmdet3d"
DETR3D = "projects/DETR3D/configs/detr3d_r101_gridmask.py"
MINIBEV_CONFIGS = Path(__file__).resolve().parents[2] / "scaleout" / "minibev" / "configs"


def detr3d() -> MMEngineTrainer:
    return MMEngineTrainer(DETR3D, repo=MMDET3D, reference_gpus=8)


def test_reference_from_mmdet3d_scoped_bases_without_importing_custom_imports():
    before = set(sys.modules)
    ref = detr3d().reference()
    assert not any(m.startswith(("projects", "torch")) for m in set(sys.modules) - before)
    sources = ref.pop("_sources")
    evaluation = ref.pop("evaluation")
    assert ref == {
        "gpus": 8,
        "lr": 2e-4,
        "warmup_iters": 500,
        "warmup_ratio": 1.0 / 3,
        "min_lr_ratio": 1e-3,
        "samples_per_gpu": 1,
        "epochs": 24,
        # data/nuscenes/nuscenes_infos_train.pkl is not in the fixture: the split's size.
        "train_samples": 28130,
        "weight_decay": 0.01,  # optim_wrapper.optimizer.weight_decay
        "beta1": 0.9,  # no optim_wrapper.optimizer.betas: AdamW's default
        "beta2": 0.999,
    }
    # DETR3D validates every 2 epochs, and mmengine validates the last epoch as well.
    assert (evaluation["interval"], evaluation["last_epoch"]) == (2, True)
    assert sources["warmup_iters"] == f"{DETR3D}: param_scheduler[0].end"
    assert sources["min_lr_ratio"] == f"{DETR3D}: param_scheduler[1].eta_min_ratio"


def load_dumped(text: str, tmp_path: Path):
    path = tmp_path / "trial_config.py"
    path.write_text(text)
    return configread.load_config(path)


def test_trial_config_sets_the_keys_and_keeps_the_rest(tmp_path):
    params = TrialParams(
        {
            "lr": 1e-3,
            "warmup_iters": 600,
            "min_lr_ratio": 1e-4,
            "warmup_ratio": 0.25,
            "epochs": 12,
            "seed": 3,
        },
        gpus=16,
        samples_per_gpu=1,
    )
    spec = detr3d().render(params, Layout(2, 8, 16), tmp_path, resume=False, name="t")
    cfg = load_dumped(spec.files["trial_config.py"], tmp_path)
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys.img_backbone.lr_mult == 0.1
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.begin, warmup.end) == ("LinearLR", 0, 600)
    assert warmup.start_factor == 0.25
    assert (cosine.eta_min_ratio, cosine.end, cosine.T_max) == (1e-4, 12, 12)
    assert cfg.train_cfg.max_epochs == 12
    assert cfg.train_dataloader.batch_size == 1
    assert cfg.auto_scale_lr.enable is False
    assert cfg.randomness.seed == 3
    assert cfg.custom_imports == dict(imports=["projects.DETR3D.detr3d"])
    # DETR3D logs to TensorBoard only; scaleout needs scalars.json
    assert {"type": "LocalVisBackend"} in cfg.visualizer.vis_backends
    assert "_base_" not in spec.files["trial_config.py"]


def test_argv_torchrun_per_node_and_resume(tmp_path):
    params = TrialParams(
        {"lr": 1e-3, "warmup_iters": 600, "min_lr_ratio": 1e-4}, gpus=16, samples_per_gpu=1
    )
    spec = detr3d().render(params, Layout(2, 8, 16), Path("/w/t"), resume=True, name="t")
    assert spec.argv == (
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", "2", "--node_rank", "{node_rank}", "--nproc_per_node", "8",
        "--master_addr", "{master_addr}", "--master_port", "{master_port}",
        str(MMDET3D.resolve() / "tools" / "train.py"), "/w/t/trial_config.py",
        "--work-dir", "/w/t", "--launcher", "pytorch", "--resume",
    )  # fmt: skip
    assert spec.env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"
    assert spec.env["PYTHONPATH"] == str(MMDET3D.resolve())
    assert spec.cwd == str(MMDET3D.resolve())


def test_warmup_zero_drops_the_linear_warmup(tmp_path):
    spec = detr3d().render(
        TrialParams.of(1, 1, lr=1e-3, warmup_iters=0, min_lr_ratio=1e-4),
        Layout(1, 1, 1),
        tmp_path,
        resume=False,
        name="t",
    )
    cfg = load_dumped(spec.files["trial_config.py"], tmp_path)
    assert [s.type for s in cfg.param_scheduler] == ["CosineAnnealingLR"]
    assert spec.argv[:2] == (sys.executable, str(MMDET3D.resolve() / "tools" / "train.py"))
    assert spec.argv[-2:] == ("--launcher", "none")


def test_no_virtual_gpus_in_mmdet3d():
    with pytest.raises(UsageError, match="virtual_gpus"):
        detr3d().render(
            TrialParams.of(160, 1, lr=1e-3, warmup_iters=600, min_lr_ratio=1e-4),
            Layout(1, 2, 160),
            Path("/w"),
            resume=False,
            name="t",
        )


def test_virtual_gpus_key_is_set_and_reference_block_wins(tmp_path):
    cfg = tmp_path / "virt.py"
    # a minibev-shaped config: virtual_gpus + a reference block, no repo
    cfg.write_text(
        "optim_wrapper = dict(optimizer=dict(type='AdamW', lr=4e-4))\n"
        "param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0,"
        " end=50), dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=6, T_max=6,"
        " eta_min_ratio=1e-3)]\n"
        "train_dataloader = dict(batch_size=2)\ntrain_cfg = dict(max_epochs=6)\n"
        "virtual_gpus = 8\nauto_scale_lr = dict(enable=False, base_batch_size=16)\n"
        "reference = dict(gpus=8, samples_per_gpu=1, lr=2e-4, train_samples=1000)\n"
    )
    t = MMEngineTrainer(cfg, entry=("-m", "scaleout.minibev.train"), name="minibev")
    ref = t.reference()
    assert (ref["lr"], ref["samples_per_gpu"], ref["train_samples"]) == (2e-4, 1, 1000)
    assert ref["_sources"]["lr"].endswith("reference.lr")
    assert ref["warmup_iters"] == 50  # not in the block: from param_scheduler
    spec = t.render(
        TrialParams.of(160, 1, lr=1e-3, warmup_iters=60, min_lr_ratio=1e-4),
        Layout(1, 2, 160),
        tmp_path,
        resume=False,
        name="t",
    )
    assert load_dumped(spec.files["trial_config.py"], tmp_path).virtual_gpus == 160
    assert spec.argv[3:5] == ("--nnodes", "1")
    assert spec.argv[13:15] == ("-m", "scaleout.minibev.train")
    assert spec.cwd is None


def test_has_checkpoint(tmp_path):
    assert not detr3d().has_checkpoint(tmp_path)
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_2.pth"))
    assert detr3d().has_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "schedulers, match",
    [
        ("[dict(type='MultiStepLR', milestones=[8])]", r"param_scheduler\[0\].type: 'MultiStepLR'"),
        ("[dict(type='LinearLR', by_epoch=True, end=1)]", r"param_scheduler\[0\].by_epoch"),
        ("[dict(type='LinearLR', by_epoch=False, begin=0, end=500)]", "param_scheduler: no Cos"),
        ("None", "param_scheduler: missing"),
    ],
)
def test_bad_schedules(tmp_path, schedulers, match):
    cfg = tmp_path / "bad.py"
    cfg.write_text(
        f"optim_wrapper = dict(optimizer=dict(lr=1e-3))\nparam_scheduler = {schedulers}\n"
    )
    with pytest.raises(UsageError, match=rf"bad.py: {match}"):
        MMEngineTrainer(cfg, entry=("x",)).reference()


def test_missing_lr(tmp_path):
    cfg = tmp_path / "nolr.py"
    cfg.write_text("optim_wrapper = dict(optimizer=dict(type='AdamW'))\n")
    with pytest.raises(UsageError, match=r"nolr.py: optim_wrapper.optimizer.lr: missing"):
        MMEngineTrainer(cfg, entry=("x",)).reference()


def test_unknown_preset():
    with pytest.raises(UsageError, match="unknown minibev preset 'huge'"):
        minibev("huge")


# ---- minibev: one instance of the family, against the real config files ----------------


# One case per preset file that exists (tiny, small, base as they land).
PRESETS = sorted(p.stem for p in MINIBEV_CONFIGS.glob("*.py") if not p.stem.startswith("_"))


@pytest.mark.parametrize("preset", PRESETS)
def test_minibev_presets(preset, tmp_path):
    t = minibev(preset)
    ref = t.reference()
    for key in ("gpus", "samples_per_gpu", "lr", "warmup_iters", "warmup_ratio",
                "min_lr_ratio", "epochs", "train_samples"):  # fmt: skip
        assert key in ref, key
        assert ref["_sources"][key].startswith(str(MINIBEV_CONFIGS / f"{preset}.py"))
    params = TrialParams.of(
        16,
        ref["samples_per_gpu"],
        lr=ref["lr"] * 2,
        warmup_iters=ref["warmup_iters"],
        min_lr_ratio=ref["min_lr_ratio"],
    )
    spec = t.render(params, Layout(1, 1, 16), tmp_path, resume=False, name="t")
    assert spec.argv == (
        sys.executable, "-m", "scaleout.minibev.train", str(tmp_path / "trial_config.py"),
        "--work-dir", str(tmp_path), "--launcher", "none",
    )  # fmt: skip
    cfg = load_dumped(spec.files["trial_config.py"], tmp_path)
    assert cfg.virtual_gpus == 16
    assert cfg.optim_wrapper.optimizer.lr == ref["lr"] * 2
    assert cfg.auto_scale_lr.enable is False
