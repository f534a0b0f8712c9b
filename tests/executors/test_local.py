"""The local executor against real processes: jobs outlive the controller, exit codes are
recorded, cancel stops the whole process group, and a lost process is told from a live one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scaleout.core.job import JobState, Layout, TrialSpec
from scaleout.executors.local import LocalExecutor, fill_node_placeholders
from scaleout.executors.localrun import process_start_ticks

LAYOUT = Layout(nnodes=1, procs_per_node=1, virtual_gpus=8)


def spec(tmp_path: Path, code: str, **kw) -> TrialSpec:
    return TrialSpec(
        name="t",
        work_dir=str(tmp_path / "work"),
        argv=(sys.executable, "-c", textwrap.dedent(code)),
        layout=LAYOUT,
        **kw,
    )


def wait_state(ex, handle, states, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = ex.poll([handle])[handle.name]
        if st.state in states:
            return st
        time.sleep(0.05)
    raise AssertionError(f"job never reached {states}: {st}")


def test_success_writes_files_env_and_log(tmp_path):
    ex = LocalExecutor(parallel=2, gpus=0)
    s = spec(
        tmp_path,
        """
        import os, pathlib
        env = os.environ
        print("threads", env["OMP_NUM_THREADS"], "cuda", repr(env["CUDA_VISIBLE_DEVICES"]))
        print("cfg", pathlib.Path("cfg.py").read_text())
    """,
        files={"cfg.py": "lr = 0.1"},
        env={"EXTRA": "1"},
    )
    h = ex.submit(s, "job-a1")
    st = wait_state(ex, h, {JobState.SUCCEEDED, JobState.FAILED})
    assert st.state == JobState.SUCCEEDED and st.exit_code == 0
    log = Path(h.log).read_text()
    assert "cfg lr = 0.1" in log
    assert "cuda ''" in log  # no GPU handed out
    assert f"threads {max(1, (os.cpu_count() or 1) // 2)}" in log


def test_failure_exit_code_and_reason(tmp_path):
    ex = LocalExecutor(gpus=0)
    h = ex.submit(spec(tmp_path, "import sys; print('boom'); sys.exit(3)"), "job-a1")
    st = wait_state(ex, h, {JobState.FAILED})
    assert st.exit_code == 3 and st.reason == "exit code 3"


def test_missing_program_is_a_failure_not_a_hang(tmp_path):
    ex = LocalExecutor(gpus=0)
    s = TrialSpec(name="t", work_dir=str(tmp_path / "w"), argv=("/no/such/trainer",), layout=LAYOUT)
    h = ex.submit(s, "job-a1")
    st = wait_state(ex, h, {JobState.FAILED})
    assert st.exit_code == 127
    assert "could not start /no/such/trainer" in Path(h.log).read_text()


def test_cancel_stops_the_process_group(tmp_path):
    ex = LocalExecutor(gpus=0, cancel_grace_s=5)
    # The job starts a grandchild; cancel must stop both.
    code = """
        import subprocess, sys, time, pathlib
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pathlib.Path("grandchild.pid").write_text(str(p.pid))
        time.sleep(60)
    """
    h = ex.submit(spec(tmp_path, code), "job-a1")
    work = tmp_path / "work"
    deadline = time.monotonic() + 20
    while not (work / "grandchild.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int((work / "grandchild.pid").read_text())
    ex.cancel(h)
    st = wait_state(ex, h, {JobState.CANCELLED})
    assert st.state == JobState.CANCELLED
    assert process_start_ticks(grandchild) is None
    ex.cancel(h)  # twice is fine


def test_job_outlives_the_controller_and_is_found_again(tmp_path):
    # A controller process submits a job and dies at once (SIGKILL); the job keeps running,
    # and a new executor finds it by name and sees it finish.
    work = tmp_path / "work"
    controller = textwrap.dedent(f"""
        import os, signal, sys
        from scaleout.executors.local import LocalExecutor
        from scaleout.core.job import Layout, TrialSpec
        s = TrialSpec(name="t", work_dir={str(work)!r}, layout=Layout(1, 1, 8),
                      argv=(sys.executable, "-c", "import time; time.sleep(2); print('done')"))
        LocalExecutor(gpus=0).submit(s, "job-a1")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", controller], timeout=60)
    assert r.returncode == -signal.SIGKILL
    ex = LocalExecutor(gpus=0)
    s = TrialSpec(name="t", work_dir=str(work), argv=("x",), layout=LAYOUT)
    deadline = time.monotonic() + 10
    h = None
    while h is None and time.monotonic() < deadline:
        h = ex.find("job-a1", s)
        time.sleep(0.05)
    assert h is not None
    assert ex.poll([h])["job-a1"].state == JobState.RUNNING
    st = wait_state(ex, h, {JobState.SUCCEEDED})
    assert "done" in (work / "job-a1.log").read_text()
    assert ex.find("job-a2", s) is None
    assert st.exit_code == 0


def test_killed_job_is_failed_not_running(tmp_path):
    ex = LocalExecutor(gpus=0)
    h = ex.submit(spec(tmp_path, "import time; time.sleep(60)"), "job-a1")
    wait_state(ex, h, {JobState.RUNNING})
    os.killpg(h.data["pid"], signal.SIGKILL)  # wrapper and trainer die without a word
    st = wait_state(ex, h, {JobState.FAILED})
    assert "died without an exit status" in st.reason


def test_multi_node_is_refused(tmp_path):
    from scaleout.core.errors import UsageError

    s = TrialSpec(name="t", work_dir=str(tmp_path), argv=("x",), layout=Layout(2, 8, 16, True))
    with pytest.raises(UsageError, match="runs one node"):
        LocalExecutor(gpus=0).submit(s, "j")


def test_gpu_slots_are_handed_out_without_overlap(tmp_path):
    ex = LocalExecutor(parallel=2, gpus=8)  # nothing is run on a GPU: we read the env only
    code = "import os; print('cvd', os.environ['CUDA_VISIBLE_DEVICES'])"
    lay = Layout(1, 4, 4, use_gpu=True)
    h1 = ex.submit(
        TrialSpec(
            name="a", work_dir=str(tmp_path / "a"), argv=(sys.executable, "-c", code), layout=lay
        ),
        "a",
    )
    h2 = ex.submit(
        TrialSpec(
            name="b", work_dir=str(tmp_path / "b"), argv=(sys.executable, "-c", code), layout=lay
        ),
        "b",
    )
    assert set(h1.data["gpus"]).isdisjoint(h2.data["gpus"])
    assert sorted(h1.data["gpus"] + h2.data["gpus"]) == list(range(8))


def test_fill_node_placeholders():
    argv = ["torchrun", "--node_rank", "{node_rank}", "--master", "{master_addr}:{master_port}"]
    assert fill_node_placeholders(argv, 1, "10.0.0.1", 29500) == [
        "torchrun",
        "--node_rank",
        "1",
        "--master",
        "10.0.0.1:29500",
    ]


def gpu_spec(work: Path, code: str, gpus: int = 2) -> TrialSpec:
    return TrialSpec(
        name=work.name,
        work_dir=str(work),
        argv=(sys.executable, "-c", code),
        layout=Layout(1, gpus, gpus, use_gpu=True),
    )


def test_gpus_of_reattached_jobs_are_not_handed_out_again(tmp_path, monkeypatch):
    # 4 fake GPUs (nothing runs on them: the jobs only hold CUDA_VISIBLE_DEVICES). A
    # controller starts a 2-GPU job and restarts; the new one must not give those 2 GPUs
    # to the next trial, whether it re-attaches by name (find) or from the stored handle.
    from scaleout.core.errors import UsageError

    monkeypatch.setenv("SCALEOUT_LOCAL_GPUS", "4")
    sleep = "import time; time.sleep(60)"
    first = LocalExecutor(parallel=2)
    held = gpu_spec(tmp_path / "a", sleep)
    h1 = first.submit(held, "s-t000-a1")
    assert h1.data["gpus"] == [0, 1]
    started = Path(h1.data["job_dir"], "started.json")  # the wrapper's first word
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    after = LocalExecutor(parallel=2)  # the restarted controller's executor: by name
    found = after.find("s-t000-a1", held)
    assert found is not None and found.data["gpus"] == [0, 1]
    h2 = after.submit(gpu_spec(tmp_path / "b", sleep), "s-t001-a1")
    assert h2.data["gpus"] == [2, 3]
    with pytest.raises(UsageError, match="2 GPUs wanted, 0 free"):
        after.submit(gpu_spec(tmp_path / "c", sleep), "s-t002-a1")

    stored = LocalExecutor(parallel=2)  # the stored handles, re-attached by a poll
    assert {s.state for s in stored.poll([h1, h2]).values()} == {JobState.RUNNING}
    with pytest.raises(UsageError, match="2 GPUs wanted, 0 free"):
        stored.submit(gpu_spec(tmp_path / "c", sleep), "s-t002-a1")
    assert not (tmp_path / "c" / ".jobs" / "s-t002-a1").exists()  # refused before writing

    # a finished job gives its GPUs back
    after.cancel(found)
    wait_state(after, found, {JobState.CANCELLED})
    h3 = after.submit(gpu_spec(tmp_path / "c", "pass"), "s-t002-a1")
    assert h3.data["gpus"] == [0, 1]
    for h in (h2, h3):
        after.cancel(h)


@pytest.mark.parametrize(
    ("kw", "match", "hint"),
    [
        ({"container": "nvcr.io/bev:1"}, "does not run containers", "--executor slurm"),
        ({"launch": "task"}, "does not start one process per GPU", "launcher='pytorch'"),
    ],
)
def test_what_it_cannot_honour_is_refused_before_anything_is_written(tmp_path, kw, match, hint):
    # It used to run the trainer bare (no image) or as one process (not one per GPU).
    from scaleout.core.errors import UsageError

    s = spec(tmp_path, "print('ran')", **kw)
    ex = LocalExecutor(gpus=0)
    with pytest.raises(UsageError, match=match) as err:
        ex.submit(s, "job-a1")
    assert hint in str(err.value)
    assert not (tmp_path / "work").exists()


def test_start_and_end_come_from_the_wrapper_files(tmp_path):
    # GPU time is priced from the job's own run: started.json and exit.json, written by the
    # wrapper around the trainer, not the controller's submit or poll times.
    ex = LocalExecutor(gpus=0)
    before = time.time()
    h = ex.submit(spec(tmp_path, "import time; time.sleep(1.0)"), "job-a1")
    running = wait_state(ex, h, {JobState.RUNNING, JobState.SUCCEEDED})
    st = wait_state(ex, h, {JobState.SUCCEEDED})
    job_dir = Path(h.data["job_dir"])
    started = json.loads((job_dir / "started.json").read_text())["time"]
    ended = json.loads((job_dir / "exit.json").read_text())["time"]
    assert (st.started_at, st.ended_at) == (started, ended)
    assert before <= started and started + 1.0 <= ended <= time.time()
    assert running.started_at in (None, started)  # None only before started.json is written
    # a restarted controller's executor reads the same times
    again = LocalExecutor(gpus=0)
    found = again.find("job-a1", spec(tmp_path, "x"))
    assert found is not None
    st2 = again.poll([found])["job-a1"]
    assert (st2.started_at, st2.ended_at) == (started, ended)
    # a failed start still has both
    bad = TrialSpec(name="t", work_dir=str(tmp_path / "b"), argv=("/no/such",), layout=LAYOUT)
    hb = ex.submit(bad, "job-b1")
    st3 = wait_state(ex, hb, {JobState.FAILED})
    assert st3.started_at is not None and st3.ended_at >= st3.started_at
