"""The controller killed (SIGKILL) at every crash point, then resumed: the sweep ends whole.

Each point of `scaleout.sweep.faults.POINTS` sits between two writes a resume reconciles.
A real controller process (`scaleout sweep`, forked from this test so that it does not pay
the imports again) dies there with no cleanup; its trials keep running; the same command
again must finish the sweep with the invariants of docs/sweep.md: the budget's trials, no
configuration twice, none RUNNING or WAITING, one MLflow child run per trial and none left
RUNNING, no metric step logged twice, every attempt's job submitted once, no process left.

The trainer is tests/sweep/toy_trainer.py (a command trainer that starts in a blink), run one
trial at a time so each point is met at a known trial: t000 dies after its epoch-1 checkpoint
and is retried, t001 completes, t002 (sampled) is pruned by the median pruner.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import pytest
import yaml

from scaleout.sweep.faults import POINTS

pytestmark = pytest.mark.slow
TOY = Path(__file__).with_name("toy_trainer.py")
NAME = "toy"
TRIALS = 3
# Points passed more than once, at the pass that shows the most: the retried attempt's end,
# the pruned trial's decided ending.
NTH = {"after_attempt_closed": 1, "after_ending": 3, "after_final_metrics": 2}
# A point only a resume with another --trials passes: the first run is a smaller sweep.
FIRST_TRIALS = {"after_budget_study": 2}


def write_space(tmp: Path) -> Path:
    toy = [
        sys.executable, str(TOY), "--name", "{name}", "--epochs", "{epochs}",
        "--work-dir", "{work_dir}", "--lr", "{lr}",
        "--fail-once", "t000", "--slow", "t002", "--slow-s", "2",
    ]  # fmt: skip
    profile = tmp / "toy.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "name": "toy",
                "argv": toy,
                "resume_argv": ["--resume"],
                "checkpoint": "ckpt.txt",
                "reference": {
                    "gpus": 1,
                    "samples_per_gpu": 1,
                    "lr": 0.01,
                    "warmup_iters": 2,
                    "warmup_ratio": 0.333,
                    "min_lr_ratio": 0.001,
                    "epochs": 2,
                    "train_samples": 64,
                },
                "metrics": {"files": ["metrics.jsonl"], "format": "jsonl", "objective": "NDS"},
            }
        )
    )
    space = tmp / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "trainer": {"name": "command", "profile": str(profile)},
                "seeds": ["reference", "linear"],
                "budget": {"trials": TRIALS},
                "sampler": {"type": "random", "seed": 0},
                "pruner": {
                    "type": "median",
                    "options": {"n_startup_trials": 2, "n_warmup_steps": 0},
                },
            }
        )
    )
    return space


def argv(ws: Path, space: Path, trials: int = TRIALS) -> list[str]:
    return [
        "sweep", "--gpus", "2", "--procs-per-trial", "2", "--space", str(space),
        "--name", NAME, "--workspace", str(ws), "--parallel", "1", "--poll-interval", "0.1",
        "--trials", str(trials),
    ]  # fmt: skip


def controller(ws: Path, args: list[str], crash: str | None = None, *, kill_after=None) -> int:
    """`scaleout ARGS` in a child process (a fork: a real process, already imported);
    returns its exit code, or -signal. `kill_after` seconds: SIGKILL it then."""
    log = ws.parent / f"controller-{time.monotonic_ns()}.log"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(fd, "w", buffering=1, closefd=False)  # noqa: SIM115
            os.environ.pop("SCALEOUT_CRASH_AT", None)
            if crash:
                os.environ["SCALEOUT_CRASH_AT"] = crash
            import scaleout.results.publish as publish

            # Plots and the leaderboard (scaleout.results) are no write a resume reconciles.
            publish.publish_after_sweep = lambda *a, **k: None
            from scaleout.cli.main import main

            code = main(args)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    deadline = time.monotonic() + (kill_after if kill_after is not None else 180)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            if kill_after is None:
                raise AssertionError(f"the controller hung; its log:\n{log.read_text()[-3000:]}")
            break
        time.sleep(0.05)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    if code not in (0, -signal.SIGKILL) and kill_after is None:
        print(log.read_text()[-4000:])
    return code


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory) -> Path:
    """An empty, migrated MLflow store to copy into each workspace (its tables take seconds
    to create), made by a child so that this process holds no connection to it."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0
    return path


@pytest.fixture
def workspace(tmp_path, mlflow_db):
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(mlflow_db, ws / "mlflow.db")
    yield ws, write_space(tmp_path)
    _stop_jobs(ws)  # a failed test leaves no trainer behind


def _jobs(ws: Path) -> list[Path]:
    return sorted((ws / NAME / "trials").glob("t*/.jobs/*"))


def _leftovers(ws: Path) -> list[int]:
    from scaleout.executors.localrun import group_members

    left = []
    for job in _jobs(ws):
        started = job / "started.json"
        if started.exists():
            info = json.loads(started.read_text())
            left += group_members(info["pid"], info["start_ticks"])
    return left


def _stop_jobs(ws: Path) -> None:
    for job in _jobs(ws):
        started = job / "started.json"
        if started.exists():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(json.loads(started.read_text())["pid"], signal.SIGKILL)


def check_invariants(ws: Path, trials: int = TRIALS) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    study = optuna.load_study(study_name=NAME, storage=f"sqlite:///{ws / NAME / 'study.db'}")
    all_trials = study.get_trials()
    states = [t.state.name for t in all_trials]
    assert len(all_trials) == trials, states  # the budget, no more: nothing queued twice
    assert all(t.state.is_finished() for t in all_trials), states  # none RUNNING / WAITING
    params = [json.dumps(t.params, sort_keys=True) for t in all_trials]
    assert len(set(params)) == trials, params  # no configuration twice
    assert study.user_attrs["trials"] == trials
    meta = json.loads((ws / NAME / "sweep.json").read_text())
    assert meta["trials"] == trials and meta["uid"] == study.user_attrs["uid"]

    # Every attempt's job submitted once, and no job that is no attempt's.
    wanted = {
        f"{NAME}-t{t.number:03d}-a{a['attempt']}"
        for t in all_trials
        for a in t.user_attrs["attempts"]
    }
    for t in all_trials:
        numbers = [a["attempt"] for a in t.user_attrs["attempts"]]
        assert numbers == list(range(1, len(numbers) + 1)), t.user_attrs["attempts"]
    assert {j.name for j in _jobs(ws)} == wanted
    # t000's first attempt died after its checkpoint: retried once, from it.
    lineage = all_trials[0].user_attrs["attempts"]
    assert [a["attempt"] for a in lineage] == [1, 2]
    assert lineage[1]["resumed_from_checkpoint"] is True

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name(NAME)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("scaleout.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("scaleout.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    numbers = sorted(int(r.data.tags["scaleout.trial"]) for r in children)
    assert numbers == list(range(trials))  # one child run per trial
    ended = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
    by_number = {t.number: t for t in all_trials}
    for r in children:
        t = by_number[int(r.data.tags["scaleout.trial"])]
        assert r.info.status == ended[t.state.name], (t.number, r.info.status)
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert "wall_time_s" in r.data.metrics  # the final metrics reached the run
        assert set(r.data.params) >= {"lr", "warmup_iters", "min_lr_ratio", "origin"}
        for key in r.data.metrics:
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert len(steps) == len(set(steps)), (t.number, key, steps)  # no step twice
        epochs = sorted(m.step for m in client.get_metric_history(r.info.run_id, "NDS"))
        assert epochs == sorted(t.intermediate_values), (t.number, epochs)
    assert not _leftovers(ws)  # no trainer, no wrapper left


def test_every_crash_point_is_covered():
    """The list the test below runs over is the list in the code: a new crash point is
    covered as soon as it is named."""
    root = Path(__file__).resolve().parents[2] / "scaleout"
    named = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        for part in text.split('crash_point("')[1:]:
            named.add(part.split('"', 1)[0])
    assert named == set(POINTS)
    docs = (root.parent / "docs" / "sweep.md").read_text()
    assert f"**{len(POINTS)} crash points**" in docs
    assert all(f"`{p}`" in docs for p in POINTS)


@pytest.mark.parametrize("point", list(POINTS))
def test_killed_at_a_crash_point_then_resumed(workspace, point):
    ws, space = workspace
    first = FIRST_TRIALS.get(point)
    if first is not None:  # the sweep ran a smaller budget; this run extends it
        assert controller(ws, argv(ws, space, first)) == 0
    crash = f"{point}:{NTH[point]}" if point in NTH else point
    code = controller(ws, argv(ws, space), crash)
    assert code == -signal.SIGKILL, f"the controller never reached {crash} (exit {code})"
    assert controller(ws, argv(ws, space)) == 0
    check_invariants(ws)


def test_killed_at_random_moments_then_resumed(workspace):
    ws, space = workspace
    rng = random.Random(12)
    for _ in range(4):
        controller(ws, argv(ws, space), kill_after=rng.uniform(0.5, 5.0))
    assert controller(ws, argv(ws, space)) == 0
    check_invariants(ws)


def test_a_sweep_in_which_no_trial_reports_the_objective_fails(workspace):
    """JSON lines may hold any key, so the objective cannot be checked up front: a sweep whose
    trials never report it ends non-zero (4), its parent run FAILED."""
    ws, space = workspace
    data = yaml.safe_load(space.read_text())
    data["objective"] = {"metric": "NDSS"}
    data["pruner"] = {"type": "none"}
    space.write_text(yaml.safe_dump(data))
    assert controller(ws, argv(ws, space, 1)) == 4
    log = max(ws.parent.glob("controller-*.log")).read_text()
    assert "no trial reported NDSS" in log
