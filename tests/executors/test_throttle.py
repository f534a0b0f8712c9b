"""The cluster executors' shared query pacing and final-status cache (pure logic)."""

from __future__ import annotations

from scaleout.core.job import JobHandle, JobState, JobStatus
from scaleout.executors.base import QueryThrottle, poll_with_cache


def test_throttle_waits_its_interval_backs_off_after_failures_and_resets():
    t = QueryThrottle(min_interval_s=60, max_backoff_s=300)
    assert t.due(knows_all=True)  # never asked yet
    t.succeeded()
    assert not t.due(knows_all=True)
    assert t.due(knows_all=False)  # a job it has not heard of may be asked about at once
    t.failed("timeout")
    assert not t.ok and t.error == "timeout" and t.backoff == 120
    assert not t.due(knows_all=False)  # after a failure, nothing sooner than the backoff
    t.failed("timeout")
    t.failed("timeout")
    assert t.backoff == 300  # capped
    t.ask_now()
    assert t.due(knows_all=True)
    t.succeeded()
    assert t.ok and t.backoff == 60


def test_poll_keeps_a_finished_jobs_last_word_and_refreshes_only_the_others():
    handles = [JobHandle("x", name, f"id-{name}", {}) for name in ("a", "b")]
    final: dict[str, JobStatus] = {}
    asked: list[list[str]] = []
    states = {"a": JobState.SUCCEEDED, "b": JobState.RUNNING}
    out = poll_with_cache(handles, final, asked.append, lambda h: JobStatus(states[h.name]))
    assert {k: v.state for k, v in out.items()} == states
    assert asked == [["id-a", "id-b"]] and list(final) == ["a"]
    states["a"] = JobState.NOT_FOUND  # the scheduler forgot it: its last word stands
    out = poll_with_cache(handles, final, asked.append, lambda h: JobStatus(states[h.name]))
    assert out["a"].state == JobState.SUCCEEDED and asked[-1] == ["id-b"]
