"""The executor seam: submit a trial's job, poll many, cancel one, find one again.

Jobs outlive the controller (ARCHITECTURE decision 1). A job's name is deterministic
(`<sweep>-t<NNN>-a<attempt>`), so a controller that died between storing the handle and
submitting, or between submitting and storing, can find the job again by name.
"""

from __future__ import annotations

import enum
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from scaleout.trainers.base import TrialSpec


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The executor has no record of the job (never started, or gone without a trace).
    NOT_FOUND = "not_found"
    # The executor could not be asked this time (a failed squeue); ask again later.
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @property
    def active(self) -> bool:
        return self in (JobState.PENDING, JobState.RUNNING, JobState.UNKNOWN)


@dataclass(frozen=True)
class JobHandle:
    """What the trial stores to find its job again: executor name, job name and id, extras."""

    executor: str
    name: str
    job_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "executor": self.executor,
                "name": self.name,
                "job_id": self.job_id,
                "data": self.data,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> JobHandle:
        d = json.loads(text)
        return cls(d["executor"], d["name"], d.get("job_id", ""), d.get("data", {}))


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    exit_code: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Capacity:
    """What the executor can give at once. `virtual` means trials may stand for more GPUs
    than exist (the local executor on a machine without enough GPUs). `procs_per_node` is
    how many processes a node runs (0: one per GPU); fewer processes than GPUs run the
    trial with virtual GPUs on whole nodes (clusters with fake GPUs, as in the tests).
    `max_nodes_per_job` is the scheduler's cap on one job's nodes (Slurm's partition MaxNodes;
    0: none), `where` names the partition or cluster in messages."""

    nodes: int
    gpus_per_node: int
    slots: int
    virtual: bool = False
    procs_per_node: int = 0
    max_nodes_per_job: int = 0
    where: str = ""

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


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
