"""The commands people reach for next (best, cancel, list), `status` without a controller, and
the resume hint, against sweeps saved by hand (tests/results/conftest.py: milliseconds)."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scaleout.cli import main

TESTS = Path(__file__).resolve().parents[1]
BEV = TESTS / "fixtures" / "bevformer"
BEV_CONFIG = "projects/configs/bevformer/bevformer_base.py"


def _results_conftest():
    spec = importlib.util.spec_from_file_location(
        "results_conftest", TESTS / "results" / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


save_sweep = _results_conftest().save_sweep


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace holding the hand-made sweep `hand` (minibev tiny; trial 1 is the best,
    trial 4 runs)."""
    root = tmp_path / "ws"
    save_sweep(root)
    return root


def _set_meta(ws: Path, name: str, **changes) -> None:
    path = ws / name / "sweep.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _set_attr(ws: Path, name: str, number: int, key: str, value) -> None:
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{ws / name / 'study.db'}")
    trial = study.get_trials(deepcopy=False)[number]
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def _parse_cfg_options(line: str) -> dict:
    """The --cfg-options line as mmengine's train scripts parse it (DictAction)."""
    import argparse

    from mmengine.config import DictAction

    p = argparse.ArgumentParser()
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    return p.parse_args(shlex.split(line)).cfg_options


# -- best ----------------------------------------------------------------------------------------
def test_best_cfg_options_turn_the_recipe_into_the_trial_config(ws, capsys):
    """minibev (mmengine): the printed --cfg-options, merged into the preset's config as its
    train script does, give exactly the config the trial ran."""
    from scaleout.core.job import TrialParams
    from scaleout.trainers.mmengine import minibev

    assert main(["best", "hand", "--workspace", str(ws)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("--cfg-options ") and "\n" not in line
    trainer = minibev("tiny")
    params = TrialParams.from_dict(
        {"lr": 9e-3, "warmup_iters": 24, "min_lr_ratio": 1e-4, "gpus": 160, "samples_per_gpu": 1}
    )
    cfg = trainer.cfg.copy()
    cfg.merge_from_dict(_parse_cfg_options(line))
    assert cfg.to_dict() == trainer.trial_config(params).to_dict()
    assert "optim_wrapper.optimizer.lr=0.009" in line


def test_best_for_bevformer_is_the_mmcv_adapters_cfg_options(tmp_path, capsys):
    from scaleout.core.job import TrialParams
    from scaleout.trainers.mmcv import MMCVTrainer, format_value

    ws = tmp_path / "ws"
    save_sweep(ws)
    _set_meta(ws, "hand", trainer={"name": "bevformer", "config": BEV_CONFIG, "repo": str(BEV)})
    assert main(["best", "hand", "--workspace", str(ws)]) == 0
    line = capsys.readouterr().out.strip()
    trainer = MMCVTrainer(BEV_CONFIG, repo=BEV)
    params = TrialParams.of(160, 1, lr=9e-3, warmup_iters=24, min_lr_ratio=1e-4)
    # What the adapter's render() puts after --cfg-options for this trial, word for word.
    expected = [f"{k}={format_value(v)}" for k, v in trainer.overrides_for(params)]
    assert shlex.split(line) == ["--cfg-options", *expected]
    assert "optimizer.lr=0.009" in expected and "lr_config.warmup_iters=24" in expected


def test_best_for_easycv_names_the_generated_config(tmp_path, capsys):
    """EasyCV's train.py takes no --cfg-options (its trials train from a generated config):
    cfg-options refuses and says so; yaml lists the keys that config sets."""
    import yaml

    ws = tmp_path / "ws"
    save_sweep(ws)
    config = "configs/detection3d/bevformer/bevformer_base_r101_dcn_nuscenes.py"
    easycv = TESTS / "fixtures" / "easycv"
    _set_meta(ws, "hand", trainer={"name": "easycv", "config": config, "repo": str(easycv)})
    assert main(["best", "hand", "--workspace", str(ws)]) == 2
    assert "takes no --cfg-options" in capsys.readouterr().err
    assert main(["best", "hand", "--workspace", str(ws), "--format", "yaml"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["overrides"]["optimizer.lr"] == 9e-3 and "cfg_options" not in data


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_best_yaml_and_json_carry_values_and_overrides(ws, fmt, capsys):
    import yaml

    assert main(["best", "hand", "--workspace", str(ws), "--format", fmt]) == 0
    out = capsys.readouterr().out
    data = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert data["trial"] == 1 and data["objective"] == {
        "metric": "NDS",
        "direction": "maximize",
        "value": 0.35,
    }
    assert data["params"]["lr"] == 9e-3 and data["params"]["global_batch"] == 160
    assert data["overrides"]["optim_wrapper.optimizer.lr"] == 9e-3
    assert data["cfg_options"].startswith("--cfg-options ")
    assert data["work_dir"].endswith("t001")


def test_best_of_another_trial_and_the_refusals(ws, capsys, tmp_path):
    assert main(["best", "hand", "--workspace", str(ws), "--trial", "0", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["origin"] == "reference"
    assert main(["best", "hand", "--workspace", str(ws), "--trial", "9"]) == 2
    assert "no started trial 9" in capsys.readouterr().err
    # No completed trial: exit 3, and the counts say why.
    import sqlite3

    empty = tmp_path / "empty"
    save_sweep(empty, "none")
    with sqlite3.connect(empty / "none" / "study.db") as db:
        db.execute("UPDATE trials SET state = 'RUNNING' WHERE state = 'COMPLETE'")
    assert main(["best", "none", "--workspace", str(empty)]) == 3
    err = capsys.readouterr().err
    assert "sweep none has no completed trial yet" in err and "running" in err


def test_best_for_a_command_trainer_points_to_yaml(ws, capsys):
    _set_meta(ws, "hand", trainer={"name": "command", "profile": "paddle3d_petrv2"})
    code = main(["best", "hand", "--workspace", str(ws)])
    err = capsys.readouterr().err
    assert code == 2 and "--format yaml" in err


# -- list ----------------------------------------------------------------------------------------
def test_list_shows_state_best_and_cost(ws, capsys):
    save_sweep(ws, "second")
    (ws / "broken").mkdir()
    (ws / "broken" / "sweep.json").write_text(
        json.dumps({"name": "broken", "storage": f"sqlite:///{ws / 'broken' / 'study.db'}"})
    )
    (ws / "broken" / "plan.json").write_text((ws / "hand" / "plan.json").read_text())
    (ws / "broken" / "study.db").write_bytes(b"not a database" * 100)
    assert main(["list", "--workspace", str(ws), "--json"]) == 0
    lines = {s["sweep"]: s for s in json.loads(capsys.readouterr().out)}
    assert set(lines) == {"hand", "second", "broken"}
    hand = lines["hand"]
    assert hand["state"] == "interrupted"  # a trial runs, no controller
    assert hand["best"] == {"trial": 1, "value": 0.35, "origin": "sampled"}
    assert hand["budget"] == 8 and hand["started"] == 5 and hand["counts"]["running"] == 1
    # finished trials ran 24 + 24 + 2 + 1 epochs of 24 (tests/results/conftest.py); the
    # running one has reported one epoch
    assert hand["trial_equivalents"] == pytest.approx(51 / 24, abs=1 / 24 + 1e-9)
    assert hand["target_gpu_hours"] == pytest.approx(0.032 * hand["trial_equivalents"])
    assert hand["target_gpu_hours_basis"] == "estimated"
    assert (
        lines["broken"]["state"] == "unreadable" and "study database" in lines["broken"]["reason"]
    )

    from scaleout.sweep.workspace import ControllerLock, Sweep

    lock = ControllerLock(Sweep(ws, "second"))
    lock.acquire()
    try:
        assert main(["list", "--workspace", str(ws)]) == 0
    finally:
        lock.release()
    table = capsys.readouterr().out
    for text in ("hand", "interrupted", "NDS 0.3500 t001", "est.", "running", "unreadable"):
        assert text in table, text


def test_list_of_an_empty_workspace(tmp_path, capsys):
    assert main(["list", "--workspace", str(tmp_path)]) == 0
    assert "no sweeps in" in capsys.readouterr().out
    assert main(["list", "--workspace", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


# -- cancel --------------------------------------------------------------------------------------
def _detached_job(ws: Path):
    """A real local job for the hand sweep's running trial 4: a process with a grandchild,
    recorded on the trial as the controller records it."""
    from scaleout.core.job import Layout, TrialSpec
    from scaleout.executors.local import LocalExecutor

    work = ws / "hand" / "trials" / "t004"
    code = textwrap.dedent(
        """
        import pathlib, subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        pathlib.Path("grandchild.pid").write_text(str(p.pid))
        time.sleep(120)
        """
    )
    spec = TrialSpec(
        name="t004",
        work_dir=str(work),
        argv=(sys.executable, "-c", code),
        layout=Layout(nnodes=1, procs_per_node=1, virtual_gpus=160),
    )
    handle = LocalExecutor(gpus=0).submit(spec, "hand-t004-a1")
    _set_attr(ws, "hand", 4, "job", handle.to_json())
    deadline = time.monotonic() + 30
    while not (work / "grandchild.pid").exists():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    return handle, int((work / "grandchild.pid").read_text())


def _alive(pid: int) -> bool:
    from scaleout.executors.local import process_start_ticks

    return process_start_ticks(pid) is not None


def test_cancel_stops_a_detached_local_trial(ws, capsys):
    handle, grandchild = _detached_job(ws)
    assert _alive(int(handle.data["pid"]))
    assert main(["cancel", "hand", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert f"t004: cancelled job {handle.job_id} (local, hand-t004-a1): cancelled" in out
    assert "--resume" in out and "retry" in out
    assert not _alive(int(handle.data["pid"])) and not _alive(grandchild)
    # Again: the job is over; cancelling twice is harmless.
    assert main(["cancel", "hand", "--workspace", str(ws), "--trial", "4"]) == 0


def test_cancel_names_trials_with_nothing_to_stop(ws, capsys):
    assert main(["cancel", "hand", "--workspace", str(ws), "--trial", "1"]) == 0
    assert "t001: complete, nothing to stop" in capsys.readouterr().out
    assert main(["cancel", "hand", "--workspace", str(ws), "--trial", "7"]) == 2
    assert "no started trial 7" in capsys.readouterr().err


def test_cancel_refuses_while_a_controller_holds_the_sweep(ws, capsys):
    from scaleout.sweep.workspace import ControllerLock, Sweep

    lock = ControllerLock(Sweep(ws, "hand"))
    lock.acquire()
    try:
        assert main(["cancel", "hand", "--workspace", str(ws)]) == 3
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert f"a controller is running sweep hand (pid {os.getpid()}" in err
    assert "--cancel-on-exit" in err


def test_cancel_goes_through_the_executor_registry(ws, monkeypatch, capsys):
    """Slurm and Ray trials are stopped by the executor the registry builds from sweep.json's
    options, with the stored handle."""
    from scaleout.core.job import JobHandle, JobState, JobStatus

    calls = []

    class Fake:
        def cancel(self, handle):
            calls.append(("cancel", handle.job_id))

        def poll(self, handles):
            return {h.name: JobStatus(JobState.CANCELLED) for h in handles}

    def make(name, options, parallel):
        calls.append((name, options, parallel))
        return Fake()

    monkeypatch.setattr("scaleout.executors.make_executor", make)
    _set_meta(ws, "hand", executor="slurm", executor_options={"partition": "gpu"})
    _set_attr(ws, "hand", 4, "job", JobHandle("slurm", "hand-t004-a1", "4242").to_json())
    assert main(["cancel", "hand", "--workspace", str(ws)]) == 0
    assert calls == [("slurm", {"partition": "gpu"}, None), ("cancel", "4242")]
    assert "t004: cancelled job 4242 (slurm, hand-t004-a1): cancelled" in capsys.readouterr().out


# -- status without a controller ----------------------------------------------------------------
def _write_scalars(work: Path, epochs: int) -> None:
    d = work / "20260101_000000" / "vis_data"
    d.mkdir(parents=True)
    lines = [
        json.dumps({"NDS": 0.2 + e / 100, "mAP": 0.1, "step": e}) for e in range(1, epochs + 1)
    ]
    (d / "scalars.json").write_text("\n".join(lines) + "\n")


def test_status_reads_the_detached_trials_own_logs(ws, capsys):
    _write_scalars(ws / "hand" / "trials" / "t004", 9)
    assert main(["status", "hand", "--workspace", str(ws), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["running"]
    assert row["epoch"] == 9 and row["NDS"] == pytest.approx(0.29) and row["epoch_from"] == "logs"
    assert main(["status", "hand", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert "from their own logs" in out and "scaleout cancel hand" in out and "--resume" in out

    # With a controller running, the study is current: its epoch is shown.
    from scaleout.sweep.workspace import ControllerLock, Sweep

    lock = ControllerLock(Sweep(ws, "hand"))
    lock.acquire()
    try:
        assert main(["status", "hand", "--workspace", str(ws), "--json"]) == 0
    finally:
        lock.release()
    (row,) = json.loads(capsys.readouterr().out)["running"]
    assert row["epoch"] == 1 and row["epoch_from"] == "study"


def test_status_without_readable_logs_keeps_the_studys_epoch(ws, capsys):
    _set_meta(
        ws, "hand", trainer={"name": "bevformer", "config": "nope.py", "repo": "/nonexistent"}
    )
    assert main(["status", "hand", "--workspace", str(ws), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["running"][0]["epoch"] == 1 and st["running"][0]["epoch_from"] == "study"
    assert "cannot be read here" in st["logs_note"]


# -- after Ctrl-C --------------------------------------------------------------------------------
def test_resume_hint():
    from scaleout.cli.hints import resume_hint

    text = resume_hint("lr_scaling-160g", 2)
    assert "2 trials still running" in text and "re-attaches them" in text
    assert "resume with: scaleout sweep --name lr_scaling-160g --resume" in text
    assert "scaleout cancel lr_scaling-160g" in text
    assert "1 trial stopped (--cancel-on-exit)" in resume_hint("s", 1, cancelled=True)
    assert "no trial was running" in resume_hint("s")
