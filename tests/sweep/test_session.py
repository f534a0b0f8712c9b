"""Opening a sweep: what `--trials` does on resume (docs/sweep.md, "Resume, crashes and
faults"). The stores are real (SQLite study, SQLite MLflow); no trial runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaleout.cli.main import main
from scaleout.core.errors import UsageError
from scaleout.sweep.session import SweepRequest, open_sweep, resolve_trials

REPO = Path(__file__).resolve().parents[2]
SPACE = str(REPO / "search_spaces" / "lr_scaling.yaml")


@pytest.mark.parametrize(
    ("stored", "started", "asked", "trials"),
    [(10, 4, None, 10), (10, 10, 14, 14), (10, 4, 6, 6), (10, 4, 4, 4), (10, 0, 1, 1)],
)
def test_resolve_trials(stored, started, asked, trials):
    assert resolve_trials("s", stored, started, asked) == trials


def test_resolve_trials_refuses_fewer_than_started():
    with pytest.raises(UsageError, match=r"--trials 3: the sweep 's' has already started 5"):
        resolve_trials("s", 10, 5, 3)


def _open(ws: Path, **kw):
    req = SweepRequest(name="b", workspace=str(ws), trainer_flags={"preset": "tiny"}, **kw)
    return open_sweep(req)


def _stored(ws: Path, opened) -> tuple[int, int]:
    meta = json.loads((ws / "b" / "sweep.json").read_text())
    return meta["trials"], opened.searcher.study.user_attrs["trials"]


@pytest.mark.slow  # real MLflow and study stores (about 20 s on two cores)
def test_trials_on_resume_extends_keeps_or_is_refused(tmp_path, capsys):
    opened = _open(tmp_path, space=SPACE, gpus=16, trials=3)
    try:
        assert opened.budget_change is None and _stored(tmp_path, opened) == (3, 3)
        opened.searcher.ask(), opened.searcher.ask()  # two trials started, then the sweep stops
    finally:
        opened.lock.release()

    # fewer than the trials started: refused, naming the flag and the count, exit 2
    code = main(["sweep", "--name", "b", "--resume", "--trials", "1", "--workspace", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--trials 1: the sweep 'b' has already started 2 trials" in err
    assert "give --trials 2 or more" in err

    opened = _open(tmp_path, resume=True, trials=5)  # more: the budget grows
    try:
        assert opened.plan.trials == 5 and opened.budget_change == (3, 5)
        assert _stored(tmp_path, opened) == (5, 5)
        changes = opened.searcher.study.user_attrs["budget_changes"]
        assert [(c["from"], c["to"]) for c in changes] == [(3, 5)]
    finally:
        opened.lock.release()

    opened = _open(tmp_path, resume=True)  # no --trials: the stored budget
    try:
        assert opened.plan.trials == 5 and opened.budget_change is None
    finally:
        opened.lock.release()


@pytest.mark.slow
def test_a_budget_too_small_for_the_seeds_queues_them_once_extended(tmp_path):
    opened = _open(tmp_path, space=SPACE, gpus=16, trials=1)
    try:
        assert [t.attrs["origin"] for t in opened.searcher.trials()] == ["reference"]
    finally:
        opened.lock.release()
    opened = _open(tmp_path, resume=True, trials=4)
    try:
        origins = [t.attrs["origin"] for t in opened.searcher.trials()]
        assert origins == ["reference", "sqrt", "linear"]
    finally:
        opened.lock.release()


def _fake_sweep(ws: Path, name: str = "b") -> None:
    """A sweep folder as a running controller holds it (no store behind it: nothing may
    reach one)."""
    d = ws / name
    d.mkdir(parents=True)
    (d / "space.yaml").write_text(Path(SPACE).read_text())
    meta = {"name": name, "uid": "u", "space_file": SPACE, "gpus": 16, "samples_per_gpu": 1}
    (d / "sweep.json").write_text(json.dumps(meta))


def test_a_second_controller_is_refused_before_any_slow_check(tmp_path, monkeypatch):
    from scaleout.core.errors import StateError
    from scaleout.sweep.workspace import ControllerLock, Sweep

    _fake_sweep(tmp_path)
    held = ControllerLock(Sweep(tmp_path, "b"))
    held.acquire()

    def slow(*args, **kwargs):
        raise AssertionError("the trainer or a store was read before the lock")

    monkeypatch.setattr("scaleout.sweep.session.build_plan", slow)
    monkeypatch.setattr("scaleout.sweep.study.open_storage", slow)
    try:
        for req in (
            SweepRequest(name="b", workspace=str(tmp_path), resume=True),
            SweepRequest(name="b", workspace=str(tmp_path), space=SPACE, gpus=16),
        ):
            with pytest.raises(StateError, match=r"another controller is running this sweep \(pid"):
                open_sweep(req)
        # A sweep still being created (no sweep.json yet) is refused at once too.
        (tmp_path / "b" / "sweep.json").unlink()
        with pytest.raises(StateError, match="another controller is running this sweep"):
            open_sweep(SweepRequest(name="b", workspace=str(tmp_path), space=SPACE, gpus=16))
    finally:
        held.release()


@pytest.mark.slow  # real MLflow and study stores
def test_a_creation_that_died_after_the_mlflow_experiment_is_finished_by_a_rerun(
    tmp_path, monkeypatch, capsys
):
    from scaleout.sweep.tracking import MlflowTracker

    real = MlflowTracker.experiment

    def create_then_die(self, name, uid):
        real(self, name, uid)
        raise KeyboardInterrupt  # the experiment exists; sweep.json does not

    monkeypatch.setattr(MlflowTracker, "experiment", create_then_die)
    with pytest.raises(KeyboardInterrupt):
        _open(tmp_path, space=SPACE, gpus=16, trials=3)
    monkeypatch.undo()
    # --resume says what happened, and how to finish it (exit 2: no such sweep yet)
    code = main(["sweep", "--name", "b", "--resume", "--workspace", str(tmp_path)])
    assert code == 2
    assert "never completely created: run the command that started it again" in (
        capsys.readouterr().err
    )
    opened = _open(tmp_path, space=SPACE, gpus=16, trials=3)  # the same command again
    try:
        assert not opened.resumed
        assert [t.attrs["origin"] for t in opened.searcher.trials()] == [
            "reference",
            "sqrt",
            "linear",
        ]
        uid = json.loads((tmp_path / "b" / "sweep.json").read_text())["uid"]
        assert uid == opened.searcher.study.user_attrs["uid"]
    finally:
        opened.lock.release()


@pytest.mark.slow  # real MLflow and study stores
def test_a_password_in_a_store_url_is_never_written_and_a_resume_takes_it_again(
    tmp_path, monkeypatch
):
    import scaleout.sweep.study as study_module

    url = "postgresql://me:hunter2@db.example/sweeps"
    behind = f"sqlite:///{tmp_path / 'server.db'}"  # what the server would store
    real_open, real_create = study_module.open_storage, study_module.create_or_load
    seen: list[str] = []

    def open_storage(u):
        if u != behind:  # create_or_load opens the storage too
            seen.append(u)
        return real_open(behind)

    def create_or_load(u, name, plan):
        seen.append(u)
        return real_create(behind, name, plan)

    monkeypatch.setattr(study_module, "open_storage", open_storage)
    monkeypatch.setattr(study_module, "create_or_load", create_or_load)
    _open(tmp_path, space=SPACE, gpus=16, trials=1, storage=url).lock.release()
    assert seen == [url, url]
    meta = json.loads((tmp_path / "b" / "sweep.json").read_text())
    assert meta["storage"] == "postgresql://me:***@db.example/sweeps"
    for path in (tmp_path / "b").rglob("*"):
        assert not path.is_file() or b"hunter2" not in path.read_bytes(), path

    # A resume without the password is refused, naming where to give it ...
    with pytest.raises(UsageError, match="recorded without its password") as refused:
        _open(tmp_path, resume=True)
    assert "--storage" in str(refused.value) and "SCALEOUT_STORAGE" in str(refused.value)
    # ... and takes it from the flag or the environment.
    _open(tmp_path, resume=True, storage=url).lock.release()
    monkeypatch.setenv("SCALEOUT_STORAGE", url)
    _open(tmp_path, resume=True).lock.release()
    assert seen[-4:] == [url] * 4
