"""The stop criterion and the meter that prices a job's run time (pure: no clock, no I/O)."""

from __future__ import annotations

import pytest

from scaleout.core.job import JobState, JobStatus
from scaleout.sweep.budget import Budget, Meter, gpu_hours

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
