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
