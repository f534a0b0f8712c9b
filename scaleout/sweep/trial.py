"""A running trial as the controller holds it (`Active`), and the events it emits.

The study holds every fact a resume needs (docs/sweep.md, "What is stored on each trial");
`Active.from_view` rebuilds the in-memory record from them, so nothing here is state the
study lacks, except the latest poll and metrics, which the next step reads again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaleout.core.job import JobHandle, JobState, JobStatus, TrialMetrics
from scaleout.sweep.budget import ENDED_AT, Meter, gpu_hours
from scaleout.sweep.search import Attr, TrialView

LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Event:
    kind: str  # started | retried | epoch | pruned | completed | failed | reattached
    number: int
    message: str


@dataclass
class Active:
    """A RUNNING trial of the study that this controller drives.

    `started` is the first submission on the controller's clock (the trial's wall time runs
    from it); `meter` times the current attempt's job for billing and `billed_gpu_hours`
    holds what the attempts before it cost. `stored` says the launch facts (origin, work
    dir, attempt, params) are on the trial.
    """

    number: int
    origin: str
    params: dict[str, Any]
    work_dir: Path
    attempt: int
    run_id: str
    handle: JobHandle | None
    started: float
    logged_epoch: int = 0
    # The last epoch in MLflow: ahead of logged_epoch when the controller died between
    # logging an epoch and storing it (the resume reads it back: Tracker.last_epoch).
    tracked_epoch: int = 0
    gaps_said: set[int] = field(default_factory=set)  # epochs found unvalidated (Attr.UNVALIDATED)
    metrics: TrialMetrics = field(default_factory=TrialMetrics)
    state: JobState = JobState.PENDING
    status: JobStatus = field(default_factory=lambda: JobStatus(JobState.UNKNOWN))
    meter: Meter = field(default_factory=Meter)
    billed_gpu_hours: float = 0.0
    stored: bool = False

    @classmethod
    def from_view(
        cls, view: TrialView, *, params: dict[str, Any], work_dir: Path, now: float
    ) -> Active:
        ua = view.attrs
        job = ua.get(Attr.JOB)
        attempt = int(ua.get(Attr.ATTEMPT, 1))
        lineage = view.attempts
        current = next((e for e in lineage if e.get("attempt") == attempt), {})
        seen = ua.get(Attr.SEEN_RUNNING) or {}
        first = lineage[0] if lineage else {}
        return cls(
            number=view.number,
            origin=ua.get(Attr.ORIGIN, "sampled"),
            params=dict(params),
            work_dir=Path(ua.get(Attr.WORK_DIR) or work_dir),
            attempt=attempt,
            run_id=ua.get(Attr.RUN_ID, ""),
            handle=JobHandle.from_json(job) if job else None,
            # Lineages written before billing by run time called the submission "started".
            started=float(first.get("submitted", first.get("started", now))),
            logged_epoch=int(ua.get(Attr.LOGGED_EPOCH, 0)),
            tracked_epoch=int(ua.get(Attr.LOGGED_EPOCH, 0)),
            meter=Meter.from_record(
                current, seen.get("at") if seen.get("attempt") == attempt else None
            ),
            billed_gpu_hours=sum(
                float(e.get("gpu_hours", 0.0)) for e in lineage if e.get("attempt", 0) < attempt
            ),
            stored=Attr.PARAMS in ua,
        )

    def launch_facts(self) -> dict[str, Any]:
        """What the trial stores before its first job is submitted."""
        return {
            Attr.ORIGIN: self.origin,
            Attr.WORK_DIR: str(self.work_dir),
            Attr.ATTEMPT: self.attempt,
            Attr.PARAMS: self.params,
        }

    def epoch_facts(self) -> dict[str, Any]:
        """What the trial stores with each epoch report. A job billed on the controller's
        clock also keeps its last sighting, so a job that ends while no controller watches is
        billed up to here, not up to the next resume."""
        facts: dict[str, Any] = {Attr.LOGGED_EPOCH: self.logged_epoch}
        if not self.meter.own_start and self.meter.seen is not None:
            facts[Attr.SEEN_RUNNING] = {"attempt": self.attempt, "at": self.meter.seen}
        return facts

    def gpu_hours(self, now: float, gpus: int) -> float:
        """Billed so far: the earlier attempts, and the current one up to `now`."""
        return self.billed_gpu_hours + gpu_hours(self.meter.seconds(now), gpus)

    def close_attempt(self, now: float, gpus: int, state: str, reason: str) -> dict[str, Any]:
        """Bill the current attempt and return its lineage facts; the meter starts afresh
        for the next attempt."""
        seconds = self.meter.seconds(now)
        hours = gpu_hours(seconds, gpus)
        facts = {
            "ended": now,
            ENDED_AT: self.meter.ended if self.meter.ended is not None else now,
            "state": state,
            "reason": reason,
            "exit_code": self.status.exit_code,
            "run_s": seconds,
            "gpu_hours": hours,
        }
        self.billed_gpu_hours += hours
        self.meter = Meter()
        return facts

    def result(self, now: float, objective: str) -> dict[str, Any]:
        """The trial's whole-run figures, stored as Attr.RESULT (after `close_attempt`)."""
        m = self.metrics
        out: dict[str, Any] = {
            "wall_time_s": now - self.started,
            "gpu_hours": self.billed_gpu_hours,
            "epochs": float(m.last_epoch),
            "attempts": float(self.attempt),
        }
        for key in ("NDS", "mAP", objective):
            v = m.latest(key)
            if v is not None:
                out[key] = float(v)
        if m.samples_per_s is not None:
            out["samples_per_s"] = float(m.samples_per_s)
        if m.iter_time_s is not None:
            out["iter_time_s"] = float(m.iter_time_s)
        return out


def objective_values(epochs: dict[int, dict[str, float]], objective: str) -> dict[int, float]:
    """The objective per epoch, for the pruner; NaN is not a report."""
    values = {e: m.get(objective) for e, m in epochs.items()}
    return {e: float(v) for e, v in values.items() if v is not None and v == v}


def run_figures(act: Active, result: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """The whole-trial metrics and the artifacts of a finished trial's MLflow run. Per-epoch
    metrics are already in the run's history (its last point is the final value MLflow
    shows), so they are left out."""
    per_epoch = {k for m in act.metrics.epochs.values() for k in m}
    metrics = {k: v for k, v in result.items() if isinstance(v, float) and k not in per_epoch}
    artifacts = {"config": str(act.work_dir / "trial_config.py")}
    if act.handle is not None and act.handle.log:
        artifacts["log"] = act.handle.log
    return metrics, artifacts


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
