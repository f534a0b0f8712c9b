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
from scaleout.sweep.budget import ENDED_AT, Meter, Pricing, gpu_hours, mlflow_cost_names
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
    from it); `meter` times the current attempt's job for billing, `billed_gpu_hours` and
    `billed_run_s` hold what the attempts before it cost. `pricing` turns those into the
    figures a user reads (GPU-hours at the target, compute spent here, trial-equivalents;
    without it, GPU-hours are run time x GPUs); `reference` is what the reference recipe
    scores at its own scale (the plan's `reference.metric`). `stored` says the launch facts
    (origin, work dir, attempt, params) are on the trial.
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
    billed_run_s: float = 0.0
    stored: bool = False
    pricing: Pricing | None = None
    reference: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_view(
        cls,
        view: TrialView,
        *,
        params: dict[str, Any],
        work_dir: Path,
        now: float,
        pricing: Pricing | None = None,
        reference: dict[str, float] | None = None,
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
            billed_run_s=sum(
                float(e.get("run_s", 0.0)) for e in lineage if e.get("attempt", 0) < attempt
            ),
            stored=Attr.PARAMS in ua,
            pricing=pricing,
            reference=dict(reference or {}),
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

    @property
    def epochs_run(self) -> int:
        """Epochs the trial has reached (its logs, or what was reported before a resume)."""
        return max(self.logged_epoch, self.metrics.last_epoch)

    def target_gpu_hours(self, now: float, gpus: int) -> float | None:
        """GPU-hours at the target scale so far: measured (the earlier attempts, and the
        current one up to `now`), or on virtual GPUs the plan's estimate for the epochs run
        (None where the plan has no cost basis)."""
        return self._target(self.billed_gpu_hours + gpu_hours(self.meter.seconds(now), gpus))

    def _target(self, measured: float) -> float | None:
        if self.pricing is None:
            return measured
        return self.pricing.target_gpu_hours(epochs=self.epochs_run, measured=measured)

    def gpu_hours(self, now: float, gpus: int) -> float:
        """What the budget counts so far: GPU-hours at the target scale (0 where unknown:
        a plan without a cost basis has no GPU-hour budget either)."""
        return self.target_gpu_hours(now, gpus) or 0.0

    def here_hours(self, now: float) -> float | None:
        """Compute spent here so far (in `pricing.here_unit`); None without a pricing."""
        if self.pricing is None:
            return None
        return self.pricing.here_hours(self.billed_run_s + self.meter.seconds(now))

    def close_attempt(self, now: float, gpus: int, state: str, reason: str) -> dict[str, Any]:
        """Bill the current attempt and return its lineage facts; the meter starts afresh
        for the next attempt. On virtual GPUs the attempt's run time x GPUs is no GPU-hour
        figure of the target, so the lineage keeps only the compute it spent here."""
        seconds = self.meter.seconds(now)
        hours = gpu_hours(seconds, gpus)
        facts: dict[str, Any] = {
            "ended": now,
            ENDED_AT: self.meter.ended if self.meter.ended is not None else now,
            "state": state,
            "reason": reason,
            "exit_code": self.status.exit_code,
            "run_s": seconds,
        }
        if self.pricing is None or not self.pricing.estimated:
            facts["gpu_hours"] = hours
        if self.pricing is not None:
            facts["compute_hours_here"] = self.pricing.here_hours(seconds)
        self.billed_gpu_hours += hours
        self.billed_run_s += seconds
        self.meter = Meter()
        return facts

    def result(self, now: float, objective: str) -> dict[str, Any]:
        """The trial's whole-run figures, stored as Attr.RESULT (after `close_attempt`).

        `gpu_hours` is the GPU-hours at the target scale (what the budget counts), measured
        or estimated as `gpu_hours_basis` says; `compute_hours_here` (in `compute_unit_here`)
        what this machine spent; `trial_equivalents` the share of a full-length trial run;
        `pct_of_reference` the objective against the reference recipe at its own scale."""
        m = self.metrics
        out: dict[str, Any] = {
            "wall_time_s": now - self.started,
            "epochs": float(m.last_epoch),
            "attempts": float(self.attempt),
        }
        target = self._target(self.billed_gpu_hours)  # every attempt is closed by now
        if target is not None:
            out["gpu_hours"] = float(target)
        if self.pricing is not None:
            out["gpu_hours_basis"] = self.pricing.basis
            out["compute_hours_here"] = self.pricing.here_hours(self.billed_run_s)
            out["compute_unit_here"] = self.pricing.here_unit
            out["trial_equivalents"] = self.pricing.trial_equivalents(self.epochs_run)
        for key in ("NDS", "mAP", objective):
            v = m.latest(key)
            if v is not None:
                out[key] = float(v)
        ref = self.reference.get(objective)
        if ref and out.get(objective) is not None:
            out["pct_of_reference"] = 100.0 * out[objective] / ref
        if m.samples_per_s is not None:
            out["samples_per_s"] = float(m.samples_per_s)
        if m.iter_time_s is not None:
            out["iter_time_s"] = float(m.iter_time_s)
        return out


def objective_values(epochs: dict[int, dict[str, float]], objective: str) -> dict[int, float]:
    """The objective per epoch, for the pruner; NaN is not a report."""
    values = {e: m.get(objective) for e, m in epochs.items()}
    return {e: float(v) for e, v in values.items() if v is not None and v == v}


# What run_figures adds to a trial's MLflow run beside the trainer's own metrics.
_OWN_FIGURES = frozenset(
    {"pct_of_reference", "trial_equivalents", "target_gpu_hours_est", "target_gpu_hours"}
    | {"cpu_hours_here", "gpu_hours_here"}
)


def run_figures(act: Active, result: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """The whole-trial metrics and the artifacts of a finished trial's MLflow run. Per-epoch
    metrics are already in the run's history (its last point is the final value MLflow
    shows), so they are left out."""
    per_epoch = {k for m in act.metrics.epochs.values() for k in m}
    metrics = {k: v for k, v in result.items() if isinstance(v, float) and k not in per_epoch}
    if act.pricing is not None:
        # The two cost figures under names that say which is which (docs/analysis.md).
        target, here = mlflow_cost_names(result.get("gpu_hours_basis"), act.pricing.here_unit)
        if "gpu_hours" in metrics:
            metrics[target] = metrics.pop("gpu_hours")
        if "compute_hours_here" in metrics:
            metrics[here] = metrics.pop("compute_hours_here")
    # Figures of our own making, to the digits that mean something: MLflow's table shows
    # every digit logged, truncated (0.28225861...).
    for key in metrics.keys() & _OWN_FIGURES:
        metrics[key] = float(f"{metrics[key]:.4g}")
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
