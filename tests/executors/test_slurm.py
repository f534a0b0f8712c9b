"""The Slurm executor against a real Slurm (slurmctld + 4 slurmd, 8 fake GPUs each, no
accounting) that the `slurm_cluster` fixture starts and stops, and against a second one with
real accounting (MariaDB + slurmdbd, so sacct answers): the `slurm_accounting_cluster` fixture.

Trials of 16 GPUs run as 2 nodes x 1 process (minibev's virtual GPUs keep the global batch),
with a real 2-node torchrun rendezvous. All "nodes" are this host, so the rendezvous address
is 127.0.0.1 (--slurm-master-addr); a real cluster uses the job's first node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from optuna.trial import TrialState

from scaleout.core.errors import StateError, UsageError
from scaleout.core.job import JobHandle, JobState, JobStatus, Layout, TrialSpec
from scaleout.executors.slurm import SlurmExecutor
from scaleout.executors.slurm_text import parse_jobcomp

pytestmark = pytest.mark.slurm
TWO_NODES = Layout(2, 1, 16, False)
FLAGS = ("--executor", "slurm", "--slurm-master-addr", "127.0.0.1")


def executor(**kw) -> SlurmExecutor:
    return SlurmExecutor(procs_per_node=1, master_addr="127.0.0.1", poll_min_interval_s=0.2, **kw)


def script_spec(tmp: Path, code: str, *args: str) -> TrialSpec:
    return TrialSpec(
        name="t",
        work_dir=str(tmp),
        argv=(sys.executable, "-c", textwrap.dedent(code), *args),
        layout=TWO_NODES,
        files={"cfg.py": "lr = 0.1"},
        env={"SCALEOUT_TEST": "a b"},
    )


def wait_state(helpers, ex, handle, states, timeout=60.0):
    return helpers.wait_for(
        lambda: (st := ex.poll([handle])[handle.name]).state in states and st,
        timeout,
        f"{handle.name} to reach {states}",
    )


def test_two_node_jobs_run_at_once_and_report_exit_codes(slurm_cluster, helpers, tmp_path):
    ex = executor()
    cap = ex.capacity()
    assert (cap.nodes, cap.gpus_per_node, cap.procs_per_node) == (4, 8, 1)
    ok = script_spec(
        tmp_path / "ok",
        """
        import os, sys, pathlib
        print("node", sys.argv[1], "of", os.environ["SLURM_JOB_NUM_NODES"], "at",
              sys.argv[2], sys.argv[3], os.environ["SCALEOUT_TEST"],
              pathlib.Path("cfg.py").read_text(), os.environ["SLURMD_NODENAME"])
        """,
        "{node_rank}",
        "{master_addr}",
        "{master_port}",
    )
    bad = script_spec(
        tmp_path / "bad",
        "import sys, time; r = int(sys.argv[1]); time.sleep(r); sys.exit(3 * r)",
        "{node_rank}",
    )
    h_ok = ex.submit(ok, "s-t000-a1")
    h_bad = ex.submit(bad, "s-t001-a1")
    st_ok = wait_state(helpers, ex, h_ok, {JobState.SUCCEEDED, JobState.FAILED})
    st_bad = wait_state(helpers, ex, h_bad, {JobState.SUCCEEDED, JobState.FAILED})
    log = Path(h_ok.log).read_text()
    assert st_ok.state == JobState.SUCCEEDED, log
    info = json.loads(Path(h_ok.data["job_dir"], "exit.json").read_text())  # written by the job
    assert info["returncode"] == 0
    lines = sorted(x for x in log.splitlines() if x.startswith("node "))
    assert len(lines) == 2 and lines[0].startswith("node 0 of 2 at 127.0.0.1")
    assert lines[1].startswith("node 1 of 2 at 127.0.0.1")
    assert len({x.split()[-1] for x in lines}) == 2  # two distinct Slurm nodes
    assert "a b lr = 0.1" in log
    # the job's own start and end (Slurm's allocation), next to what the batch script saw
    started = json.loads(Path(h_ok.data["job_dir"], "started.json").read_text())["time"]
    assert st_ok.started_at is not None and st_ok.ended_at is not None, st_ok
    assert abs(st_ok.started_at - started) <= 5
    assert st_ok.started_at <= info["time"] <= st_ok.ended_at + 1
    assert st_bad.ended_at - st_bad.started_at >= 1  # node 1 slept a second before failing
    # a failing node fails the job, with its code
    assert st_bad.state == JobState.FAILED and st_bad.exit_code == 3, st_bad
    # finished states are cached and found again by name after a controller restart
    assert ex.poll([h_ok])[h_ok.name] == st_ok
    again = SlurmExecutor(procs_per_node=1).find("s-t000-a1", ok)
    assert again is not None and again.job_id == h_ok.job_id
    assert SlurmExecutor().find("s-t009-a1", ok) is None
    # Slurm's own record agrees (jobcomp file, what is left once squeue forgets the job)
    comp = parse_jobcomp((slurm_cluster.root / "jobcomp.txt").read_text(), [h_ok.job_id])
    assert comp[h_ok.job_id].state == "COMPLETED"


def test_cancel_stops_every_node_and_is_safe_twice(slurm_cluster, helpers, tmp_path):
    ex = executor()
    spec = script_spec(tmp_path, "import time; print('up', flush=True); time.sleep(120)")
    h = ex.submit(spec, "c-t000-a1")
    wait_state(helpers, ex, h, {JobState.RUNNING})
    # RUNNING comes with the allocation: the log appears a moment later, when the script starts
    log = Path(h.log)
    helpers.wait_for(lambda: log.exists() and log.read_text().count("up") == 2, 30, "2 nodes up")
    ex.cancel(h)
    st = wait_state(helpers, ex, h, {JobState.CANCELLED, JobState.FAILED}, timeout=30)
    assert st.state == JobState.CANCELLED and "scaleout" in st.reason
    ex.cancel(h)  # twice: nothing happens
    helpers.wait_for(
        lambda: slurm_cluster.jobs().get("c-t000-a1") == "CANCELLED", 20, "Slurm to say CANCELLED"
    )
    leftover = subprocess.run(["pgrep", "-f", "time.sleep.120"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "cancel must stop the job on every node"


@pytest.mark.usefixtures("slurm_cluster")
def test_status_without_slurm_memory_and_failed_polls(helpers, tmp_path, monkeypatch):
    ex = executor()
    spec = script_spec(tmp_path, "import time; time.sleep(2)")
    h = ex.submit(spec, "p-t000-a1")
    wait_state(helpers, ex, h, {JobState.RUNNING, JobState.PENDING})
    # a failing squeue: UNKNOWN, never an exception, and the next polls back off
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: timeout' >&2\nexit 1\n")
    (fake / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    flaky = executor()
    st = flaky.poll([h])[h.name]
    assert st.state == JobState.UNKNOWN and "timeout" in st.reason
    assert flaky._throttle.backoff >= 1.0
    monkeypatch.undo()
    assert wait_state(helpers, ex, h, {JobState.SUCCEEDED}).exit_code == 0
    # Slurm forgot these jobs (MinJobAge passed): the job dir's files still tell
    gone = tmp_path / "gone"
    for name, files in {
        "g-t000-a1": {"started.json": "{}", "exit.json": '{"returncode": 0}'},
        "g-t001-a1": {"started.json": "{}", "exit.json": '{"returncode": 2, "signal": null}'},
        "g-t002-a1": {"started.json": "{}"},
        "g-t003-a1": {},
    }.items():
        (gone / name).mkdir(parents=True)
        for f, text in files.items():
            (gone / name / f).write_text(text)
    handles = [
        JobHandle("slurm", n, str(990000 + i), {"job_dir": str(gone / n)})
        for i, n in enumerate(sorted(os.listdir(gone)))
    ]
    states = {n: s.state for n, s in executor().poll(handles).items()}
    assert states == {
        "g-t000-a1": JobState.SUCCEEDED,
        "g-t001-a1": JobState.FAILED,
        "g-t002-a1": JobState.FAILED,  # started, then vanished without a word: lost
        "g-t003-a1": JobState.NOT_FOUND,
    }


def test_sacct_is_used_when_accounting_is_on(slurm_cluster, tmp_path, monkeypatch):
    """The parsing path with states a short test cannot produce for real (TIMEOUT needs a time
    limit of a minute); the real sacct is the test below."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sacct").write_text(
        "#!/bin/sh\nfor a; do last=$a; done\n"
        'echo "424242|a-t000-a1|TIMEOUT|0:15|1714564800|1714568400|/w"\n'
        'echo "424243|a-t001-a1|CANCELLED by 0|0:15|Unknown|1714568400|/w"\n'
    )
    (fake / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    ex = executor(accounting="yes")
    handles = [
        JobHandle("slurm", f"a-t00{i}-a1", f"42424{2 + i}", {"job_dir": str(tmp_path / str(i))})
        for i in range(2)
    ]
    out = ex.poll(handles)
    assert out["a-t000-a1"].state == JobState.FAILED
    assert "time limit" in out["a-t000-a1"].reason  # retried from its checkpoint
    assert (out["a-t000-a1"].started_at, out["a-t000-a1"].ended_at) == (1714564800, 1714568400)
    assert out["a-t001-a1"].state == JobState.CANCELLED
    assert "outside scaleout" in out["a-t001-a1"].reason
    assert (out["a-t001-a1"].started_at, out["a-t001-a1"].ended_at) == (None, 1714568400)


def test_real_accounting_is_detected_and_answers_from_sacct(
    slurm_accounting_cluster, helpers, tmp_path, monkeypatch
):
    """Real Slurm accounting (MariaDB + slurmdbd): the executor finds out that sacct works and
    reads how jobs ended from it alone. The plain sbatch jobs have no exit.json, so only
    Slurm's record can answer for them; slurmctld still remembers them (MinJobAge), so the
    proof that sacct answered is that the executor asked nothing else."""
    cluster = slurm_accounting_cluster
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))  # the session's cluster is the other
    # a trial through the executor, polled while it runs: sacct knows a new job only seconds
    # after slurmctld (the executor asks squeue for those), then may list it as PENDING with
    # JobName "allocation" while it already runs; none of that may read as an end
    live = executor()
    spec = script_spec(tmp_path / "live", "import time; time.sleep(2)")
    h = live.submit(spec, "acct-t003-a1")

    def sbatch(name: str, command: str) -> str:
        r = cluster.run(
            "sbatch", "--parsable", f"--job-name={name}", f"--output={tmp_path / name}.out",
            f"--chdir={tmp_path}", "--wrap", command,
        )  # fmt: skip
        return r.stdout.strip().split(";")[0]

    ids = {
        "acct-t000-a1": sbatch("acct-t000-a1", "true"),
        "acct-t001-a1": sbatch("acct-t001-a1", "exit 3"),
        "acct-t002-a1": sbatch("acct-t002-a1", "sleep 30"),
    }
    helpers.wait_for(lambda: cluster.jobs().get("acct-t002-a1") == "RUNNING", 30, "a job up")
    cluster.run("scancel", ids["acct-t002-a1"])  # outside scaleout

    seen = []

    def live_ended():
        st = live.poll([h])[h.name]
        seen.append(st.state)
        return st.state.finished and st

    st = helpers.wait_for(live_ended, 60, "the trial to end")
    assert (st.state, st.exit_code) == (JobState.SUCCEEDED, 0), Path(h.log).read_text()[-2000:]
    assert st.started_at is not None and st.started_at <= st.ended_at
    assert live.accounting is True
    assert set(seen[:-1]) <= {JobState.PENDING, JobState.RUNNING}, seen

    # what sacct itself says, once slurmdbd has every end (it lags slurmctld by a second or so)
    def ended():
        r = cluster.run(
            "sacct", "-X", "-n", "-P", "-j", ",".join(ids.values()),
            "-o", "JobID,JobName,State,ExitCode,WorkDir", check=False,
        )  # fmt: skip
        rows = {x.split("|")[0]: x.split("|")[1:] for x in r.stdout.splitlines() if "|" in x}
        final = ("COMPLETED", "FAILED", "CANCELLED")
        return len(rows) == 3 and all(r[1].startswith(final) for r in rows.values()) and rows

    rows = helpers.wait_for(ended, 30, "sacct to report the three ends")
    here = str(tmp_path)
    assert rows == {
        ids["acct-t000-a1"]: ["acct-t000-a1", "COMPLETED", "0:0", here],
        ids["acct-t001-a1"]: ["acct-t001-a1", "FAILED", "3:0", here],
        # the allocation's ExitCode stays 0:0; only its batch step says 0:15 (SIGTERM)
        ids["acct-t002-a1"]: ["acct-t002-a1", f"CANCELLED by {os.getuid()}", "0:0", here],
    }

    ex = executor()  # accounting "auto": it must find out for itself
    assert ex.accounting is None
    asked: list[str] = []
    run = ex._run
    monkeypatch.setattr(ex, "_run", lambda *argv: asked.append(argv[0]) or run(*argv))
    handles = [
        JobHandle("slurm", name, job_id, {"job_dir": str(tmp_path / ".jobs" / name)})
        for name, job_id in ids.items()
    ]
    out = ex.poll(handles)
    assert ex.accounting is True
    # the probe, then one sacct for the three jobs: no squeue, no jobcomp (scontrol)
    assert asked == ["sacct", "sacct"], asked
    assert sorted(ex._records) == sorted(ids.values())
    assert all(r.work_dir == here for r in ex._records.values())
    # and the times are sacct's Start and End, as sacct prints them in Unix seconds
    monkeypatch.setenv("SLURM_TIME_FORMAT", "%s")
    r = cluster.run(
        "sacct", "-X", "-n", "-P", "-j", ",".join(ids.values()), "-o", "JobID,Start,End"
    )
    times = {x.split("|")[0]: tuple(map(float, x.split("|")[1:])) for x in r.stdout.split()}
    expected = {
        "acct-t000-a1": JobStatus(JobState.SUCCEEDED, 0),
        "acct-t001-a1": JobStatus(JobState.FAILED, 3, "slurm: FAILED, exit code 3"),
        "acct-t002-a1": JobStatus(JobState.CANCELLED, 0, "slurm: cancelled outside scaleout"),
    }
    for name, job_id in ids.items():
        assert replace(out[name], started_at=None, ended_at=None) == expected[name]
        assert (out[name].started_at, out[name].ended_at) == times[job_id], name


def test_bad_input_is_refused_before_anything_is_submitted(slurm_cluster, helpers, tmp_path):
    with pytest.raises(UsageError, match="no partition 'nosuch'; this cluster has gpu"):
        SlurmExecutor(partition="nosuch").capacity()
    with pytest.raises(UsageError, match="Invalid --time specification"):
        SlurmExecutor(time="soon").capacity()
    with pytest.raises(UsageError, match="does not divide the 8 GPUs"):
        SlurmExecutor(procs_per_node=3).capacity()
    path = os.environ["PATH"]
    try:
        os.environ["PATH"] = str(tmp_path)
        with pytest.raises(StateError, match=r"sbatch.* not found on PATH"):
            SlurmExecutor().capacity()
    finally:
        os.environ["PATH"] = path
    # through the CLI: a clear message, exit code 2, no sweep folder, no job
    for extra, words in [
        (("--slurm-partition", "nosuch"), "no partition 'nosuch'"),
        (("--slurm-extra=--bogus-flag",), "unrecognized option '--bogus-flag'"),
        # 16 GPUs = 2 nodes; Slurm would queue the jobs and leave them pending forever
        (("--slurm-partition", "onenode"), "allows at most 1 node(s) per job (MaxNodes)"),
    ]:
        r = helpers.run_sweep(tmp_path, "bad", 1, *FLAGS, *extra, timeout=60)
        assert r.returncode == 2, r.stderr[-2000:]
        assert words in r.stderr
    cmd = helpers.sweep_cmd(tmp_path, "big", 1, *FLAGS)
    cmd[cmd.index("16")] = "48"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "(4 nodes x 8 GPUs = 32)" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "bad").exists() and not (tmp_path / "big").exists()
    assert not [j for j in slurm_cluster.jobs() if j.startswith(("bad-", "big-"))]


def test_slurm_queues_a_job_over_maxnodes_and_leaves_it_pending(slurm_cluster, helpers):
    """Why the MaxNodes check above exists: sbatch accepts such a job without a word."""
    job = slurm_cluster.run(
        "sbatch", "--parsable", "-p", "onenode", "-N", "2", "-J", "overmax", "--wrap", "true"
    ).stdout.strip()
    try:
        reason = helpers.wait_for(
            lambda: slurm_cluster.run("squeue", "-h", "-j", job, "-o", "%T|%r").stdout.strip(),
            timeout=30,
            what="squeue to list the job",
        )
        # PartitionConfig at first, PartitionNodeLimit once the scheduler has looked at it
        assert reason in ("PENDING|PartitionConfig", "PENDING|PartitionNodeLimit")
    finally:
        slurm_cluster.run("scancel", job, check=False)


def test_pruned_trial_job_is_cancelled(slurm_cluster, helpers, tmp_path):
    trial, handle = helpers.prune_one_trial(executor(), tmp_path)
    assert trial.state == TrialState.PRUNED
    assert (Path(handle.data["job_dir"]) / "cancelled").exists()
    helpers.wait_for(
        lambda: slurm_cluster.jobs().get(handle.name) == "CANCELLED", 20, "the job cancelled"
    )


def test_sweep_runs_two_trials_at_once_survives_a_controller_kill_and_resumes(
    slurm_cluster, helpers, tmp_path
):
    ws, name = tmp_path, "sl"
    proc = subprocess.Popen(
        helpers.sweep_cmd(ws, name, 3, *FLAGS),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def two_running():
        jobs = helpers.running_jobs(ws, name)
        states = slurm_cluster.jobs()
        running = [j for j in jobs if states.get(j["name"]) == "RUNNING"]
        return len(running) == 2 and running

    jobs = helpers.wait_for(two_running, 120, "two trials running in Slurm at once")
    nodes = slurm_cluster.run("squeue", "-h", "-t", "R", "-o", "%j %N").stdout
    assert len([x for x in nodes.splitlines() if x.startswith(f"{name}-")]) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    states = slurm_cluster.jobs()
    assert all(states[j["name"]] == "RUNNING" for j in jobs), "jobs must outlive the controller"
    r = helpers.run_sweep(ws, name, 3, *FLAGS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("re-attached") == 2
    helpers.check_complete(ws, name, 3)
    trials = helpers.study(ws, name).get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials[:2]:
        assert t.user_attrs["attempt"] == 1  # re-attached, not restarted
    # a real 2-node rendezvous: 2 processes, one per node, the global batch kept at 16
    log = (ws / name / "trials" / "t000" / f"{name}-t000-a1.log").read_text()
    assert "global batch 16; real layout: 2 process(es)" in log
