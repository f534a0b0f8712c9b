"""The search seam: what the controller asks of a searcher, and the Optuna searcher behind it.

The controller sees only `Searcher`: it asks for a trial, reports epochs, tells how a trial
ended, and stores the facts a resume needs on the trial (`set_attrs`, `record_attempt`).
`OptunaSearcher` is the one implementation today and the only module that reaches into
Optuna's internals (trial ids, the storage, `optuna.trial.Trial`); a second engine would be
a second Searcher. The study is the single source of truth (docs/architecture.md): every
fact lives in the study's storage, so a new searcher on the same storage sees all of them.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, GridSampler, RandomSampler
from optuna.trial import FrozenTrial

from scaleout.core.plan import Plan, SeedTrial
from scaleout.sweep.faults import crash_point
from scaleout.sweep.study import distributions, make_sampler, sampler_seed

log = logging.getLogger(__name__)


class Attr:
    """User-attr keys on a trial. The controller writes them through the searcher; analysis
    only reads."""

    ORIGIN = "origin"  # reference | sqrt | linear | sampled
    SEED_PARAMS = "seed_params"  # a seed trial's planned values (set when it is enqueued)
    ATTEMPT = "attempt"  # the current attempt number (1-based)
    ATTEMPTS = "attempts"  # the lineage: one dict per attempt (`record_attempt`)
    JOB = "job"  # JobHandle JSON of the current attempt ("" before submission)
    WORK_DIR = "work_dir"
    RUN_ID = "mlflow_run_id"
    PARAMS = "params"  # what the trial runs with (capped min_lr_ratio, gpus, batch)
    LOGGED_EPOCH = "logged_epoch"  # the last epoch whose metrics reached MLflow and the pruner
    SEEN_RUNNING = "seen_running"  # {"attempt", "at"}: when a controller last saw the job run
    RESULT = "result"  # final metrics (NDS, mAP, wall_time_s, gpu_hours, samples_per_s)
    FAILURE = "failure"  # why it failed, with the tail of its log
    # How the trial ends, decided and stored before any of it is carried out (the job
    # cancelled, the MLflow run ended, the study told): a resume finishes a trial that holds
    # one as decided, instead of polling its job again. {"state", "value", "why", "failure"}
    ENDING = "ending"
    UNVALIDATED = "unvalidated_epochs"  # epochs the trainer should have evaluated and did not


class TrialState(enum.Enum):
    WAITING = "waiting"  # a seed, queued and not yet asked
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAIL = "fail"

    @property
    def finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class Asked:
    """A trial just started by `ask`: its number, the values sampled (or, for a seed, the
    enqueued ones), its origin and a seed's planned values (None for a sampled trial)."""

    number: int
    params: Mapping[str, Any]
    origin: str
    seed_params: Mapping[str, Any] | None = None

    def as_view(self) -> TrialView:
        """The trial as `trials()` shows it right after the ask (nothing else stored yet)."""
        attrs: dict[str, Any] = {Attr.ORIGIN: self.origin}
        if self.seed_params is not None:
            attrs[Attr.SEED_PARAMS] = dict(self.seed_params)
        return TrialView(self.number, TrialState.RUNNING, self.params, MappingProxyType(attrs))


@dataclass(frozen=True)
class TrialView:
    """A light, read-only view of one stored trial: `params` as the searcher sampled them,
    `attrs` the stored facts under the `Attr` keys, `value` the objective once complete."""

    number: int
    state: TrialState
    params: Mapping[str, Any]
    attrs: Mapping[str, Any]
    value: float | None = None

    @property
    def attempts(self) -> tuple[dict[str, Any], ...]:
        """The lineage, one entry per attempt, oldest first."""
        return tuple(self.attrs.get(Attr.ATTEMPTS) or ())


class Searcher(Protocol):
    """What the controller needs of a search engine. Only the controller calls it (it holds
    the sweep's lock); finished trials are never changed."""

    def enqueue(self, seeds: Sequence[SeedTrial]) -> int:
        """Queue the seed trials the study does not hold yet (by origin); returns how many
        were queued. Safe to call on every open."""
        ...

    def ask(self) -> Asked:
        """Start a trial: the next queued seed, else a sampled point that repeats no
        configuration the study already has."""
        ...

    def report(self, number: int, values: Mapping[int, float]) -> bool:
        """Report a running trial's objective per step (epoch); returns whether the pruner
        says to stop it. A step reported before is ignored."""
        ...

    def tell(self, number: int, state: TrialState, value: float | None = None) -> None:
        """Finish a running trial (COMPLETE with its value, PRUNED or FAIL); a finished one
        raises ValueError."""
        ...

    def set_attrs(self, number: int, facts: Mapping[str, Any]) -> None:
        """Store facts on a trial under `Attr` keys (JSON values), replacing earlier ones."""
        ...

    def record_attempt(self, number: int, attempt: int, **facts: Any) -> None:
        """Add facts to the lineage entry of `attempt` (created on first use). A fact already
        recorded keeps its first value, so repeating a call after a crash changes nothing."""
        ...

    def trials(self, states: Collection[TrialState] | None = None) -> list[TrialView]:
        """Every trial (or those in `states`), by number."""
        ...


_TO_OPTUNA = {
    TrialState.WAITING: optuna.trial.TrialState.WAITING,
    TrialState.RUNNING: optuna.trial.TrialState.RUNNING,
    TrialState.COMPLETE: optuna.trial.TrialState.COMPLETE,
    TrialState.PRUNED: optuna.trial.TrialState.PRUNED,
    TrialState.FAIL: optuna.trial.TrialState.FAIL,
}
_FROM_OPTUNA = {v: k for k, v in _TO_OPTUNA.items()}


class OptunaSearcher:
    """The Searcher over an Optuna study in RDB storage (`study.create_or_load`).

    Opening one reseeds the study's sampler from (seed, trials already in the study) and
    wraps it in `DistinctSampler`, so a resumed sweep continues its search instead of
    replaying it. `study` stays public for the readers that take Optuna trials (the
    leaderboard) and for the session's study-wide attrs.
    """

    def __init__(self, study: optuna.Study, plan: Plan) -> None:
        self.study = study
        self.dists = distributions(plan)
        existing = study.get_trials(deepcopy=False)
        self._ids = {t.number: t._trial_id for t in existing}
        inner = make_sampler(plan, len(existing))
        seed = sampler_seed(plan.space.sampler.seed, len(existing))
        study.sampler = DistinctSampler(inner, self.dists, seed=seed)
        # A live Trial per running number: constructing one calls the sampler's before_trial.
        self._live: dict[int, optuna.trial.Trial] = {}

    def enqueue(self, seeds: Sequence[SeedTrial]) -> int:
        have = {t.user_attrs.get(Attr.ORIGIN) for t in self.study.get_trials(deepcopy=False)}
        queued = 0
        for seed in seeds:
            if seed.origin in have:
                continue
            params = {k: v for k, v in seed.params().items() if k in self.dists}
            self.study.enqueue_trial(
                params, user_attrs={Attr.ORIGIN: seed.origin, Attr.SEED_PARAMS: seed.params()}
            )
            queued += 1
            log.debug("enqueued the %s seed trial: %s", seed.origin, seed.params())
            # One trial, its params and origin, in one transaction: a rerun queues the rest.
            crash_point("after_enqueue_seed")
        return queued

    def ask(self) -> Asked:
        trial = self.study.ask(self.dists)
        self._live[trial.number] = trial
        self._ids[trial.number] = trial._trial_id
        ua = trial.user_attrs
        seed = ua.get(Attr.SEED_PARAMS)
        return Asked(
            number=trial.number,
            params=MappingProxyType(dict(trial.params)),
            origin=ua.get(Attr.ORIGIN, "sampled"),
            seed_params=None if seed is None else MappingProxyType(dict(seed)),
        )

    def report(self, number: int, values: Mapping[int, float]) -> bool:
        trial = self._trial(number)
        done = trial._cached_frozen_trial.intermediate_values  # reported before a crash
        for step in sorted(values):
            if step not in done:
                trial.report(float(values[step]), step)
        return trial.should_prune()

    def tell(self, number: int, state: TrialState, value: float | None = None) -> None:
        self.study.tell(
            number, value if state == TrialState.COMPLETE else None, state=_TO_OPTUNA[state]
        )
        self._live.pop(number, None)

    def set_attrs(self, number: int, facts: Mapping[str, Any]) -> None:
        tid = self._id(number)
        for key, value in facts.items():
            self.study._storage.set_trial_user_attr(tid, key, value)

    def record_attempt(self, number: int, attempt: int, **facts: Any) -> None:
        tid = self._id(number)
        stored = self.study._storage.get_trial(tid).user_attrs.get(Attr.ATTEMPTS) or []
        lineage = [dict(e) for e in stored]  # copies: the storage may hand out its cache
        entry = next((e for e in lineage if e.get("attempt") == attempt), None)
        if entry is None:
            entry = {"attempt": attempt}
            lineage.append(entry)
        new = {k: v for k, v in facts.items() if k not in entry}
        if not new and len(lineage) == len(stored):
            return
        entry.update(new)
        self.study._storage.set_trial_user_attr(tid, Attr.ATTEMPTS, lineage)

    def trials(self, states: Collection[TrialState] | None = None) -> list[TrialView]:
        wanted = None if states is None else tuple(_TO_OPTUNA[s] for s in states)
        out = []
        for ft in self.study.get_trials(deepcopy=False, states=wanted):
            self._ids.setdefault(ft.number, ft._trial_id)
            out.append(_view(ft))
        return out

    def _id(self, number: int) -> int:
        if number not in self._ids:
            self._ids[number] = self.study._storage.get_trial_id_from_study_id_trial_number(
                self.study._study_id, number
            )
        return self._ids[number]

    def _trial(self, number: int) -> optuna.trial.Trial:
        if number not in self._live:
            self._live[number] = optuna.trial.Trial(self.study, self._id(number))
        return self._live[number]


def _view(ft: FrozenTrial) -> TrialView:
    return TrialView(
        number=ft.number,
        state=_FROM_OPTUNA[ft.state],
        params=MappingProxyType(ft.params),
        attrs=MappingProxyType(ft.user_attrs),
        value=ft.value if ft.state == optuna.trial.TrialState.COMPLETE else None,
    )


RE_ASKS = 5  # proposals drawn from the sampler before a repeat falls back to a random point
RANDOM_TRIES = 20
REL_TOL = 1e-12


def same_point(a: Mapping[str, Any], b: Mapping[str, Any], names: Collection[str]) -> bool:
    """Whether two configurations agree on every one of `names` (floats to REL_TOL)."""
    for name in names:
        if name not in a or name not in b:
            return False
        x, y = a[name], b[name]
        if x == y:
            continue
        if not (isinstance(x, (int, float)) and isinstance(y, (int, float))):
            return False
        if not math.isclose(float(x), float(y), rel_tol=REL_TOL, abs_tol=0.0):
            return False
    return True


def _fallback_seed(seed: int | None, number: int) -> int | None:
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, number, 1]).generate_state(1)[0])


class DistinctSampler(BaseSampler):
    """Wraps a sampler so that no sampled trial repeats a configuration the study holds.

    The whole point is drawn in `sample_relative`, before any value reaches the trial, so a
    rejected proposal leaves no trace: the inner sampler proposes again (RE_ASKS times), then
    a random point inside the distributions is taken (seeded from the trial number). Queued
    seeds keep their fixed values; Optuna never asks the sampler for them.
    """

    def __init__(
        self, inner: BaseSampler, dists: Mapping[str, BaseDistribution], *, seed: int | None
    ) -> None:
        self.inner = inner
        self.dists = dict(dists)
        self.seed = seed

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        # To Optuna every parameter is "relative": the whole point is drawn at once.
        return dict(self.dists)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        # The trial as stored now: before_trial may have written to it (GridSampler's grid id).
        trial = study._storage.get_trial(trial._trial_id)
        taken = [t.params for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        point: dict[str, Any] = {}
        for _ in range(RE_ASKS):
            point = self._propose(study, trial, search_space)
            if not any(same_point(point, p, search_space) for p in taken):
                return point
            log.debug(
                "trial %d: the sampler proposed a repeat %s; asking again", trial.number, point
            )
        rnd = RandomSampler(seed=_fallback_seed(self.seed, trial.number))
        for _ in range(RANDOM_TRIES):
            point = {n: rnd.sample_independent(study, trial, n, d) for n, d in search_space.items()}
            if not any(same_point(point, p, search_space) for p in taken):
                break
        log.debug("trial %d: took a random point instead: %s", trial.number, point)
        return point  # after RANDOM_TRIES the space is too small to avoid a repeat

    def _propose(
        self, study: optuna.Study, trial: FrozenTrial, space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        relative = self.inner.infer_relative_search_space(study, trial)
        drawn = self.inner.sample_relative(study, trial, relative) if relative else {}
        point = {n: drawn[n] for n in space if n in drawn}
        for name, dist in space.items():
            if name not in point:
                point[name] = self.inner.sample_independent(study, trial, name, dist)
        return point

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, name: str, dist: BaseDistribution
    ) -> Any:
        return self.inner.sample_independent(study, trial, name, dist)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        try:
            self.inner.after_trial(study, trial, state, values)
        except RuntimeError:
            # GridSampler stops the study once its grid is used up, which raises outside
            # Study.optimize. Here the budget ends a sweep; later points are random ones.
            if not isinstance(self.inner, GridSampler):
                raise

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
