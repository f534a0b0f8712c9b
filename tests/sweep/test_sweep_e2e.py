"""`scaleout sweep` for real: minibev (tiny) trainers as subprocesses, a SQLite study, a real
MLflow store, and the controller killed with SIGKILL while trials run, then resumed.

Each check reads the study, the trial processes and MLflow after the fact. The kills at every
crash point between two writes are in test_crash_points.py (a trainer that starts in a blink:
31 points cost minutes, where minibev would cost most of an hour)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[2]
SPACE = str(REPO / "search_spaces" / "lr_scaling.yaml")
NAME = "e2e"
pytestmark = pytest.mark.slow


def sweep_cmd(ws: Path, trials: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scaleout",
        "sweep",
        "--gpus",
        "16",
        "--space",
        SPACE,
        "--preset",
        "tiny",
        "--trials",
        str(trials),
        "--name",
        NAME,
        "--workspace",
        str(ws),
        "--poll-interval",
        "0.3",
        *extra,
    ]


def run(ws: Path, trials: int, *extra: str, env: dict | None = None, timeout: float = 240):
    return subprocess.run(
        sweep_cmd(ws, trials, *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def study(ws: Path) -> optuna.Study:
    return optuna.load_study(study_name=NAME, storage=f"sqlite:///{ws / NAME / 'study.db'}")


def mlflow_runs(ws: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name(NAME)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("scaleout.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("scaleout.kind") == "trial"]
    return client, parents, children


def check_complete(ws: Path, trials: int) -> None:
    s = study(ws)
    states = [t.state for t in s.get_trials()]
    assert states.count(TrialState.RUNNING) == 0
    assert len([st for st in states if st.is_finished()]) == trials
    client, parents, children = mlflow_runs(ws)
    assert len(parents) == 1
    assert sorted(int(r.data.tags["scaleout.trial"]) for r in children) == list(range(trials))
    for r in children:  # one run per trial, nested, each epoch logged once
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        history = client.get_metric_history(r.info.run_id, "NDS")
        steps = [m.step for m in history]
        assert steps == sorted(set(steps)), f"duplicated epochs in {r.info.run_name}: {steps}"


def test_sweep_runs_ranks_and_tracks(tmp_path):
    r = run(tmp_path, 3, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["complete"] == 3 and summary["stop_reason"] == "budget spent"
    assert [row["origin"] for row in sorted(summary["leaderboard"], key=lambda x: x["trial"])] == [
        "reference",
        "sqrt",
        "linear",
    ]
    assert "virtual GPUs" in r.stderr  # said once, plainly
    assert r.stderr.count("virtual GPUs") == 1
    check_complete(tmp_path, 3)
    client, parents, children = mlflow_runs(tmp_path)
    child = children[0]
    for key in (
        "lr",
        "warmup_iters",
        "min_lr_ratio",
        "gpus",
        "samples_per_gpu",
        "global_batch",
        "origin",
    ):
        assert key in child.data.params
    # Virtual GPUs: the compute spent here and trial-equivalents; the tiny preset has no cost
    # basis, so no estimate of GPU-hours at the target (docs/analysis.md, "Cost").
    for key in ("NDS", "mAP", "wall_time_s", "cpu_hours_here", "trial_equivalents"):
        assert key in child.data.metrics
    assert "gpu_hours" not in child.data.metrics
    assert child.data.tags["state"] == "COMPLETE"
    assert child.info.run_name.startswith(f"t{int(child.data.tags['scaleout.trial']):03d} lr=")
    arts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"config", "log"} <= arts
    assert parents[0].info.status == "FINISHED"
    # the same command again: nothing more to do, nothing re-run
    again = run(tmp_path, 3)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(study(tmp_path).get_trials()) == 3


def _wait(predicate, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _running_jobs(ws: Path) -> list[dict]:
    try:
        trials = study(ws).get_trials()
    except Exception:
        return []
    return [
        json.loads(t.user_attrs["job"])
        for t in trials
        if t.state == TrialState.RUNNING and t.user_attrs.get("job")
    ]


def _alive(pid: int) -> bool:
    from scaleout.executors.localrun import process_start_ticks

    return process_start_ticks(pid) is not None


def test_kill_while_trials_run_then_resume_reattaches(tmp_path):
    proc = subprocess.Popen(
        sweep_cmd(tmp_path, 3), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    jobs = _wait(
        lambda: len(_running_jobs(tmp_path)) == 2 and _running_jobs(tmp_path),
        what="two running trials",
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pids = [j["data"]["pid"] for j in jobs]
    assert all(_alive(p) for p in pids), "trials must outlive the controller"
    r = run(tmp_path, 3)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "re-attached" in r.stderr
    check_complete(tmp_path, 3)
    for t in study(tmp_path).get_trials()[:2]:
        assert t.user_attrs["attempt"] == 1  # re-attached, not restarted


def test_trial_killed_while_controller_is_down_resumes_from_checkpoint(tmp_path):
    proc = subprocess.Popen(
        sweep_cmd(tmp_path, 1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = tmp_path / NAME / "trials" / "t000" / "last_checkpoint"
    jobs = _wait(lambda: ckpt.exists() and _running_jobs(tmp_path), what="a first checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.killpg(jobs[0]["data"]["pid"], signal.SIGKILL)  # the trial dies too (node reboot)
    r = run(tmp_path, 1)
    assert r.returncode == 0, r.stderr[-3000:]
    t = study(tmp_path).get_trials()[0]
    assert t.state == TrialState.COMPLETE
    lineage = t.user_attrs["attempts"]
    assert [a["attempt"] for a in lineage] == [1, 2]
    assert lineage[1]["resumed_from_checkpoint"] is True
    log = (tmp_path / NAME / "trials" / "t000" / f"{NAME}-t000-a2.log").read_text()
    assert "resum" in log.lower()
    check_complete(tmp_path, 1)


def test_second_controller_refuses_and_names_the_first(tmp_path):
    proc = subprocess.Popen(
        sweep_cmd(tmp_path, 2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait(lambda: _running_jobs(tmp_path), what="a running trial")
        r = run(tmp_path, 2)
        assert r.returncode == 3
        assert f"another controller is running this sweep (pid {proc.pid} on host" in r.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    # Ctrl-C says how to go on
    assert f"resume with: scaleout sweep --name {NAME} --resume" in err
    # Ctrl-C left the trials running; resuming finishes the sweep cleanly
    r = run(tmp_path, 2)
    assert r.returncode == 0, r.stderr[-2000:]
    check_complete(tmp_path, 2)


def test_different_space_file_is_refused(tmp_path):
    r = run(tmp_path, 1)
    assert r.returncode == 0, r.stderr[-2000:]
    other = tmp_path / "other.yaml"
    other.write_text(Path(SPACE).read_text().replace("widen: 1.25", "widen: 2.0"))
    cmd = sweep_cmd(tmp_path, 1)
    cmd[cmd.index(SPACE)] = str(other)
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r2.returncode == 2
    assert "was started with a different space file" in r2.stderr
    assert f"scaleout sweep --name {NAME} --resume" in r2.stderr


def test_unreachable_stores_fail_before_any_trial(tmp_path):
    r = run(
        tmp_path,
        1,
        "--mlflow-uri",
        "http://127.0.0.1:9",
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"},
    )
    assert r.returncode == 3
    assert "cannot reach the MLflow tracking store http://127.0.0.1:9" in r.stderr
    assert not (tmp_path / NAME).exists()  # nothing half-written
    r = run(tmp_path, 1, "--storage", "postgresql://nobody@127.0.0.1:9/none")
    assert r.returncode == 3
    assert "cannot open the study database postgresql://nobody@127.0.0.1:9/none" in r.stderr
    assert not (tmp_path / NAME).exists()


def test_trials_on_resume_extends_the_budget_and_is_shown(tmp_path):
    r = run(tmp_path, 1)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run(tmp_path, 2, "--resume")  # the budget was spent; --trials 2 asks for one more
    assert r.returncode == 0, r.stderr[-3000:]
    assert "budget extended from 1 to 2 trials" in r.stderr
    check_complete(tmp_path, 2)
    assert json.loads((tmp_path / NAME / "sweep.json").read_text())["trials"] == 2
    assert study(tmp_path).user_attrs["trials"] == 2
    r = run(tmp_path, 1, "--resume")  # fewer than started: refused before anything runs
    assert r.returncode == 2
    assert "--trials 1: the sweep 'e2e' has already started 2 trials" in r.stderr
    r = subprocess.run(  # no --trials: the stored budget, nothing more to run
        [*sweep_cmd(tmp_path, 2)[:4], "--name", NAME, "--resume", "--workspace", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 trials of" in r.stderr
    assert len(study(tmp_path).get_trials()) == 2
