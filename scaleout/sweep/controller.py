"""The sweep loop: our own small ask/tell controller over the Optuna study (ARCHITECTURE 1).

`step()` polls the executor once for all running jobs, reads each trial's metrics from the
trainer's logs, reports new epochs (MLflow and the pruner), prunes, tells finished trials,
retries crashed ones from their checkpoint, and fills free slots. `run()` reconciles the
study with the executor (resume), then loops `step()` until the budget is spent.

Invariants:
- The controller is the only writer of the study; it holds the sweep's lock.
- A RUNNING trial owns at most one live job: the one in Attr.JOB. Every fact needed to
  find it again is stored before or right after submission, so each step of a launch is
  safe to repeat after a crash (`_ensure_launched`).
- Finished trials are never touched again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from scaleout.core.job import JobHandle, JobState, JobStatus, TrialMetrics, TrialParams, TrialSpec
from scaleout.core.placement import layout_for
from scaleout.core.plan import Plan, describe
from scaleout.executors.base import Executor
from scaleout.sweep.faults import crash_point
from scaleout.sweep.search import Attr, distributions
from scaleout.sweep.tracking import Tracker
from scaleout.trainers.base import Trainer

LOG_TAIL_LINES = 30


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Active:
    """A running trial as the controller sees it; rebuilt from the study on resume."""

    number: int
    trial_id: int
    origin: str
    params: dict[str, Any]
    work_dir: Path
    attempt: int
    run_id: str
    handle: JobHandle | None
    started: float
    logged_epoch: int = 0
    metrics: TrialMetrics = field(default_factory=TrialMetrics)
    state: JobState = JobState.PENDING
    status: JobStatus = field(default_factory=lambda: JobStatus(JobState.UNKNOWN))
    trial: optuna.trial.Trial | None = None  # cached: constructing one costs a sampler call


@dataclass(frozen=True)
class Event:
    kind: str  # started | retried | epoch | pruned | completed | failed | reattached
    number: int
    message: str


def run_name(number: int, params: dict[str, Any]) -> str:
    return f"t{number:03d} {describe(params)}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Controller:
    def __init__(
        self,
        *,
        study: optuna.Study,
        plan: Plan,
        trainer: Trainer,
        executor: Executor,
        tracker: Tracker,
        sweep_name: str,
        sweep_dir: Path,
        parent_run_id: str,
        parallel: int,
        clock: Clock | None = None,
        poll_interval_s: float = 2.0,
        procs_per_trial: int = 1,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.study = study
        self.plan = plan
        self.trainer = trainer
        self.executor = executor
        self.tracker = tracker
        self.sweep_name = sweep_name
        self.sweep_dir = sweep_dir
        self.parent_run_id = parent_run_id
        self.clock = clock or RealClock()
        self.poll_interval_s = poll_interval_s
        self.on_event = on_event or (lambda e: None)
        self.dists = distributions(plan)
        cap = executor.capacity()
        self.layout = layout_for(plan.gpus, cap, parallel, procs_per_trial)
        fit = cap.slots if cap.virtual else cap.gpus // plan.gpus
        self.parallel = max(1, min(parallel, fit)) if parallel else max(1, fit)
        self.max_attempts = plan.space.retries.max_attempts
        self.active: dict[int, Active] = {}
        self.stop_requested = False

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> str:
        """Resume what the study holds, then step until done. Returns the stop reason."""
        return self.run_with(lambda: None)

    def run_with(self, after_step: Callable[[], None]) -> str:
        self.reconcile()
        while True:
            reason = self.step()
            after_step()
            if reason:
                return reason
            self.clock.sleep(self.poll_interval_s)

    def step(self) -> str | None:
        """One pass. Returns a stop reason when the sweep is done (or asked to stop)."""
        self._poll()
        for act in list(self.active.values()):
            self._advance(act)
        if self.stop_requested:
            return "stopped"
        self._fill_slots()
        if not self.active and not self._may_launch():
            return "budget spent"
        return None

    # -- resume -----------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Adopt every RUNNING trial of the study: re-attach its job, or launch it if the
        controller died before the job started."""
        for ft in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if ft.number in self.active:
                continue
            act = self._active_from(ft)
            self.active[ft.number] = act
            if act.handle is None:
                self._ensure_launched(act, resume=self.trainer.has_checkpoint(act.work_dir))
            else:
                self._emit("reattached", act, f"re-attached to job {act.handle.job_id}")

    def _active_from(self, ft: FrozenTrial) -> Active:
        ua = ft.user_attrs
        job = ua.get(Attr.JOB)
        number = ft.number
        params = ua.get(Attr.PARAMS) or self._trial_params(ft)
        return Active(
            number=number,
            trial_id=ft._trial_id,
            origin=ua.get(Attr.ORIGIN, "sampled"),
            params=params,
            work_dir=Path(ua.get(Attr.WORK_DIR) or self._work_dir(number)),
            attempt=int(ua.get(Attr.ATTEMPT, 1)),
            run_id=ua.get(Attr.RUN_ID, ""),
            handle=JobHandle.from_json(job) if job else None,
            # The first attempt's start, on the controller's clock (the lineage records it).
            started=float((ua.get(Attr.ATTEMPTS) or [{}])[0].get("started", self.clock.now())),
            logged_epoch=int(ua.get(Attr.LOGGED_EPOCH, 0)),
        )

    # -- launching --------------------------------------------------------------------------
    def _may_launch(self) -> bool:
        if self.stop_requested:
            return False
        trials = self.study.get_trials(deepcopy=False)
        started = sum(1 for t in trials if t.state != TrialState.WAITING)
        if started >= self.plan.trials:
            return False
        budget = self.plan.space.budget.gpu_hours
        return budget is None or self.gpu_hours_used() < budget

    def _fill_slots(self) -> None:
        while len(self.active) < self.parallel and self._may_launch():
            asked = self.study.ask(self.dists)
            crash_point("after_ask")
            ft = self.study._storage.get_trial(asked._trial_id)
            act = self._active_from(ft)
            act.trial = asked
            self.active[ft.number] = act
            self._ensure_launched(act, resume=False)

    def _trial_params(self, ft: FrozenTrial) -> dict[str, Any]:
        seed = ft.user_attrs.get("seed_params") or None
        return self.plan.trial_params(dict(ft.params), seed).to_dict()

    def _trial(self, act: Active) -> optuna.trial.Trial:
        if act.trial is None:
            act.trial = optuna.trial.Trial(self.study, act.trial_id)
        return act.trial

    def _work_dir(self, number: int) -> Path:
        return self.sweep_dir / "trials" / f"t{number:03d}"

    def _job_name(self, act: Active) -> str:
        return f"{self.sweep_name}-t{act.number:03d}-a{act.attempt}"

    def _ensure_launched(self, act: Active, *, resume: bool) -> None:
        """Each step checks what the study already holds, so calling this again after a
        crash at any point finishes the launch without doing anything twice."""
        trial = self._trial(act)
        ua = self.study._storage.get_trial(act.trial_id).user_attrs
        if Attr.PARAMS not in ua:
            trial.set_user_attr(Attr.ORIGIN, act.origin)
            trial.set_user_attr(Attr.WORK_DIR, str(act.work_dir))
            trial.set_user_attr(Attr.ATTEMPT, act.attempt)
            trial.set_user_attr(Attr.PARAMS, act.params)
        if not act.run_id:
            tags = {"origin": act.origin, "state": "RUNNING", "scaleout.sweep": self.sweep_name}
            act.run_id = self.tracker.start_trial(
                self.parent_run_id,
                act.number,
                run_name(act.number, act.params),
                act.params | {"origin": act.origin},
                tags,
            )
            trial.set_user_attr(Attr.RUN_ID, act.run_id)
        name = self._job_name(act)
        spec = self._render(act, resume)
        handle = self.executor.find(name, spec)
        if handle is None:
            handle = self.executor.submit(spec, name)
            crash_point("after_submit")
        act.handle = handle
        act.state = JobState.PENDING
        trial.set_user_attr(Attr.JOB, handle.to_json())
        lineage = list(ua.get(Attr.ATTEMPTS, []))
        if not lineage or lineage[-1].get("attempt") != act.attempt:
            lineage.append(
                {
                    "attempt": act.attempt,
                    "job": handle.name,
                    "job_id": handle.job_id,
                    "resumed_from_checkpoint": resume,
                    "started": self.clock.now(),
                }
            )
            trial.set_user_attr(Attr.ATTEMPTS, lineage)
        verb = "retried" if act.attempt > 1 else "started"
        self._emit(verb, act, f"{verb} as job {handle.job_id} ({name})")

    def _render(self, act: Active, resume: bool) -> TrialSpec:
        params = TrialParams.from_dict(act.params)
        spec = self.trainer.render(
            params, self.layout, act.work_dir, resume=resume, name=f"t{act.number:03d}"
        )
        return replace(
            spec,
            env={**spec.env, "SCALEOUT_SWEEP": self.sweep_name, "SCALEOUT_TRIAL": str(act.number)},
        )

    # -- polling and decisions ---------------------------------------------------------------
    def _poll(self) -> None:
        handles = [a.handle for a in self.active.values() if a.handle is not None]
        statuses = self.executor.poll(handles) if handles else {}
        for act in self.active.values():
            if act.handle is not None:
                act.status = statuses.get(act.handle.name, JobStatus(JobState.UNKNOWN))
                act.state = act.status.state

    def _advance(self, act: Active) -> None:
        act.metrics = self.trainer.read_metrics(act.work_dir)
        if self._report_epochs(act):
            return
        status = act.status
        if status.state == JobState.SUCCEEDED:
            self._complete(act)
        elif status.state in (JobState.FAILED, JobState.NOT_FOUND, JobState.CANCELLED):
            self._retry_or_fail(act, status)

    def _report_epochs(self, act: Active) -> bool:
        """Log new epochs to MLflow and the pruner. Returns True if the trial was pruned."""
        new = {e: m for e, m in act.metrics.epochs.items() if e > act.logged_epoch}
        if not new:
            return False
        self.tracker.log_epochs(act.run_id, new)
        trial = self._trial(act)
        for epoch in sorted(new):
            value = new[epoch].get(self.plan.objective)
            if value is not None and value == value:  # NaN is not a report
                trial.report(float(value), epoch)
        act.logged_epoch = max(new)
        trial.set_user_attr(Attr.LOGGED_EPOCH, act.logged_epoch)
        latest = act.metrics.latest(self.plan.objective)
        self._emit(
            "epoch",
            act,
            f"epoch {act.logged_epoch}: {self.plan.objective} "
            f"{latest if latest is None else round(latest, 4)}",
        )
        if act.state != JobState.SUCCEEDED and trial.should_prune():
            if act.handle is not None:
                self.executor.cancel(act.handle)
            self._finish(
                act,
                TrialState.PRUNED,
                None,
                f"pruned at epoch {act.logged_epoch} by the {self.plan.space.pruner.type} pruner",
            )
            return True
        return False

    def _complete(self, act: Active) -> None:
        value = act.metrics.latest(self.plan.objective)
        if value is None:
            self._finish(
                act,
                TrialState.FAIL,
                None,
                f"the job succeeded but its logs in {act.work_dir} never reported "
                f"{self.plan.objective}",
                tail=True,
            )
            return
        self._finish(act, TrialState.COMPLETE, value, "completed")

    def _retry_or_fail(self, act: Active, status: JobStatus) -> None:
        why = status.reason or status.state.value
        trial = self._trial(act)
        lineage = list(
            self.study._storage.get_trial(act.trial_id).user_attrs.get(Attr.ATTEMPTS, [])
        )
        if lineage:
            lineage[-1].update(
                ended=self.clock.now(),
                state=status.state.value,
                reason=why,
                exit_code=status.exit_code,
            )
            trial.set_user_attr(Attr.ATTEMPTS, lineage)
        if act.attempt >= self.max_attempts:
            self._finish(
                act,
                TrialState.FAIL,
                None,
                f"attempt {act.attempt} of {self.max_attempts} failed: {why}",
                tail=True,
            )
            return
        act.attempt += 1
        trial.set_user_attr(Attr.ATTEMPT, act.attempt)
        resume = self.trainer.has_checkpoint(act.work_dir)
        self._emit(
            "failed",
            act,
            f"attempt {act.attempt - 1} failed ({why}); retrying "
            + ("from its last checkpoint" if resume else "from the start"),
        )
        self._ensure_launched(act, resume=resume)

    def _finish(
        self, act: Active, state: TrialState, value: float | None, why: str, *, tail: bool = False
    ) -> None:
        trial = self._trial(act)
        now = self.clock.now()
        wall = now - act.started
        result = self._result(act, wall)
        trial.set_user_attr(Attr.RESULT, result)
        failure = ""
        if tail and act.handle is not None:
            failure = log_tail(Path(act.handle.log))
            trial.set_user_attr(Attr.FAILURE, {"reason": why, "log_tail": failure})
        crash_point("before_tell")
        self.study.tell(act.number, value if state == TrialState.COMPLETE else None, state=state)
        del self.active[act.number]
        mlflow_status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}.get(
            state, "FAILED"
        )
        artifacts = {"config": str(act.work_dir / "trial_config.py")}
        if act.handle is not None and act.handle.log:
            artifacts["log"] = act.handle.log
        # Per-epoch metrics are already in the run's history (its last point is the final
        # value MLflow shows); only whole-trial figures are logged here.
        per_epoch = {k for m in act.metrics.epochs.values() for k in m}
        self.tracker.finish_trial(
            act.run_id,
            mlflow_status,
            {k: v for k, v in result.items() if isinstance(v, float) and k not in per_epoch},
            {"state": state.name, "reason": why[:500]},
            artifacts,
        )
        kind = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned"}.get(state, "failed")
        msg = why if value is None else f"{self.plan.objective} {value:.4f}"
        self._emit(kind, act, msg + (f"\n{failure}" if failure else ""))

    def _result(self, act: Active, wall: float) -> dict[str, Any]:
        m = act.metrics
        out: dict[str, Any] = {
            "wall_time_s": wall,
            "gpu_hours": wall * self.plan.gpus / 3600.0,
            "epochs": float(m.last_epoch),
            "attempts": float(act.attempt),
        }
        for key in ("NDS", "mAP", self.plan.objective):
            v = m.latest(key)
            if v is not None:
                out[key] = float(v)
        if m.samples_per_s is not None:
            out["samples_per_s"] = float(m.samples_per_s)
        if m.iter_time_s is not None:
            out["iter_time_s"] = float(m.iter_time_s)
        return out

    # -- views ------------------------------------------------------------------------------
    def gpu_hours_used(self) -> float:
        done = sum(
            float(t.user_attrs.get(Attr.RESULT, {}).get("gpu_hours", 0.0))
            for t in self.study.get_trials(deepcopy=False)
            if t.state.is_finished()
        )
        running = sum(
            (self.clock.now() - a.started) * self.plan.gpus / 3600.0 for a in self.active.values()
        )
        return done + running

    def _emit(self, kind: str, act: Active, message: str) -> None:
        self.on_event(Event(kind, act.number, message))

    def cancel_all(self) -> None:
        for act in list(self.active.values()):
            if act.handle is not None:
                self.executor.cancel(act.handle)
