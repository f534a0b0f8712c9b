"""SweepStore, the one reader of a saved sweep, against sweeps made by hand: moved folders, broken
studies, the order of trials and the knobs of a plan."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scaleout.core.errors import StateError, UsageError
from scaleout.sweep.workspace import (
    CORE_KNOBS,
    SweepStore,
    TrialRecord,
    _now_at,
    best_first,
    plan_knobs,
)


def test_records_decode_the_study(saved_sweep):
    d = saved_sweep()
    store = SweepStore.open("hand", d.parent)
    records = store.records()
    assert [r.number for r in records] == [0, 1, 2, 3, 4]  # waiting left out
    assert len(store.records(include_waiting=True)) == 6
    r0 = records[0]
    assert (r0.state, r0.origin, r0.value, r0.attempts) == ("COMPLETE", "reference", 0.30, 1)
    assert r0.params["gpus"] == 160 and r0.job["job_id"] == "100" and r0.run_id == "run0"
    assert r0.work_dir == d / "trials" / "t000"
    assert records[2].intermediate == {1: 0.10, 2: 0.12} and records[2].value is None
    assert records[3].failure["log_tail"] == "OOM"
    assert store.objective == "NDS" and store.direction == "maximize"
    assert store.knobs == CORE_KNOBS and store.controller() is None


@pytest.mark.parametrize(
    ("direction", "order", "ranks"),
    [
        ("maximize", [1, 0, 2, 4, 3], [1, 2, None, None, None]),
        ("minimize", [0, 1, 2, 4, 3], [1, 2, None, None, None]),
    ],
)
def test_best_first(saved_sweep, direction, order, ranks):
    records = SweepStore.open("hand", saved_sweep().parent).records()
    got = best_first(records, direction)
    assert [r.number for _, r in got] == order and [rank for rank, _ in got] == ranks


@pytest.mark.parametrize(
    ("plan", "knobs"),
    [
        ({}, CORE_KNOBS),
        ({"ranges": {"min_lr_ratio": {}, "lr": {}}}, CORE_KNOBS),
        (
            {"ranges": {"weight_decay": {}}, "fixed": {"seed": 0}},
            (*CORE_KNOBS, "weight_decay", "seed"),
        ),
        ({"seed_trials": [{"origin": "sqrt", "lr": 1, "beta2": 0.99}]}, (*CORE_KNOBS, "beta2")),
        # A fixed trial length or batch has its own column: it is no knob.
        (
            {"fixed": {"epochs": 12, "samples_per_gpu": 2, "warmup_ratio": 0.1}},
            (*CORE_KNOBS, "warmup_ratio"),
        ),
    ],
)
def test_plan_knobs(plan, knobs):
    assert plan_knobs(plan) == knobs


@pytest.mark.parametrize(
    ("recorded", "home", "now"),
    [
        ("/old/ws/s1/study.db", "/new/ws/s1", "/new/ws/s1/study.db"),
        ("/old/ws/s1/trials/t003", "/new/s1", "/new/s1/trials/t003"),
        ("/data/dbs/other.db", "/new/ws/s1", "/data/dbs/other.db"),  # outside: as recorded
        ("/new/ws/s1/study.db", "/new/ws/s1", "/new/ws/s1/study.db"),
    ],
)
def test_a_path_inside_the_sweep_folder_follows_it(recorded, home, now):
    assert _now_at(Path(recorded), Path(home)) == Path(now)


def test_a_moved_workspace_reads_its_own_files(saved_sweep, tmp_path):
    d = saved_sweep()
    (d.parent / "mlflow.db").write_bytes(b"")  # the default store: only its place matters here
    moved = tmp_path / "elsewhere" / "renamed-ws"
    moved.parent.mkdir()
    os.rename(d.parent, moved)
    store = SweepStore.open("hand", moved)
    assert store.storage_url == f"sqlite:///{moved / 'hand' / 'study.db'}"
    assert store.mlflow_uri() == f"sqlite:///{moved / 'mlflow.db'}"
    assert store.records()[0].work_dir == moved / "hand" / "trials" / "t000"
    assert not d.parent.exists()  # nothing recreated where the sweep was


def test_a_store_outside_the_workspace_stays_where_it_was(saved_sweep, tmp_path):
    shared = tmp_path / "shared" / "mlflow.db"
    shared.parent.mkdir()
    shared.write_bytes(b"")
    store = SweepStore.open("hand", saved_sweep(mlflow_uri=f"sqlite:///{shared}").parent)
    assert store.mlflow_uri() == f"sqlite:///{shared}"
    assert store.mlflow_uri("") is None
    gone = tmp_path / "nowhere.db"
    with pytest.raises(StateError, match="no MLflow store at"):
        store.mlflow_uri(f"sqlite:///{gone}")
    assert not gone.exists()
    shared.unlink()
    with pytest.raises(StateError, match="MLflow store of sweep 'hand' is gone"):
        store.mlflow_uri()


@pytest.mark.parametrize(
    ("content", "reason"),
    [(os.urandom(4096), "file is not a database"), (b"", "no such table")],
    ids=["random bytes", "empty file"],
)
def test_a_broken_study_is_named_in_one_line(saved_sweep, content, reason):
    d = saved_sweep()
    db = d / "study.db"
    db.write_bytes(content)
    with pytest.raises(StateError) as e:
        SweepStore.open("hand", d.parent).records()
    assert str(e.value).count("\n") == 0 and str(db) in str(e.value) and reason in str(e.value)
    assert db.read_bytes() == content  # read-only: no tables were created


def test_a_study_that_is_gone_or_another_sweeps(saved_sweep, tmp_path):
    import optuna

    d = saved_sweep()
    (d / "study.db").rename(d / "kept.db")
    with pytest.raises(StateError, match="study database of sweep 'hand' is gone"):
        SweepStore.open("hand", d.parent).records()
    other = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(study_name="not-hand", storage=other)
    meta = json.loads((d / "sweep.json").read_text())
    (d / "sweep.json").write_text(json.dumps({**meta, "storage": other}))
    with pytest.raises(StateError, match=r"other.db holds no study 'hand'"):
        SweepStore.open("hand", d.parent).records()
    with pytest.raises(UsageError, match="no sweep named 'nope'"):
        SweepStore.open("nope", d.parent)


def test_a_record_without_a_store_keeps_its_paths():
    # `leaderboard_rows` takes the controller's FrozenTrials too: no store, no relocation.
    from optuna.trial import TrialState, create_trial

    t = create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs={"work_dir": "/x/t000"})
    r = TrialRecord.from_trial(t, "NDS")
    assert (r.value, r.origin, r.attempts, r.work_dir) == (0.5, "sampled", 0, Path("/x/t000"))
