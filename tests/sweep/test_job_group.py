"""A local job is over only when its whole process group is (docs/sweep.md, "Resume,
crashes and faults"): a trainer whose wrapper died is stopped before the job counts as dead,
so a retry never trains beside it in the same work dir. Real processes, a second or two."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from scaleout.core.job import JobState, Layout, TrialSpec
from scaleout.executors.local import LocalExecutor
from scaleout.executors.localrun import group_members, process_start_ticks

TRAINER = "import os, time\nopen('trainer.pid', 'w').write(str(os.getpid()))\ntime.sleep(120)"


def _start(tmp_path):
    ex = LocalExecutor(parallel=1, gpus=0, cancel_grace_s=5.0)
    spec = TrialSpec(
        name="t000",
        work_dir=str(tmp_path),
        argv=(sys.executable, "-c", TRAINER),
        layout=Layout(1, 1, 1, False),
    )
    handle = ex.submit(spec, "s-t000-a1")
    deadline = time.monotonic() + 60
    while not (tmp_path / "trainer.pid").exists():
        assert time.monotonic() < deadline, "the trainer never started"
        time.sleep(0.05)
    trainer = int((tmp_path / "trainer.pid").read_text())
    return ex, handle, trainer


def _kill_the_wrapper_only(ex, handle) -> None:
    os.kill(handle.data["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while process_start_ticks(handle.data["pid"]) is not None:
        assert time.monotonic() < deadline
        ex.poll([])  # reaps it: the controller that started it is still here
        time.sleep(0.05)


@pytest.fixture
def job(tmp_path):
    ex, handle, trainer = _start(tmp_path)
    yield ex, handle, trainer
    if group_members(handle.data["pid"]):  # a failed test leaves no trainer behind
        os.killpg(handle.data["pid"], signal.SIGKILL)


def test_a_job_whose_wrapper_died_is_dead_only_once_its_trainer_is(job):
    ex, handle, trainer = job
    _kill_the_wrapper_only(ex, handle)
    assert process_start_ticks(trainer) is not None  # the trainer trains on, orphaned
    status = ex.poll([handle])[handle.name]
    assert status.state == JobState.FAILED
    assert f"its processes {trainer} were still running and have been stopped" in status.reason
    assert process_start_ticks(trainer) is None
    assert group_members(handle.data["pid"]) == []
    # Polled again (a resumed controller): still dead, nothing else to stop.
    assert ex.poll([handle])[handle.name].state == JobState.FAILED


def test_cancelling_a_job_whose_wrapper_died_stops_its_trainer(job):
    ex, handle, trainer = job
    _kill_the_wrapper_only(ex, handle)
    ex.cancel(handle)
    assert process_start_ticks(trainer) is None
    assert group_members(handle.data["pid"]) == []
