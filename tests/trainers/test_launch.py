"""How mmcv trials start: fp16 entry points, extra arguments, self-launching train scripts.

Fixtures: tests/fixtures/bevformer mirrors fundamentalvision/BEVFormer (tools/dist_train.sh,
tools/fp16/dist_train.sh + tools/fp16/train.py, projects/configs/bevformer_fp16/);
tests/fixtures/hfai_bevformer mirrors HFAiLab/BEVFormer, whose tools/train.py spawns one
worker per GPU itself and whose tools/dist_train.sh runs plain `python tools/train.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scaleout.core.errors import UsageError
from scaleout.core.job import NODE_PLACEHOLDERS, Layout, TrialParams
from scaleout.trainers import get_trainer
from scaleout.trainers.mmcv import MMCVTrainer

FIX = Path(__file__).resolve().parent.parent / "fixtures"
BEV = FIX / "bevformer"
HFAI = FIX / "hfai_bevformer"
BASE = "projects/configs/bevformer/bevformer_base.py"
FP16 = "projects/configs/bevformer_fp16/bevformer_tiny_fp16.py"
T160 = TrialParams.of(160, 1, lr=1e-3, warmup_iters=600, min_lr_ratio=1e-4)
T16 = TrialParams.of(16, 2, lr=5e-4, warmup_iters=500, min_lr_ratio=1e-3)


def argv_of(t: MMCVTrainer, params: TrialParams, layout: Layout) -> tuple[str, ...]:
    return t.render(params, layout, Path("/w/t1"), resume=False, name="t1").argv


# ---- fp16 ------------------------------------------------------------------------------


def test_fp16_config_runs_what_tools_fp16_dist_train_sh_runs():
    # tools/fp16/dist_train.sh: python -m torch.distributed.launch --nproc_per_node=$GPUS
    #   --master_port=$PORT $(dirname "$0")/train.py $CONFIG --launcher pytorch ... --deterministic
    t = MMCVTrainer(FP16, repo=BEV)
    assert t.fp16
    argv = argv_of(t, T16, Layout(2, 8, 16))
    i = argv.index("tools/fp16/train.py")
    assert argv[i + 1 : i + 5] == (FP16, "--launcher", "pytorch", "--work-dir")
    assert "--deterministic" in argv


@pytest.mark.parametrize(
    ("fp16", "script"), [(True, "tools/fp16/train.py"), (False, "tools/train.py")]
)
def test_the_space_file_can_say_fp16_either_way(fp16, script):
    # trainer.options.fp16 reaches the adapter through get_trainer's options.
    t = get_trainer("bevformer", config=BASE, repo=str(BEV), fp16=fp16)
    assert script in argv_of(t, T160, Layout(20, 8, 160))
    t = get_trainer("bevformer", config=FP16, repo=str(BEV), fp16=fp16)
    assert script in argv_of(t, T16, Layout(2, 8, 16))


def test_fp16_asked_for_in_a_repo_without_the_fp16_script(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "train.py").write_text("")
    (tmp_path / "cfg.py").write_text(
        "optimizer = dict(type='AdamW', lr=2.8e-4)\n"
        "lr_config = dict(policy='CosineAnnealing', warmup='linear', warmup_iters=500, "
        "warmup_ratio=1.0 / 3, min_lr_ratio=1e-3)\n"
        "fp16 = dict(loss_scale=512.)\n"
    )
    t = MMCVTrainer(tmp_path / "cfg.py", repo=tmp_path, fp16=True)
    with pytest.raises(UsageError, match=r"tools/fp16/train.py: fp16 is asked for"):
        argv_of(t, T16, Layout(2, 8, 16))
    # Detected from the config only, a repo without the script keeps tools/train.py.
    assert "tools/train.py" in argv_of(MMCVTrainer(tmp_path / "cfg.py", repo=tmp_path), T16,
                                       Layout(2, 8, 16))  # fmt: skip


# ---- extra arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [["--no-validate", "--gpus", "8"], "--no-validate --gpus 8"], ids=["list", "string"]
)
def test_extra_args_come_before_cfg_options(extra):
    # --cfg-options takes every argument after it; an extra flag there would be a config key.
    t = get_trainer("bevformer", config=BASE, repo=str(BEV), reference_gpus=8, extra_args=extra)
    argv = argv_of(t, T160, Layout(20, 8, 160))
    i = argv.index("--no-validate")
    assert argv[i : i + 3] == ("--no-validate", "--gpus", "8")
    assert i < argv.index("--cfg-options")


def test_extra_args_must_be_strings():
    with pytest.raises(UsageError, match=r"trainer\.options\.extra_args"):
        MMCVTrainer(BASE, repo=BEV, extra_args=[{"a": 1}])


def test_extra_args_for_mmengine_and_command_trainers():
    mm = get_trainer("mmengine", config="projects/DETR3D/configs/detr3d_r101_gridmask.py",
                     repo=str(FIX / "mmdet3d"), extra_args=["--amp"])  # fmt: skip
    argv = mm.render(T16, Layout(2, 8, 16), Path("/w"), resume=False, name="t").argv
    assert argv[argv.index("--work-dir") + 2] == "--amp"
    cmd = get_trainer("command", profile="paddle3d_petrv2", repo=str(FIX / "paddle3d"),
                      config="configs/petr/petrv2_vovnet_gridmask_p4_800x320.yml",
                      extra_args="--quant_config q.yml")  # fmt: skip
    argv = cmd.render(T16, Layout(2, 8, 16), Path("/w"), resume=False, name="t").argv
    assert argv[-2:] == ("--quant_config", "q.yml")


# ---- trainers that start their own workers ------------------------------------------------


def test_a_self_spawning_train_script_is_detected_and_started_once_per_node():
    t = MMCVTrainer(BASE, repo=HFAI, reference_gpus=8)
    assert t.launch == "self"
    spec = t.render(T160, Layout(20, 8, 160), Path("/w/t1"), resume=False, name="t1")
    # One process per node (launch "node"), which spawns torch.cuda.device_count() workers;
    # the variables HFAiLab's train.py reads come first, filled per node by the executor.
    assert spec.launch == "node"
    assert spec.argv[:7] == (
        "env", "WORLD_SIZE=20", "RANK={node_rank}", "MASTER_ADDR={master_addr}",
        "MASTER_PORT={master_port}", "python", "tools/train.py",
    )  # fmt: skip
    assert "torch.distributed.launch" not in spec.argv and "-m" not in spec.argv
    assert spec.argv[7:11] == (BASE, "--launcher", "pytorch", "--work-dir")
    assert "--deterministic" in spec.argv  # what HFAiLab's dist_train.sh passes too
    assert set(NODE_PLACEHOLDERS) <= {p for a in spec.argv for p in NODE_PLACEHOLDERS if p in a}


def test_launch_can_be_forced_either_way():
    forced = MMCVTrainer(BASE, repo=BEV, launch="self")
    assert forced.render(T160, Layout(20, 8, 160), Path("/w"), resume=False,
                         name="t").argv[0] == "env"  # fmt: skip
    torch = MMCVTrainer(BASE, repo=HFAI, launch="torch")
    assert "torch.distributed.launch" in argv_of(torch, T160, Layout(20, 8, 160))
    assert MMCVTrainer(BASE, repo=BEV).launch == "torch"  # BEVFormer's own train.py


def test_bad_launch_options():
    with pytest.raises(UsageError, match="launch 'mpi'"):
        MMCVTrainer(BASE, repo=HFAI, launch="mpi")
    with pytest.raises(UsageError, match="once per node"):
        MMCVTrainer(BASE, repo=HFAI, launch="self", launcher="slurm")


def test_an_unknown_trainer_option_is_named():
    with pytest.raises(UsageError, match=r"trainer\.options: fp61: not an option of the bevformer"):
        get_trainer("bevformer", config=BASE, repo=str(BEV), fp61=True)
