"""Bad input: one clear message, exit code 2, nothing written or overwritten."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scaleout.minibev.runs import config_path, train_argv
from scaleout.minibev.train import main

TINY = config_path("tiny")


def _snapshot(path):
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_unknown_config_key(tmp_path, capsys):
    work = tmp_path / "w"
    rc = main(
        [str(TINY), "--work-dir", str(work), "--cfg-options", "optim_wrapper.optimizer.lrr=1"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "unknown config key 'optim_wrapper.optimizer.lrr'" in err
    assert "did you mean 'optim_wrapper.optimizer.lr'" in err
    assert not work.exists()


def test_virtual_gpus_that_do_not_divide_over_the_processes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    rc = main(
        [
            str(TINY),
            "--work-dir",
            str(tmp_path / "w"),
            "--launcher",
            "pytorch",
            "--cfg-options",
            "virtual_gpus=8",
        ]
    )
    assert rc == 2 and "virtual_gpus=8 does not divide over 3 processes" in capsys.readouterr().err


def test_global_batch_larger_than_the_dataset(tmp_path, capsys):
    rc = main([str(TINY), "--work-dir", str(tmp_path / "w"), "--cfg-options", "virtual_gpus=320"])
    assert rc == 2 and "exceeds the 160 training samples" in capsys.readouterr().err


def test_resume_without_a_work_dir(tmp_path, capsys):
    rc = main([str(TINY), "--work-dir", str(tmp_path / "missing"), "--resume"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_missing_work_dir_flag_and_missing_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(TINY)])
    assert exc.value.code == 2 and "--work-dir" in capsys.readouterr().err
    assert main([str(tmp_path / "nope.py"), "--work-dir", str(tmp_path / "w")]) == 2


def test_corrupt_checkpoint_is_refused_and_left_alone(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "epoch_1.pth").write_bytes(b"not a checkpoint")
    (work / "last_checkpoint").write_text(str(work / "epoch_1.pth"))
    before = _snapshot(work)
    proc = subprocess.run(
        train_argv(TINY, work, resume=True), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "checkpoint" in proc.stderr and "unreadable" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _snapshot(work) == before


def test_fresh_run_over_existing_checkpoints_is_refused(tmp_path, capsys):
    work = tmp_path / "w"
    work.mkdir()
    (work / "epoch_1.pth").write_bytes(b"someone's weights")
    before = _snapshot(work)
    assert main([str(TINY), "--work-dir", str(work)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert _snapshot(work) == before


def test_entry_point_exit_code(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scaleout.minibev.train",
            str(TINY),
            "--work-dir",
            str(tmp_path / "w"),
            "--cfg-options",
            "nope=1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown config key 'nope'" in proc.stderr
