"""A failed trial's cause: the first error of the failing rank, not the launcher's summary.

The logs in tests/fixtures/logs/failures have the shapes real jobs leave: torch's
torch.distributed.launch/run with its ChildFailedError summary (plain, and with `--tee`
rank prefixes), the legacy launcher's CalledProcessError, argparse refusing a flag, and
Paddle's launcher, which names only the aborted rank and keeps its output in
log/workerlog.N.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scaleout.trainers import failures, get_trainer
from scaleout.trainers.mmcv import MMCVTrainer

FIX = Path(__file__).resolve().parent.parent / "fixtures"
LOGS = FIX / "logs" / "failures"


def cause(name: str):
    return failures.failure_cause((LOGS / name).read_text())


def test_import_error_above_the_launcher_summary():
    f = cause("torchrun_import_error.log")
    assert f.line == "ModuleNotFoundError: No module named 'mmcv'"
    assert f.rank == 0  # the summary's root cause
    assert (f.kind, f.permanent) == ("import", True)
    assert f.summary == "rank 0: ModuleNotFoundError: No module named 'mmcv'"
    assert f.traceback.splitlines()[0] == "Traceback (most recent call last):"
    assert "ChildFailedError" not in f.traceback


def test_the_failing_ranks_own_traceback_among_interleaved_ranks():
    # rank 3 ran out of memory; rank 0's NCCL abort is what rank 3's death caused.
    f = cause("torchrun_tee_oom.log")
    assert f.rank == 3
    assert f.line.startswith("torch.cuda.OutOfMemoryError: CUDA out of memory.")
    assert (f.kind, f.permanent) == ("oom", False)  # a retry from the checkpoint may pass
    assert "mmdet_train.py" in f.traceback and "all_reduce" not in f.traceback


def test_first_of_chained_tracebacks_and_a_bad_config_key_is_permanent():
    f = cause("legacy_launch_bad_key.log")
    assert f.line == "TypeError: __init__() got an unexpected keyword argument 'use_grid_mask2'"
    assert (f.kind, f.permanent) == ("config", True)
    assert f.rank is None  # the legacy launcher names no rank


def test_argparse_refusing_a_flag_is_permanent():
    f = cause("argparse_error.log")
    assert f.line == "train.py: error: unrecognized arguments: --fp16"
    assert (f.kind, f.permanent) == ("arguments", True)


@pytest.mark.parametrize(
    ("text", "line", "permanent"),
    [
        ("", None, None),
        ("Epoch [1][50/879]\tlr: 1e-4\n", None, None),
        ("Segmentation fault (core dumped)\n", "Segmentation fault (core dumped)", False),
        (
            "  exitcode  : -9 (pid: 12)\n  error_file: <N/A>\n",
            "exitcode  : -9 (pid: 12)",
            False,
        ),
        (
            'Traceback (most recent call last):\n  File "x.py", line 1\n'
            "KeyError: 'BEVFormerX is not in the models registry'\n",
            "KeyError: 'BEVFormerX is not in the models registry'",
            True,
        ),
        (
            'Traceback (most recent call last):\n  File "x.py", line 1\nKeyboardInterrupt\n',
            None,
            None,
        ),
    ],
)
def test_other_shapes(text, line, permanent):
    f = failures.failure_cause(text)
    assert (f.line if f else None, f.permanent if f else None) == (line, permanent)


def test_mmcv_trainer_reads_the_job_log(tmp_path):
    t = MMCVTrainer("projects/configs/bevformer/bevformer_base.py", repo=FIX / "bevformer")
    assert t.failure(tmp_path, str(LOGS / "torchrun_import_error.log")).kind == "import"
    assert t.failure(tmp_path, str(tmp_path / "missing.log")) is None
    assert t.failure(tmp_path, "") is None


def test_the_log_tail_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(failures, "TAIL_BYTES", 64)
    log = tmp_path / "job.log"
    log.write_text("x" * 1000 + "\nModuleNotFoundError: No module named 'mmcv'\n")
    assert failures.read_log_tail(log) == "ModuleNotFoundError: No module named 'mmcv'\n"


def test_paddle_workers_log_of_the_aborted_rank(tmp_path):
    t = get_trainer("command", profile="paddle3d_petrv2", repo=str(FIX / "paddle3d"))
    f = t.failure(LOGS / "paddle_workdir", str(LOGS / "paddle_launcher.log"))
    assert f.rank == 3
    assert f.line.startswith("FileNotFoundError: [Errno 2] No such file or directory")
    assert (f.kind, f.permanent) == ("file", True)
