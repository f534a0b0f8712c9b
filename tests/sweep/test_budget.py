"""The stop criterion, the meter that prices a job's run time, and the pricing that turns it
into the figures a user reads (pure: no clock, no I/O)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from scaleout.core.job import JobState, JobStatus, Layout, TrialMetrics
from scaleout.sweep.budget import Budget, Meter, Pricing, gpu_hours, mlflow_cost_names
from scaleout.sweep.trial import Active, run_figures

PENDING = JobStatus(JobState.PENDING)
RUNNING = JobStatus(JobState.RUNNING)
DONE = JobStatus(JobState.SUCCEEDED)


@pytest.mark.parametrize(
    ("budget", "started", "hours", "allows"),
    [
        (Budget(3), 2, 1e9, True),
        (Budget(3), 3, 0.0, False),
        (Budget(10, gpu_hours=100.0), 4, 99.9, True),
        (Budget(10, gpu_hours=100.0), 4, 100.0, False),
        (Budget(2, gpu_hours=100.0), 2, 0.0, False),
    ],
)
def test_budget_allows_another_trial(budget, started, hours, allows):
    assert budget.allows(started=started, gpu_hours=hours) is allows


@pytest.mark.parametrize(
    ("cost", "started", "allows"),
    [(5.9, 9, True), (6.0, 1, False), (0.0, 100, True), (7.5, 3, False)],
)
def test_a_budget_that_counts_cost_counts_trial_equivalents_not_trials(cost, started, allows):
    budget = Budget(6, counts_cost=True)
    assert budget.allows(started=started, gpu_hours=0.0, cost=cost) is allows


def test_a_cost_budget_still_stops_at_its_gpu_hours():
    budget = Budget(6, gpu_hours=10.0, counts_cost=True)
    assert not budget.allows(started=1, gpu_hours=10.0, cost=1.0)
    with pytest.raises(ValueError, match="needs the cost committed"):
        budget.allows(started=1, gpu_hours=0.0)


def test_trial_cost_is_what_it_ran_or_what_it_will_run():
    p = Pricing(160, 24, True, 44.4, 1, "CPU-hours")
    assert p.trial_cost({"epochs": 36}, None) == 1.5  # running: planned
    assert p.trial_cost({}, None) == 1.0  # the plan's length
    assert p.trial_cost({"epochs": 36}, {"trial_equivalents": 0.25}) == 0.25  # pruned at 6


def test_gpu_hours_never_negative():
    assert gpu_hours(1800.0, 160) == 80.0
    assert gpu_hours(-5.0, 160) == 0.0  # clock skew between a cluster and the controller


def test_the_jobs_own_start_and_end_win():
    m = Meter()
    m.observe(PENDING, now=0.0)
    assert m.started is None and m.seconds(3000.0) == 0.0  # queue time is not billed
    m.observe(JobStatus(JobState.RUNNING, started_at=3600.0), now=3700.0)
    assert m.seconds(4000.0) == 400.0
    m.observe(JobStatus(JobState.SUCCEEDED, started_at=3600.0, ended_at=5400.0), now=9000.0)
    assert m.seconds(99_999.0) == 1800.0
    assert m.start_record() == {"started_at": 3600.0, "start_clock": "job"}


def test_without_the_jobs_times_the_controller_clock_starts_at_the_first_running_poll():
    m = Meter()
    m.observe(PENDING, now=100.0)
    m.observe(RUNNING, now=3700.0)
    m.observe(JobStatus(JobState.UNKNOWN), now=4000.0)  # the executor could not be asked
    m.observe(DONE, now=5500.0)
    assert m.seconds(6000.0) == 1800.0
    assert m.start_record() == {"started_at": 3700.0, "start_clock": "controller"}


def test_a_job_that_ended_unwatched_is_billed_to_its_last_sighting():
    # Rebuilt on resume: started at 100 and last seen running at 1000 by the dead controller.
    m = Meter.from_record({"started_at": 100.0, "start_clock": "controller"}, seen=1000.0)
    assert m.seconds(5000.0) == 900.0  # the downtime since is not billed
    m.observe(DONE, now=5000.0)
    assert m.seconds(9000.0) == 900.0


def test_a_job_still_running_after_a_resume_is_billed_through():
    m = Meter.from_record({"started_at": 100.0, "start_clock": "controller"}, seen=1000.0)
    m.observe(RUNNING, now=5000.0)  # it really ran all along
    assert m.seconds(5000.0) == 4900.0


def test_a_job_that_never_ran_costs_nothing():
    m = Meter()
    m.observe(PENDING, now=0.0)
    m.observe(JobStatus(JobState.NOT_FOUND), now=10.0)
    assert m.seconds(100.0) == 0.0 and m.ended is None
    assert m.start_record() == {}


def test_an_ended_record_stays_ended():
    m = Meter.from_record({"started_at": 0.0, "start_clock": "job", "ended_at": 60.0})
    m.observe(JobStatus(JobState.SUCCEEDED, started_at=0.0, ended_at=99.0), now=500.0)
    assert m.seconds(500.0) == 60.0


# -- Pricing: GPU-hours at the target, compute spent here, trial-equivalents ---------------
def _plan(per_trial=0.032, epochs=24, gpus=160):
    """What Pricing reads of a Plan: the target, the trial length and the cost estimate."""
    return SimpleNamespace(
        gpus=gpus,
        scale=SimpleNamespace(trial_epochs=epochs),
        cost=SimpleNamespace(gpu_hours_per_trial=per_trial),
    )


@pytest.mark.parametrize(
    ("layout", "estimated", "units", "unit"),
    [
        (Layout(1, 1, 160, use_gpu=False), True, 2, "CPU-hours"),  # 1 process x 2 cores
        (Layout(1, 8, 160, use_gpu=True), True, 8, "GPU-hours"),  # 8 real GPUs stand for 160
        (Layout(20, 8, 160, use_gpu=True), False, 160, "GPU-hours"),  # the real thing
        (Layout(20, 2, 160, use_gpu=False), True, 80, "CPU-hours"),  # fewer procs than GPUs
    ],
)
def test_pricing_says_whether_the_target_gpu_hours_are_measured(layout, estimated, units, unit):
    p = Pricing.for_run(_plan(), layout, cores_per_process=2)
    assert (p.estimated, p.here_units, p.here_unit) == (estimated, units, unit)
    assert p.basis == ("estimated" if estimated else "measured")


def test_virtual_gpus_take_the_plans_estimate_for_the_epochs_run():
    # The case: a sweep planned at 0.032 GPU-hours a trial must not report 160 x its
    # CPU wall time. Half the epochs of a trial cost half the plan's estimate.
    p = Pricing.for_run(_plan(), Layout(1, 1, 160, use_gpu=False))
    assert p.target_gpu_hours(epochs=12, measured=65.0) == pytest.approx(0.016)
    assert p.trial_equivalents(12) == 0.5 and p.trial_equivalents(24) == 1.0
    assert p.here_hours(1800.0) == pytest.approx(0.5)  # 1 process, 1 core: CPU-hours
    real = Pricing.for_run(_plan(), Layout(20, 8, 160, use_gpu=True))
    assert real.target_gpu_hours(epochs=12, measured=65.0) == 65.0
    unknown = Pricing.for_run(_plan(per_trial=None), Layout(1, 1, 160, use_gpu=False))
    assert unknown.target_gpu_hours(epochs=12, measured=65.0) is None


def _active(pricing, epochs=0, reference=None):
    a = Active(
        number=3,
        origin="sampled",
        params={},
        work_dir=Path("/w"),
        attempt=1,
        run_id="r",
        handle=None,
        started=0.0,
        pricing=pricing,
        reference=reference or {},
    )
    a.metrics = TrialMetrics(epochs={e: {"NDS": 0.1 * e} for e in range(1, epochs + 1)})
    a.meter = Meter(started=0.0, own_start=True)
    return a


def test_a_virtual_trials_figures_and_mlflow_names():
    p = Pricing.for_run(_plan(epochs=4), Layout(1, 1, 160, use_gpu=False))
    a = _active(p, epochs=2, reference={"NDS": 0.4})
    assert a.gpu_hours(3600.0, 160) == pytest.approx(0.016)  # what the budget counts
    assert a.here_hours(3600.0) == pytest.approx(1.0)
    facts = a.close_attempt(3600.0, 160, "pruned", "pruned at epoch 2")
    assert "gpu_hours" not in facts  # 160 x CPU time is no GPU-hour figure of anything
    assert facts["compute_hours_here"] == pytest.approx(1.0)
    res = a.result(3600.0, "NDS")
    assert res["gpu_hours"] == pytest.approx(0.016) and res["gpu_hours_basis"] == "estimated"
    assert res["compute_unit_here"] == "CPU-hours" and res["trial_equivalents"] == 0.5
    assert res["pct_of_reference"] == pytest.approx(50.0)
    metrics, _ = run_figures(a, res)
    assert metrics["target_gpu_hours_est"] == pytest.approx(0.016)
    assert metrics["cpu_hours_here"] == pytest.approx(1.0)
    assert "gpu_hours" not in metrics and metrics["trial_equivalents"] == 0.5


def test_a_real_gpu_trial_measures_both_figures():
    p = Pricing.for_run(_plan(epochs=4), Layout(20, 8, 160, use_gpu=True))
    a = _active(p, epochs=4)
    a.close_attempt(1800.0, 160, "succeeded", "completed")
    res = a.result(1800.0, "NDS")
    assert res["gpu_hours"] == pytest.approx(80.0) and res["gpu_hours_basis"] == "measured"
    assert res["compute_hours_here"] == pytest.approx(80.0) and "pct_of_reference" not in res
    metrics, _ = run_figures(a, res)
    assert metrics["target_gpu_hours"] == pytest.approx(80.0)
    assert metrics["gpu_hours_here"] == pytest.approx(80.0)


def test_mlflow_cost_names():
    assert mlflow_cost_names("estimated", "CPU-hours") == ("target_gpu_hours_est", "cpu_hours_here")
    assert mlflow_cost_names("measured", "GPU-hours") == ("target_gpu_hours", "gpu_hours_here")
