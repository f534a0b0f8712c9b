"""The sweep loop: our own small ask/tell controller over a Searcher (docs/architecture.md).

`step()` polls the executor once for all running jobs, reads each trial's metrics from the
trainer's logs, reports new epochs (MLflow and the pruner), prunes, tells finished trials,
retries crashed ones from their checkpoint, and fills free slots while the budget allows.
`run()` reconciles the study with the executor (resume), then loops `step()` until done.

Invariants:
- The controller is the only writer of the study; it holds the sweep's lock. It reaches the
  study only through the `Searcher` (it knows no Optuna).
- A RUNNING trial owns at most one live job: the one in Attr.JOB. Every fact needed to
  find it again is stored before or right after submission, so each step of a launch is
  safe to repeat after a crash (`_ensure_launched`).
- How a trial ends is decided and stored (Attr.ENDING) before any of it is carried out; the
  study is told last. A resume finishes a trial that holds an ending as decided
  (`_conclude`), so a trial is never COMPLETE in the study with its MLflow run still open.
- Every write a resume reconciles has a crash point after it (`scaleout.sweep.faults`).
- GPU time is billed from each job's own run time (`scaleout.sweep.budget`), per attempt.
- Finished trials are never touched again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from scaleout.core.job import JobState, JobStatus, TrialParams, TrialSpec
from scaleout.core.placement import layout_for
from scaleout.core.plan import Plan, describe
from scaleout.executors.base import Executor
from scaleout.sweep.budget import Budget, Pricing
from scaleout.sweep.faults import crash_point
from scaleout.sweep.search import Attr, Searcher, TrialState, TrialView
from scaleout.sweep.tracking import Tracker
from scaleout.sweep.trial import Active, Event, log_tail, objective_values, run_figures
from scaleout.sweep.workspace import trial_dir
from scaleout.trainers.base import Trainer

log = logging.getLogger(__name__)
# How a finished trial reads in its last attempt's lineage entry, in MLflow and in its event.
_ATTEMPT_END = {TrialState.COMPLETE: "succeeded", TrialState.PRUNED: "pruned"}
# A pruned trial ended as planned (MLflow draws KILLED as a failure); its `state` tag says PRUNED.
_MLFLOW_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED"}
_EVENT_KIND = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned"}


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def run_name(number: int, params: dict[str, Any]) -> str:
    return f"t{number:03d} {describe(params)}"


class Controller:
    def __init__(
        self,
        *,
        searcher: Searcher,
        plan: Plan,
        trainer: Trainer,
        executor: Executor,
        tracker: Tracker,
        sweep_name: str,
        sweep_dir: Path,
        parent_run_id: str,
        parallel: int,
        budget: Budget | None = None,
        clock: Clock | None = None,
        poll_interval_s: float = 2.0,
        procs_per_trial: int = 1,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.searcher = searcher
        self.plan = plan
        self.budget = budget or Budget.from_plan(plan)
        self.trainer = trainer
        self.executor = executor
        self.tracker = tracker
        self.sweep_name = sweep_name
        self.sweep_dir = sweep_dir
        self.parent_run_id = parent_run_id
        self.clock = clock or RealClock()
        self.poll_interval_s = poll_interval_s
        self.on_event = on_event or (lambda e: None)
        cap = executor.capacity()
        self.layout = layout_for(plan.gpus, cap, parallel, procs_per_trial)
        cores = getattr(executor, "threads_per_job", lambda procs: 1)(self.layout.procs_per_node)
        self.pricing = Pricing.for_run(plan, self.layout, cores)  # a trial's cost figures
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
        """Adopt every RUNNING trial of the study: finish it if its ending was decided,
        re-attach its job, or launch it if the controller died before the job started."""
        for view in self.searcher.trials((TrialState.RUNNING,)):
            if view.number in self.active:
                continue
            act = self._active_from(view)
            self.active[view.number] = act
            ending = view.attrs.get(Attr.ENDING)
            if ending:
                log.debug("t%03d: its ending was decided before the crash: %s", act.number, ending)
                self._conclude(act, dict(ending), dict(view.attrs.get(Attr.RESULT) or {}))
                continue
            if act.run_id:
                # MLflow may hold epochs the study does not know were logged.
                act.tracked_epoch = max(act.logged_epoch, self.tracker.last_epoch(act.run_id))
            if act.handle is None:
                log.debug("t%03d: asked but never submitted; launching it", act.number)
                self._ensure_launched(act, resume=self.trainer.has_checkpoint(act.work_dir))
            else:
                self._emit("reattached", act, f"re-attached to job {act.handle.job_id}")

    def _active_from(self, view: TrialView) -> Active:
        params = view.attrs.get(Attr.PARAMS) or self._trial_params(view)
        work_dir = self._work_dir(view.number)
        act = Active.from_view(
            view,
            params=params,
            work_dir=work_dir,
            now=self.clock.now(),
            pricing=self.pricing,
            reference=self.plan.reference.metric,
        )
        act.gaps_said = set(view.attrs.get(Attr.UNVALIDATED) or ())
        return act

    # -- launching --------------------------------------------------------------------------
    def _may_launch(self) -> bool:
        if self.stop_requested:
            return False
        trials = self.searcher.trials()
        started = sum(1 for t in trials if t.state != TrialState.WAITING)
        cost = self.cost_used(trials) if self.budget.counts_cost else None
        return self.budget.allows(started=started, gpu_hours=self.gpu_hours_used(trials), cost=cost)

    def _fill_slots(self) -> None:
        while len(self.active) < self.parallel and self._may_launch():
            asked = self.searcher.ask()
            crash_point("after_ask")
            log.debug("asked t%03d (%s): %s", asked.number, asked.origin, dict(asked.params))
            act = self._active_from(asked.as_view())
            self.active[asked.number] = act
            self._ensure_launched(act, resume=False)

    def _trial_params(self, view: TrialView) -> dict[str, Any]:
        seed = view.attrs.get("seed_params") or None
        return self.plan.trial_params(dict(view.params), seed).to_dict()

    def _work_dir(self, number: int) -> Path:
        return trial_dir(self.sweep_dir, number)

    def _job_name(self, act: Active) -> str:
        return f"{self.sweep_name}-t{act.number:03d}-a{act.attempt}"

    def _ensure_launched(self, act: Active, *, resume: bool) -> None:
        """Each step checks what the study already holds, so calling this again after a
        crash at any point finishes the launch without doing anything twice."""
        if not act.stored:
            self.searcher.set_attrs(act.number, act.launch_facts())
            act.stored = True
            crash_point("after_launch_facts")
        if not act.run_id:
            tags = {"origin": act.origin, "state": "RUNNING", "scaleout.sweep": self.sweep_name}
            act.run_id = self.tracker.start_trial(
                self.parent_run_id,
                act.number,
                run_name(act.number, act.params),
                act.params | {"origin": act.origin},
                tags,
            )
            crash_point("after_trial_params")
            self.searcher.set_attrs(act.number, {Attr.RUN_ID: act.run_id})
            crash_point("after_run_id")
        name = self._job_name(act)
        spec = self._render(act, resume)
        handle = self.executor.find(name, spec)
        if handle is None:
            handle = self.executor.submit(spec, name)
            crash_point("after_submit")
        log.debug("t%03d: job %s is %s (resume=%s)", act.number, name, handle.job_id, resume)
        act.handle = handle
        act.state = JobState.PENDING
        self.searcher.set_attrs(act.number, {Attr.JOB: handle.to_json()})
        crash_point("after_job_stored")
        self.searcher.record_attempt(
            act.number,
            act.attempt,
            job=handle.name,
            job_id=handle.job_id,
            resumed_from_checkpoint=resume,
            submitted=self.clock.now(),
        )
        crash_point("after_submitted_recorded")
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
        now = self.clock.now()
        for act in self.active.values():
            if act.handle is None:
                continue
            act.status = statuses.get(act.handle.name, JobStatus(JobState.UNKNOWN))
            act.state = act.status.state
            known = act.meter.started is not None
            act.meter.observe(act.status, now)
            if not known and act.meter.started is not None:  # the job's start, once known
                self.searcher.record_attempt(act.number, act.attempt, **act.meter.start_record())
                crash_point("after_start_recorded")
        log.debug("polled: %s", {h: s.state.value for h, s in sorted(statuses.items())})

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
        """Log new epochs to MLflow and the pruner. Returns True if the trial was pruned.

        Each step is safe to repeat after a crash: MLflow gets only the epochs past the last
        one it holds (`tracked_epoch`), the searcher ignores a step reported before, and the
        pruner's answer is asked again."""
        new = {e: m for e, m in act.metrics.epochs.items() if e > act.logged_epoch}
        if not new:
            return False
        untracked = {e: m for e, m in new.items() if e > act.tracked_epoch}
        if untracked:
            self.tracker.log_epochs(act.run_id, untracked)
            act.tracked_epoch = max(untracked)
            crash_point("after_log_epochs")
        values = objective_values(new, self.plan.objective)
        stop = self.searcher.report(act.number, values)
        crash_point("after_report")
        act.logged_epoch = max(new)
        log.debug("t%03d: reported %s; stop: %s", act.number, values, stop)
        latest = act.metrics.latest(self.plan.objective)
        shown = latest if latest is None else round(latest, 4)
        self._emit("epoch", act, f"epoch {act.logged_epoch}: {self.plan.objective} {shown}")
        gaps = self._note_gaps(act)
        if act.state != JobState.SUCCEEDED and stop:
            log.debug("t%03d: the pruner stops it at epoch %d", act.number, act.logged_epoch)
            why = f"pruned at epoch {act.logged_epoch} by the {self.plan.space.pruner.type} pruner"
            self._finish(act, TrialState.PRUNED, None, why)
            return True
        facts = act.epoch_facts()
        if gaps:
            facts[Attr.UNVALIDATED] = gaps
        self.searcher.set_attrs(act.number, facts)
        crash_point("after_logged_epoch")
        return False

    def _note_gaps(self, act: Active, *, through: int | None = None) -> list[int]:
        """The epochs at which the plan says the trainer evaluates and its logs hold no
        objective: a trainer stopped between an epoch's checkpoint and its validation
        resumes after that epoch, which is then never validated (docs/sweep.md). Looks at
        the epochs up to `through` (default: before the latest that reported); says so once
        per epoch and returns them all."""
        evaluation = self.plan.evaluation
        if evaluation is None or not evaluation.epochs:
            return []
        have = objective_values(act.metrics.epochs, self.plan.objective)
        last = through if through is not None else max(have, default=0) - 1
        gaps = [e for e in evaluation.epochs if e <= last and e not in have]
        for e in gaps:
            if e not in act.gaps_said:
                act.gaps_said.add(e)
                self._emit(
                    "gap",
                    act,
                    f"epoch {e} reported no {self.plan.objective}: the trainer stopped after "
                    f"its checkpoint and before its validation, and the resumed attempt went "
                    f"on from epoch {e + 1} (recorded as {Attr.UNVALIDATED})",
                )
        return gaps

    def _complete(self, act: Active) -> None:
        value = act.metrics.latest(self.plan.objective)
        if value is None:
            why = f"the job succeeded but its logs in {act.work_dir} never reported "
            self._finish(act, TrialState.FAIL, None, why + self.plan.objective, tail=True)
            return
        self._finish(act, TrialState.COMPLETE, value, "completed")

    def _retry_or_fail(self, act: Active, status: JobStatus) -> None:
        why = status.reason or status.state.value
        # The cause from the job's own output (the first traceback of the failing rank), not
        # the launcher's summary at the log's end (docs/trainers.md, "Failed trials").
        explain = getattr(self.trainer, "failure", None)
        cause = explain(act.work_dir, act.handle.log if act.handle else "") if explain else None
        if cause is not None:
            why = f"{why}: {cause.summary}"
        permanent = cause is not None and cause.permanent
        if act.attempt >= self.max_attempts or permanent:
            again = " (not retried: a retry would fail the same way)" if permanent else ""
            last = f"attempt {act.attempt} of {self.max_attempts} failed: {why}{again}"
            self._finish(act, TrialState.FAIL, None, last, tail=True, cause=cause)
            return
        self._end_attempt(act, status.state.value, why)
        act.attempt += 1
        # The failed job goes first: a crash in between must not re-attach it as the new
        # attempt's job (with JOB empty, a resume finds the old attempt's job by name again).
        self.searcher.set_attrs(act.number, {Attr.JOB: "", Attr.ATTEMPT: act.attempt})
        crash_point("after_retry_stored")
        act.handle = None
        resume = self.trainer.has_checkpoint(act.work_dir)
        log.debug("t%03d: attempt %d failed (%s); retrying", act.number, act.attempt - 1, why)
        how = "from its last checkpoint" if resume else "from the start"
        self._emit("failed", act, f"attempt {act.attempt - 1} failed ({why}); retrying {how}")
        self._ensure_launched(act, resume=resume)

    def _end_attempt(self, act: Active, state: str, reason: str) -> None:
        """Close and bill the current attempt. Safe to repeat after a crash: the lineage
        keeps the first record, and a resumed meter is already ended."""
        facts = act.close_attempt(self.clock.now(), self.plan.gpus, state, reason)
        self.searcher.record_attempt(act.number, act.attempt, **facts)
        crash_point("after_attempt_closed")
        log.debug("t%03d: attempt %d billed %s", act.number, act.attempt, facts)

    def _finish(
        self,
        act: Active,
        state: TrialState,
        value: float | None,
        why: str,
        *,
        tail: bool = False,
        cause: Any = None,
    ) -> None:
        self._end_attempt(act, _ATTEMPT_END.get(state, act.status.state.value), why)
        result = act.result(self.clock.now(), self.plan.objective)
        facts: dict[str, Any] = {Attr.RESULT: result}
        if state == TrialState.COMPLETE:  # the last evaluation counts too once it is over
            self._note_gaps(act, through=act.metrics.last_epoch)
        if act.gaps_said:
            facts[Attr.UNVALIDATED] = sorted(act.gaps_said)
        failure = ""
        if tail and act.handle is not None:
            failure = log_tail(Path(act.handle.log))
            record: dict[str, Any] = {"reason": why, "log_tail": failure}
            if cause is not None:
                record.update(
                    cause=cause.line,
                    traceback=cause.traceback,
                    rank=cause.rank,
                    kind=cause.kind,
                    permanent=cause.permanent,
                )
                # The cause first: the tail is the launcher's summary.
                failure = f"{cause.traceback or cause.line}\n...\n{failure}"
            facts[Attr.FAILURE] = record
        # Last, in the same call: a stored ending says the facts above are stored too.
        ending = {
            "state": state.name,
            "value": value,
            "why": why,
            "failure": failure,
            "unvalidated": sorted(act.gaps_said),
        }
        facts[Attr.ENDING] = ending
        self.searcher.set_attrs(act.number, facts)
        crash_point("after_ending")
        self._conclude(act, ending, result)

    def _conclude(self, act: Active, ending: dict[str, Any], result: dict[str, Any]) -> None:
        """Carry out a decided ending: cancel a pruned trial's job, end its MLflow run, then
        tell the study. Each step is safe to repeat, so a resume calls this again for a
        trial whose controller died half way (docs/sweep.md, "Resume, crashes and faults")."""
        state = TrialState[ending["state"]]
        value = ending.get("value")
        why = str(ending.get("why") or "")
        failure = str(ending.get("failure") or "")
        if state == TrialState.PRUNED and act.handle is not None:
            self.executor.cancel(act.handle)
            crash_point("after_cancel")
        if not act.metrics.epochs:  # a resume: the per-epoch keys stay out of the final ones
            act.metrics = self.trainer.read_metrics(act.work_dir)
        metrics, artifacts = run_figures(act, result)
        tags = {"state": state.name, "reason": why[:500]}
        if ending.get("unvalidated"):
            tags[Attr.UNVALIDATED] = ",".join(str(e) for e in ending["unvalidated"])
        status = _MLFLOW_STATUS.get(state, "FAILED")
        self.tracker.finish_trial(act.run_id, status, metrics, tags, artifacts)
        crash_point("before_tell")
        self.searcher.tell(act.number, state, value if state == TrialState.COMPLETE else None)
        crash_point("after_tell")
        log.debug("t%03d: told %s (%s)", act.number, state.name, value)
        self.active.pop(act.number, None)
        kind = _EVENT_KIND.get(state, "failed")
        msg = why if value is None else f"{self.plan.objective} {value:.4f}"
        self._emit(kind, act, msg + (f"\n{failure}" if failure else ""))

    # -- views ------------------------------------------------------------------------------
    def gpu_hours_used(self, trials: list[TrialView] | None = None) -> float:
        """GPU-hours at the target scale so far (what `budget.gpu_hours` counts; estimated
        on virtual GPUs): finished trials' results, plus the running trials' (to now)."""
        trials = self.searcher.trials() if trials is None else trials
        done = sum(
            float((t.attrs.get(Attr.RESULT) or {}).get("gpu_hours", 0.0))
            for t in trials
            if t.state.finished
        )
        now = self.clock.now()
        return done + sum(a.gpu_hours(now, self.plan.gpus) for a in self.active.values())

    def cost_used(self, trials: list[TrialView] | None = None) -> float:
        """Trial-equivalents committed (what a budget that counts cost counts): finished
        trials' as run, running trials' as planned (their epochs)."""
        trials = self.searcher.trials() if trials is None else trials
        total = 0.0
        for t in trials:
            if t.state == TrialState.WAITING:
                continue
            act = self.active.get(t.number)
            params = act.params if act is not None else (t.attrs.get(Attr.PARAMS) or {})
            result = t.attrs.get(Attr.RESULT) if t.state.finished else None
            total += self.pricing.trial_cost(params, result)
        return total

    def _emit(self, kind: str, act: Active, message: str) -> None:
        self.on_event(Event(kind, act.number, message))

    def cancel_all(self) -> None:
        for act in list(self.active.values()):
            if act.handle is not None:
                self.executor.cancel(act.handle)
