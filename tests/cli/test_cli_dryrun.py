"""`scaleout sweep ... --dry-run`: the first trials as they would run, and nothing written.

The trainers are the fixtures of tests/fixtures (fundamentalvision/BEVFormer, HFAiLab's
BEVFormer, EasyCV), the space file the shipped search_spaces/bevformer_base.yaml.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scaleout.cli.main import main
from scaleout.core.errors import StateError
from scaleout.core.job import Capacity

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures"
SPACE = str(REPO / "search_spaces" / "bevformer_base.yaml")


class Cluster:
    """An executor that answers capacity() like a Slurm partition of 8-GPU nodes."""

    def __init__(self, nodes: int = 20) -> None:
        self.nodes = nodes

    def capacity(self) -> Capacity:
        return Capacity(nodes=self.nodes, gpus_per_node=8, slots=1, where="gpu")


class Unreachable:
    def capacity(self) -> Capacity:
        raise StateError("slurm executor: Slurm does not answer: sinfo: command not found")


def dry(tmp_path, monkeypatch, capsys, *extra: str, executor=None, gpus: str = "160"):
    if executor is not None:
        monkeypatch.setattr("scaleout.sweep.session.make_executor", lambda *a: executor)
    ws = tmp_path / "ws"
    argv = ["sweep", "--gpus", gpus, "--space", SPACE, "--workspace", str(ws), "--dry-run", *extra]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert not ws.exists()  # nothing written: no workspace, study, MLflow store or job
    return captured.out


BEVFORMER = ["--trainer", "bevformer", "--repo", str(FIX / "bevformer")]


def test_bevformer_160_gpus_per_node_commands_env_and_files(tmp_path, monkeypatch, capsys):
    out = dry(tmp_path, monkeypatch, capsys, "--executor", "slurm", *BEVFORMER, "--json",
              executor=Cluster())  # fmt: skip
    d = json.loads(out)
    assert d["layout"]["nnodes"] == 20 and d["layout"]["procs_per_node"] == 8
    origins = [t["origin"] for t in d["trials"]]
    assert origins == ["reference", "sqrt", "linear", "sampled (an example draw)"]
    ref = d["trials"][0]
    work = tmp_path / "ws" / "bevformer_base-160g" / "trials" / "t000"
    assert ref["job"] == "bevformer_base-160g-t000-a1"
    assert ref["work_dir"] == str(work)
    assert ref["cwd"] == str((FIX / "bevformer").resolve())
    assert ref["nodes"]["7"][:6] == [
        "python", "-m", "torch.distributed.launch", "--nnodes=20", "--node_rank=7",
        "--nproc_per_node=8",
    ]  # fmt: skip
    assert ref["nodes"]["7"][-4:] == [
        "optimizer.lr=0.0002", "lr_config.warmup_iters=500", "lr_config.min_lr_ratio=0.001",
        "data.samples_per_gpu=1",
    ]  # fmt: skip
    assert ref["env"]["SCALEOUT_TRIAL"] == "0" and ref["env"]["PYTHONPATH"].endswith("bevformer")
    assert "scaleout_trial.json" in ref["files"]
    # The sampled trial runs inside the ranges, with the min_lr_ratio cap applied.
    sampled = d["trials"][3]["params"]
    assert sampled["lr"] * sampled["min_lr_ratio"] <= 2e-7 * (1 + 1e-9)


def test_text_output_says_the_layout_was_assumed_when_the_cluster_does_not_answer(
    tmp_path, monkeypatch, capsys
):
    out = dry(tmp_path, monkeypatch, capsys, "--executor", "slurm", *BEVFORMER, "--trials",
              "1", executor=Unreachable())  # fmt: skip
    assert "layout: 20 node(s) x 8 GPU process(es), 160 GPUs, assuming nodes of 8 GPUs: " in out
    assert "sinfo: command not found" in out
    assert "== trial 0 (reference): job bevformer_base-160g-t000-a1" in out
    assert "  node 0: python -m torch.distributed.launch --nnodes=20 --node_rank=0 " in out
    assert "  node 19: python -m torch.distributed.launch --nnodes=20 --node_rank=19 " in out
    assert "  nodes 2..18: the same, with their own node rank" in out
    assert "== trial 1" not in out  # --trials 1 runs the reference seed only


def test_fp16_config_conflicts_and_script_in_the_dry_run(tmp_path, monkeypatch, capsys):
    out = dry(tmp_path, monkeypatch, capsys, "--executor", "slurm", *BEVFORMER, "--config",
              "projects/configs/bevformer_fp16/bevformer_tiny_fp16.py", "--trials", "1",
              executor=Cluster())  # fmt: skip
    assert "tools/fp16/train.py projects/configs/bevformer_fp16/bevformer_tiny_fp16.py" in out
    assert "note: reference.lr: 0.0002 from the space file is used; the trainer config says " \
        "0.00028" in out  # fmt: skip


def test_self_launching_trainer_runs_once_per_node(tmp_path, monkeypatch, capsys):
    out = dry(tmp_path, monkeypatch, capsys, "--executor", "slurm", "--trainer", "bevformer",
              "--repo", str(FIX / "hfai_bevformer"), "--trials", "1", "--json",
              executor=Cluster(2), gpus="16")  # fmt: skip
    t = json.loads(out)["trials"][0]
    assert t["nodes"]["1"][:5] == [
        "env", "WORLD_SIZE=2", "RANK=1", "MASTER_ADDR=<master_addr>", "MASTER_PORT=<master_port>",
    ]  # fmt: skip
    assert any("evaluates once, at epoch 24" in n for n in json.loads(out)["notes"])


def test_easycv_trial_config_is_shown(tmp_path, monkeypatch, capsys):
    cfg = "configs/detection3d/bevformer/bevformer_tiny_r50_nuscenes_fp16.py"
    out = dry(tmp_path, monkeypatch, capsys, "--executor", "slurm", "--trainer", "easycv",
              "--repo", str(FIX / "easycv"), "--config", cfg, "--trials", "1",
              executor=Cluster(2), gpus="16")  # fmt: skip
    work = tmp_path / "ws" / "bevformer_base-16g" / "trials" / "t000"
    assert f"file {work / 'trial_config.py'}:" in out
    assert f"  | _base_ = ['{(FIX / 'easycv' / cfg).resolve()}']" in out
    assert "--work_dir" in out and "--fp16" in out


def test_local_executor_single_node(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCALEOUT_LOCAL_GPUS", "8")
    out = dry(tmp_path, monkeypatch, capsys, *BEVFORMER, "--trials", "1", "--json", gpus="8")
    argv = json.loads(out)["trials"][0]["nodes"]["0"]
    assert argv[:5] == ["python", "-m", "torch.distributed.launch", "--nproc_per_node=8",
                        "--master_port=<master_port>"]  # fmt: skip


def test_dry_run_needs_a_new_sweeps_flags(capsys):
    assert main(["sweep", "--name", "x", "--resume", "--dry-run"]) == 2
    assert "--dry-run shows a new sweep's first trials" in capsys.readouterr().err


def test_dry_run_imports_neither_optuna_nor_mlflow(tmp_path):
    code = (
        "import sys, os; from scaleout.cli.main import main; "
        f"os.environ['SCALEOUT_LOCAL_GPUS'] = '8'; "
        f"r = main(['sweep', '--gpus', '8', '--space', {SPACE!r}, '--workspace', "
        f"{str(tmp_path / 'ws')!r}, '--dry-run', '--trainer', 'bevformer', '--repo', "
        f"{str(FIX / 'bevformer')!r}]); "
        "heavy = [m for m in ('optuna', 'mlflow', 'torch', 'ray') if m in sys.modules]; "
        "print(r, heavy, file=sys.stderr); sys.exit(0 if r == 0 and not heavy else 1)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("flag", ["--dry-run"])
def test_the_flag_is_in_the_help(flag, capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert flag in capsys.readouterr().out
