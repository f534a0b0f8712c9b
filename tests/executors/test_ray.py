"""The Ray executor against a real 4-node Ray cluster (a head and 3 workers on distinct
loopback addresses, 8 fake GPUs each) that the `ray_cluster` fixture starts and stops by PID.

Trials of 16 GPUs run as 2 placement-group bundles (STRICT_SPREAD) x 1 process, with a real
2-node torchrun rendezvous at bundle 0's address. The node-loss test runs last: it kills a
worker's raylet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from scaleout.core.errors import StateError, UsageError
from scaleout.core.job import JobState, Layout, TrialSpec
from scaleout.executors.ray import RayExecutor, job_status

pytestmark = pytest.mark.ray
FLAGS = ("--executor", "ray")


def executor() -> RayExecutor:
    return RayExecutor(procs_per_node=1, poll_min_interval_s=0.3)


def wait_state(helpers, ex, handle, states, timeout=90.0):
    return helpers.wait_for(
        lambda: (st := ex.poll([handle])[handle.name]).state in states and st,
        timeout,
        f"{handle.name} to reach {states}",
    )


def placement_groups(cluster, prefix: str) -> dict[str, list[str]]:
    """Created placement groups whose name starts with prefix -> the node of each bundle."""
    from ray.util.state import list_placement_groups

    pgs = list_placement_groups(address=cluster.address, detail=True, limit=1000)
    return {
        pg.name: [b.get("node_id") for b in pg.bundles]
        for pg in pgs
        if pg.name.startswith(prefix) and pg.state == "CREATED"
    }


def node_ips(cluster) -> dict[str, str]:
    from ray.util.state import list_nodes

    return {n.node_id: n.node_ip for n in list_nodes(address=cluster.address)}


@pytest.mark.parametrize(
    ("status", "code", "state"),
    [
        ("PENDING", None, JobState.PENDING),
        ("RUNNING", None, JobState.RUNNING),
        ("SUCCEEDED", 0, JobState.SUCCEEDED),
        ("FAILED", 3, JobState.FAILED),
        ("STOPPED", None, JobState.CANCELLED),
    ],
)
def test_ray_job_states(status, code, state):
    st = job_status(status, code, "Job entrypoint command failed with exit code 3\nlogs...")
    assert st.state == state and st.exit_code == code


def test_capacity_and_refusals_before_anything_is_submitted(ray_cluster, helpers, tmp_path):
    cap = executor().capacity()
    assert (cap.nodes, cap.gpus_per_node, cap.procs_per_node) == (4, 8, 1)
    with pytest.raises(StateError, match=r"cannot reach the Ray cluster at http://127\.0\.0\.1:9"):
        RayExecutor(address="127.0.0.1:9").capacity()
    with pytest.raises(UsageError, match="does not divide the 8 GPUs"):
        RayExecutor(procs_per_node=3).capacity()
    saved = os.environ.pop("RAY_ADDRESS")
    try:
        with pytest.raises(UsageError, match="needs the cluster's address"):
            RayExecutor()
    finally:
        os.environ["RAY_ADDRESS"] = saved
    # a trial larger than the cluster: refused with the numbers, nothing written or submitted
    cmd = helpers.sweep_cmd(tmp_path, "big", 1, *FLAGS)
    cmd[cmd.index("16")] = "48"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "a trial of 48 GPUs does not fit this cluster (4 nodes x 8 GPUs = 32)" in r.stderr
    r = helpers.run_sweep(tmp_path, "gone", 1, *FLAGS, "--ray-address", "127.0.0.1:9")
    assert r.returncode == 3 and "cannot reach the Ray cluster" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "big").exists() and not (tmp_path / "gone").exists()


def test_two_bundles_on_two_nodes_rendezvous_at_rank_0(ray_cluster, helpers, tmp_path):
    ex = executor()
    # Node 1 fails only once node 0 has spoken: the entrypoint stops the other nodes at the
    # first failure, and on a loaded machine node 0 could otherwise be stopped before it ran.
    code = """
        import os, sys, time
        print("node", sys.argv[1], "at", sys.argv[2], sys.argv[3], os.environ["SCALEOUT_T"],
              open("cfg.py").read(), flush=True)
        deadline = time.monotonic() + 60
        while sys.argv[1] == "1" and time.monotonic() < deadline:
            if os.path.exists("rr-t000-a1.log") and "node 0" in open("rr-t000-a1.log").read():
                break
            time.sleep(0.05)
        sys.exit(int(sys.argv[1]) * 3)
    """
    spec = TrialSpec(
        name="t",
        work_dir=str(tmp_path),
        argv=(
            sys.executable,
            "-c",
            textwrap.dedent(code),
            "{node_rank}",
            "{master_addr}",
            "{master_port}",
        ),
        layout=Layout(2, 1, 16, False),
        files={"cfg.py": "lr = 0.1"},
        env={"SCALEOUT_T": "x"},
    )
    submitted = time.time()
    h = ex.submit(spec, "rr-t000-a1")
    st = wait_state(helpers, ex, h, {JobState.SUCCEEDED, JobState.FAILED})
    assert st.state == JobState.FAILED and st.exit_code == 3, st  # the worst node's code
    # the job info's start_time/end_time (ms), around the run and after the submit
    assert st.started_at is not None and st.ended_at is not None, st
    assert submitted - 1 <= st.started_at <= st.ended_at <= time.time() + 1
    rank0 = Path(h.log).read_text().split()
    rank1 = (tmp_path / "rr-t000-a1.node1.log").read_text().split()
    assert rank0[:2] == ["node", "0"] and rank1[:2] == ["node", "1"]
    assert rank0[3:6] == rank1[3:6] and rank0[5:] == ["x", "lr", "=", "0.1"]
    assert rank0[3] in set(node_ips(ray_cluster).values())  # bundle 0's node is the rendezvous
    assert ex.find("rr-t000-a1", spec).job_id == "rr-t000-a1"
    assert ex.find("rr-t009-a1", spec) is None
    other = TrialSpec(name="t", work_dir=str(tmp_path / "x"), argv=("true",), layout=spec.layout)
    with pytest.raises(UsageError, match="already has a job named rr-t000-a1 from another sweep"):
        ex.find("rr-t000-a1", other)


def test_pruned_trial_job_is_stopped(ray_cluster, helpers, tmp_path):
    from ray.job_submission import JobSubmissionClient

    trial, handle = helpers.prune_one_trial(executor(), tmp_path)
    assert trial.state == TrialState.PRUNED
    client = JobSubmissionClient(ray_cluster.address)
    helpers.wait_for(
        lambda: str(client.get_job_status(handle.job_id).value) == "STOPPED", 30, "job STOPPED"
    )
    helpers.wait_for(
        lambda: not placement_groups(ray_cluster, handle.name), 30, "its placement group freed"
    )
    helpers.wait_for(lambda: not _trainers(tmp_path), 30, "no trainer process left on any node")


def _trainers(work: Path) -> list[int]:
    r = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def test_sweep_places_two_trials_at_once_survives_a_controller_kill_and_resumes(
    ray_cluster, helpers, tmp_path
):
    ws, name = tmp_path, "ry"
    proc = subprocess.Popen(
        helpers.sweep_cmd(ws, name, 2, *FLAGS), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def two_placed():
        pgs = placement_groups(ray_cluster, f"{name}-")
        return len(pgs) == 2 and pgs

    pgs = helpers.wait_for(two_placed, 120, "two trials' placement groups at once")
    nodes = [n for bundles in pgs.values() for n in bundles]
    assert len(nodes) == 4 and len(set(nodes)) == 4  # STRICT_SPREAD: 4 distinct nodes
    jobs = helpers.running_jobs(ws, name)
    assert len(jobs) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    st = executor().poll([_handle(j) for j in jobs])
    assert all(s.state == JobState.RUNNING for s in st.values()), "jobs outlive the controller"
    r = helpers.run_sweep(ws, name, 2, *FLAGS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("re-attached") == 2
    helpers.check_complete(ws, name, 2)
    trials = helpers.study(ws, name).get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.user_attrs["attempt"] for t in trials] == [1, 1]  # re-attached, not rerun
    log = (ws / name / "trials" / "t000" / f"{name}-t000-a1.log").read_text()
    assert "global batch 16; real layout: 2 process(es)" in log


def _handle(job: dict):
    from scaleout.core.job import JobHandle

    return JobHandle(job["executor"], job["name"], job["job_id"], job["data"])


def test_node_lost_mid_trial_retries_from_checkpoint(ray_cluster, helpers, tmp_path):
    ws, name = tmp_path, "lost"
    proc = subprocess.Popen(
        helpers.sweep_cmd(ws, name, 1, *FLAGS), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        ckpt = ws / name / "trials" / "t000" / "last_checkpoint"
        helpers.wait_for(ckpt.exists, 120, "the trial's first checkpoint")
        bundles = placement_groups(ray_cluster, f"{name}-t000-a1")[f"{name}-t000-a1"]
        ips = node_ips(ray_cluster)
        victim = next(ips[n] for n in bundles if ips[n].startswith("127.0.0."))  # a worker
        os.kill(ray_cluster.raylet_of(int(victim.rsplit(".", 1)[1])), signal.SIGKILL)
        assert proc.wait(timeout=240) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    t = helpers.study(ws, name).get_trials()[0]
    assert t.state == TrialState.COMPLETE
    lineage = t.user_attrs["attempts"]
    assert [a["attempt"] for a in lineage] == [1, 2], lineage
    assert lineage[0]["state"] == "failed"
    assert lineage[1]["resumed_from_checkpoint"] is True
    log = (ws / name / "trials" / "t000" / f"{name}-t000-a2.log").read_text()
    assert "resum" in log.lower()
    helpers.check_complete(ws, name, 1)
