"""The search seam: the Optuna searcher's contract, the sampler that never repeats a
configuration, and the rule that only the searcher knows Optuna's internals."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler

from scaleout.core.plan import make_plan
from scaleout.core.rules import Reference
from scaleout.core.space import parse_space
from scaleout.sweep.search import (
    Attr,
    DistinctSampler,
    OptunaSearcher,
    TrialState,
    same_point,
)
from scaleout.sweep.study import create_or_load, sampler_seed

PACKAGE = Path(__file__).resolve().parents[2] / "scaleout"
DISTS = {"x": FloatDistribution(1e-4, 1e-2, log=True), "n": IntDistribution(10, 500)}


class Stuck(BaseSampler):
    """Proposes the same point every time, like a seeded sampler whose RNG restarted."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, dist):
        return {"x": 1e-3, "n": 100}[name]


def _study(sampler) -> optuna.Study:
    study = optuna.create_study()
    study.sampler = DistinctSampler(sampler, DISTS, seed=7)
    return study


def test_a_repeated_proposal_is_replaced_by_a_point_inside_the_distributions():
    study = _study(Stuck())
    points = []
    for _ in range(4):
        t = study.ask(DISTS)
        points.append(t.params)
        study.tell(t, 0.0)
    assert points[0] == {"x": 1e-3, "n": 100}  # the sampler's own first proposal stands
    for i, p in enumerate(points):
        assert DISTS["x"].low <= p["x"] <= DISTS["x"].high
        assert DISTS["n"].low <= p["n"] <= DISTS["n"].high
        assert not any(same_point(p, q, DISTS) for q in points[i + 1 :])


def test_a_queued_seed_keeps_its_values_even_when_they_repeat():
    study = _study(Stuck())
    study.enqueue_trial({"x": 1e-3, "n": 100})
    study.enqueue_trial({"x": 1e-3, "n": 100})
    assert [study.ask(DISTS).params for _ in range(2)] == [{"x": 1e-3, "n": 100}] * 2


def test_an_exhausted_grid_does_not_stop_the_sweep():
    # Optuna's GridSampler stops the study when its grid is used up; outside optimize() that
    # raised at the tell. The budget ends a sweep; later points are random and distinct.
    study = _study(optuna.samplers.GridSampler({"x": [1e-3], "n": [100]}, seed=0))
    points = []
    for _ in range(3):
        t = study.ask(DISTS)
        study.tell(t, 0.0)
        points.append(t.params)
    assert points[0] == {"x": 1e-3, "n": 100}
    assert not same_point(points[1], points[2], DISTS) and not same_point(
        points[0], points[1], DISTS
    )


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"x": 1e-3, "n": 5}, {"x": 1e-3, "n": 5}, True),
        ({"x": 1e-3, "n": 5}, {"x": 1e-3 * (1 + 1e-14), "n": 5}, True),
        ({"x": 1e-3, "n": 5}, {"x": 1e-3 * (1 + 1e-9), "n": 5}, False),
        ({"x": 1e-3, "n": 5}, {"x": 1e-3, "n": 6}, False),
        ({"x": 1e-3, "n": 5}, {"x": 1e-3}, False),  # a trial without params repeats nothing
    ],
)
def test_same_point(a, b, same):
    assert same_point(a, b, ("x", "n")) is same


def test_sampler_seed_is_the_seed_for_a_new_study_and_derived_after():
    assert sampler_seed(1, 0) == 1
    assert sampler_seed(None, 5) is None
    assert sampler_seed(1, 4) == sampler_seed(1, 4) != sampler_seed(1, 5)
    assert sampler_seed(1, 4) != 1


# -- OptunaSearcher's contract ----------------------------------------------------------------
@pytest.fixture
def searcher(tmp_path):
    ref = Reference(8, 1, 2e-4, 500, 1 / 3, 1e-3, 4, 28130)
    plan = make_plan(parse_space({"budget": {"trials": 5}, "sampler": {"seed": 3}}), ref, 160)
    s = OptunaSearcher(create_or_load(f"sqlite:///{tmp_path / 'study.db'}", "s", plan), plan)
    s.enqueue(plan.seeds)
    return s, plan


def test_enqueue_is_idempotent_by_origin(searcher):
    s, plan = searcher
    assert s.enqueue(plan.seeds) == 0
    views = s.trials()
    assert [v.attrs[Attr.ORIGIN] for v in views] == [sd.origin for sd in plan.seeds]
    assert {v.state for v in views} == {TrialState.WAITING}


def test_an_enqueue_cut_short_by_a_crash_queues_each_seed_once_on_the_rerun(tmp_path):
    ref = Reference(8, 1, 2e-4, 500, 1 / 3, 1e-3, 4, 28130)
    plan = make_plan(parse_space({"budget": {"trials": 5}}), ref, 160)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    OptunaSearcher(create_or_load(url, "s", plan), plan).enqueue(plan.seeds[:1])  # then died
    again = OptunaSearcher(create_or_load(url, "s", plan), plan)
    assert again.enqueue(plan.seeds) == 2
    assert [v.attrs[Attr.ORIGIN] for v in again.trials()] == ["reference", "sqrt", "linear"]
    asked = [again.ask().origin for _ in range(4)]
    assert asked == ["reference", "sqrt", "linear", "sampled"]  # each seed ran once, in order


def test_ask_gives_seeds_first_then_sampled_points(searcher):
    s, plan = searcher
    asked = [s.ask() for _ in range(len(plan.seeds) + 1)]
    assert [a.origin for a in asked] == [*(sd.origin for sd in plan.seeds), "sampled"]
    assert dict(asked[0].seed_params) == plan.seeds[0].params()
    assert asked[-1].seed_params is None
    assert set(asked[-1].params) == set(plan.ranges)
    view = asked[0].as_view()
    assert view.state == TrialState.RUNNING and view.attrs[Attr.ORIGIN] == plan.seeds[0].origin


def test_report_tell_and_views(searcher):
    s, _ = searcher
    a = s.ask()
    assert s.report(a.number, {1: 0.1, 2: 0.2}) is False  # the space's pruner is "none"
    s.set_attrs(a.number, {Attr.LOGGED_EPOCH: 2})
    s.tell(a.number, TrialState.COMPLETE, 0.2)
    (done,) = s.trials((TrialState.COMPLETE,))
    assert (done.number, done.value, done.attrs[Attr.LOGGED_EPOCH]) == (a.number, 0.2, 2)
    with pytest.raises(TypeError):
        done.attrs["x"] = 1  # views are read-only
    with pytest.raises(ValueError):
        s.tell(a.number, TrialState.FAIL)  # a finished trial is never changed


def test_record_attempt_keeps_the_first_value_of_each_fact(searcher):
    s, _ = searcher
    a = s.ask()
    s.record_attempt(a.number, 1, job="j1", submitted=10.0)
    s.record_attempt(a.number, 1, job="j1", submitted=99.0, started_at=12.0)  # after a crash
    s.record_attempt(a.number, 2, job="j2")
    (view,) = [v for v in s.trials() if v.number == a.number]
    assert view.attempts == (
        {"attempt": 1, "job": "j1", "submitted": 10.0, "started_at": 12.0},
        {"attempt": 2, "job": "j2"},
    )


# -- only the searcher knows Optuna ----------------------------------------------------------
def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_the_controller_imports_no_optuna():
    for name in ("controller.py", "trial.py", "budget.py"):
        assert "optuna" not in _imports(PACKAGE / "sweep" / name), name


def test_only_the_searcher_reaches_into_optuna_internals():
    internals = ("._storage", "._trial_id", "._study_id")
    users = sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if any(word in p.read_text() for word in internals)
    )
    assert users == ["sweep/search.py"]
