"""Crash points: where the tests kill the controller for real (SIGKILL, no cleanup).

`SCALEOUT_CRASH_AT=<point>[:<n>]` makes the n-th pass (default 1st) through `crash_point(point)`
kill the process. Unset, it costs one dict lookup. A point sits between every two consecutive
writes that a resume reconciles (docs/sweep.md, "Resume, crashes and faults"): files of the
sweep folder, the study's attributes, a trial's state and attributes, MLflow calls and job
submissions. `POINTS` lists them in the order a sweep passes them; `tests/sweep` kills the
controller at each one, resumes, and checks the sweep's invariants.
"""

from __future__ import annotations

import os
import signal

# (point, what has been written when the controller dies there and what has not)
POINTS: dict[str, str] = {
    # opening a new sweep (scaleout.sweep.session.open_sweep)
    "after_space_file": "space.yaml written; plan.json not",
    "after_plan_file": "plan.json written; the study not created",
    "after_study_created": "the study created; its uid, space digest and budget not stored",
    "after_study_attrs": "the study's uid, digest and budget stored; no seed queued",
    "after_enqueue_seed": "one seed trial queued (of several); the next not",
    "after_experiment": "the MLflow experiment created; no parent run",
    "after_parent_run": "the MLflow parent run created; its params not logged",
    "after_parent_params": "the parent run's params logged; its artifacts not",
    "after_parent_started": "the parent run complete; its id not stored on the study",
    "before_sweep_json": "the parent run's id stored; sweep.json not written",
    # opening an existing sweep with another --trials
    "after_budget_study": "the new budget stored on the study; sweep.json still the old one",
    # launching a trial (scaleout.sweep.controller.Controller._ensure_launched)
    "after_ask": "a trial asked (RUNNING in the study); nothing stored on it",
    "after_launch_facts": "origin, params, work dir and attempt stored; no MLflow run",
    "after_trial_run": "the trial's MLflow run created; its params not logged",
    "after_trial_params": "the trial's MLflow run complete; its id not stored on the trial",
    "after_run_id": "the MLflow run id stored; no job submitted",
    "after_submit": "the job submitted; its handle not stored",
    "after_job_stored": "the job handle stored; the attempt's submission not in the lineage",
    "after_submitted_recorded": "the submission in the lineage; the job's start not",
    "after_start_recorded": "the job's start in the lineage; no epoch reported",
    # reporting epochs (Controller._report_epochs)
    "after_log_epochs": "new epochs logged to MLflow; the pruner not told",
    "after_report": "the pruner told; the trial's logged epoch not stored",
    "after_logged_epoch": "the logged epoch stored",
    # a failed attempt retried (Controller._retry_or_fail)
    "after_attempt_closed": "the attempt's end and bill in the lineage; nothing else",
    "after_retry_stored": "the next attempt number stored, the old job cleared; no new job",
    # finishing a trial (Controller._finish, Controller._conclude)
    "after_ending": "result, failure and the decided ending stored; nothing carried out",
    "after_cancel": "a pruned trial's job cancelled; MLflow not told",
    "after_final_metrics": "the run's final metrics and tags logged; the run not ended",
    "before_tell": "the MLflow run ended; the study not told",
    "after_tell": "the study told; nothing after",
    # ending the sweep (scaleout.cli.commands.sweep)
    "before_finish_sweep": "every trial finished and published; the parent run not ended",
}

_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get("SCALEOUT_CRASH_AT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
