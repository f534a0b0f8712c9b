"""The executor seam: submit a trial's job, poll many, cancel one, find one again.

Jobs outlive the controller (docs/architecture.md). A job's name is deterministic
(`<sweep>-t<NNN>-a<attempt>`), so a controller that died between storing the handle and
submitting, or between submitting and storing, can find the job again by name.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from scaleout.core.job import Capacity, JobHandle, JobStatus, TrialSpec


class Executor(Protocol):
    name: str

    def capacity(self) -> Capacity: ...

    def submit(self, spec: TrialSpec, job_name: str) -> JobHandle:
        """Start the job. Writes nothing to the study; the controller stores the handle."""
        ...

    def poll(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        """Status of many jobs in one call, keyed by handle.name. Never raises for a
        failed query: the job's status is UNKNOWN then."""
        ...

    def cancel(self, handle: JobHandle) -> None:
        """Stop the job. Safe to call twice and on a finished job."""
        ...

    def find(self, job_name: str, spec: TrialSpec) -> JobHandle | None:
        """The job of that name if the executor knows it (re-attach after a crash)."""
        ...


def prepare_job_dir(spec: TrialSpec, job_name: str) -> tuple[Path, Path]:
    """Write the spec's files into its work dir and make a fresh `.jobs/<job_name>` record
    folder; returns (work_dir, job_dir). Every executor starts a job this way.

    A record folder that already exists belongs to a job of this name that never started
    (`Executor.find` found nothing), so it is replaced.
    """
    work = Path(spec.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    for rel, text in spec.files.items():
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    job_dir = work / ".jobs" / job_name
    if job_dir.exists():
        shutil.rmtree(job_dir)
    job_dir.mkdir(parents=True)
    return work, job_dir


class QueryThrottle:
    """How often a cluster executor may ask its scheduler: at most once per `min_interval_s`
    (sooner when a job it has not heard of is asked about), backing off (doubling, up to
    `max_backoff_s`) after a failed query. `ok`/`error` describe the last query."""

    def __init__(self, min_interval_s: float, max_backoff_s: float) -> None:
        self.min_interval_s = min_interval_s
        self.max_backoff_s = max_backoff_s
        self.ok = False
        self.error = ""
        self.backoff = min_interval_s
        self._next = 0.0

    def due(self, knows_all: bool) -> bool:
        return time.monotonic() >= self._next or (self.ok and not knows_all)

    def succeeded(self) -> None:
        self.ok, self.backoff = True, self.min_interval_s
        self._next = time.monotonic() + self.min_interval_s

    def failed(self, error: str) -> None:
        self.ok, self.error = False, error
        self.backoff = min(self.max_backoff_s, max(self.backoff * 2, 1.0))
        self._next = time.monotonic() + self.backoff

    def ask_now(self) -> None:
        """The next poll asks again (after a cancel, say)."""
        self._next = 0.0


def poll_with_cache(
    handles: Sequence[JobHandle],
    final: dict[str, JobStatus],
    refresh: Callable[[list[str]], None],
    status: Callable[[JobHandle], JobStatus],
) -> dict[str, JobStatus]:
    """The executors' poll: finished jobs answer from `final` (their last word is kept), the
    others from one `refresh` of their ids and then `status` each."""
    todo = [h for h in handles if h.name not in final]
    if todo:
        refresh([h.job_id for h in todo])
    out = {h.name: final[h.name] for h in handles if h.name in final}
    for h in todo:
        out[h.name] = st = status(h)
        if st.state.finished:
            final[h.name] = st
    return out
