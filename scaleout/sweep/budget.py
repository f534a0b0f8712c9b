"""The stop criterion of a sweep, and the price of a trial in the units a user reads.

A sweep may start another trial while fewer than `Budget.trials` have started and, where the
space sets `budget.gpu_hours`, while the GPU-hours at the target scale stay below it
(docs/sweep.md). Where the epochs vary between trials (the epochs knob is searched), the
budget counts cost instead of trials: another trial may start while the trial-equivalents
committed (what finished trials ran, what running trials will run) stay below
`Budget.trials`, so a trial of 1.5x the epochs spends 1.5 of it.

A trial's cost has two figures that are never mixed (`Pricing`, docs/analysis.md "Cost"):

- GPU-hours at the target scale: on real GPUs, measured from the job's run time times the
  trial's GPU count; on virtual GPUs, estimated from the plan's cost basis (the plan's
  `cost.gpu_hours_per_trial` times the share of the trial's epochs run), the basis the plan
  priced the budget in. This is what `budget.gpu_hours` counts.
- Compute spent here: run time times what the trial really ran on (GPU-hours where real GPUs
  ran, else CPU-hours: processes times the cores each was given).

and a third, unit-free one: trial-equivalents (the share of a full-length trial's epochs).

A `Meter` takes a job's run time from the job's own start and end (`JobStatus.started_at`/
`ended_at`, as the executor measured them); where the executor does not say, from the
controller's clock between the first poll that saw the job RUNNING and the poll that saw it
end. Two things are never billed:

- queue time: a job is billed from its own start, never from its submission;
- time the controller was down: a job whose end the executor does not give, and that ended
  while no controller watched it, is billed up to the last time a controller saw it running.

Pure: no I/O, no clock of its own; the controller passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleout.core.job import JobState, JobStatus, Layout
from scaleout.core.plan import Plan

# The lineage keys a Meter reads and writes on an attempt's entry (docs/sweep.md).
STARTED_AT = "started_at"  # the job's own start (Unix s), or when a controller first saw it run
START_CLOCK = "start_clock"  # "job" (the executor said) or "controller" (first seen RUNNING)
ENDED_AT = "ended_at"  # the end billed to (the job's own, or the controller's estimate)


@dataclass(frozen=True)
class Budget:
    """How much a sweep may spend: `trials` started trials and, if set, `gpu_hours`."""

    trials: int  # trials, or trial-equivalents where `counts_cost`
    gpu_hours: float | None = None  # at the target scale (estimated on virtual GPUs)
    counts_cost: bool = False

    @classmethod
    def from_plan(cls, plan: Plan) -> Budget:
        # plan.trials already holds the trials a GPU-hour budget buys at the plan's estimate.
        return cls(
            trials=plan.trials, gpu_hours=plan.space.budget.gpu_hours, counts_cost=plan.counts_cost
        )

    def allows(self, *, started: int, gpu_hours: float, cost: float | None = None) -> bool:
        """Whether one more trial may start, with `started` trials started (seeds that are
        only queued do not count), `gpu_hours` used so far (finished and running) and, where
        the budget counts cost, `cost` trial-equivalents committed (`trial_cost`). The last
        trial started may take the cost past the budget by less than its own cost."""
        if self.counts_cost:
            if cost is None:
                raise ValueError("a budget that counts cost needs the cost committed")
            if cost >= self.trials:
                return False
        elif started >= self.trials:
            return False
        return self.gpu_hours is None or gpu_hours < self.gpu_hours


def gpu_hours(seconds: float, gpus: int) -> float:
    return max(0.0, seconds) * gpus / 3600.0


# How a trial's GPU-hours at the target scale were found (`result.gpu_hours_basis`).
ESTIMATED = "estimated"  # virtual GPUs: the plan's cost basis x the share of epochs run
MEASURED = "measured"  # real GPUs: the job's run time x the trial's GPU count
CPU_HOURS, GPU_HOURS = "CPU-hours", "GPU-hours"


@dataclass(frozen=True)
class Pricing:
    """What one trial of a sweep costs, in the three units a user reads.

    `estimated`: the trial runs on virtual GPUs (fewer real processes than the GPUs it stands
    for, or none of them a GPU), so its run time here says nothing of the GPU-hours at the
    target; those come from the plan's estimate (`gpu_hours_per_trial`, None when the plan
    has no cost basis). `here_units` x run time is the compute spent here, in `here_unit`.
    """

    gpus: int
    trial_epochs: int
    estimated: bool
    gpu_hours_per_trial: float | None
    here_units: int
    here_unit: str

    @classmethod
    def for_run(cls, plan: Plan, layout: Layout, cores_per_process: int = 1) -> Pricing:
        """The pricing of `plan`'s trials placed as `layout`; `cores_per_process`: the CPU
        cores each process is given where no GPU runs (the local executor's threads)."""
        real = layout.use_gpu and layout.world_size >= layout.virtual_gpus
        units = layout.world_size * (1 if layout.use_gpu else max(1, cores_per_process))
        return cls(
            gpus=plan.gpus,
            trial_epochs=max(1, plan.scale.trial_epochs),
            estimated=not real,
            gpu_hours_per_trial=plan.cost.gpu_hours_per_trial,
            here_units=units,
            here_unit=GPU_HOURS if layout.use_gpu else CPU_HOURS,
        )

    @property
    def basis(self) -> str:
        return ESTIMATED if self.estimated else MEASURED

    def trial_equivalents(self, epochs: float) -> float:
        """The share of a full-length trial at the target that `epochs` epochs are."""
        return max(0.0, float(epochs)) / self.trial_epochs

    def target_gpu_hours(self, *, epochs: float, measured: float) -> float | None:
        """GPU-hours at the target scale: `measured` (run time x the trial's GPUs) on real
        GPUs; on virtual GPUs the plan's estimate for the epochs run (None without one)."""
        if not self.estimated:
            return measured
        if self.gpu_hours_per_trial is None:
            return None
        return self.gpu_hours_per_trial * self.trial_equivalents(epochs)

    def here_hours(self, seconds: float) -> float:
        """Compute spent here for `seconds` of run time, in `here_unit`."""
        return max(0.0, seconds) * self.here_units / 3600.0

    def trial_cost(self, params: dict[str, Any], result: dict[str, Any] | None) -> float:
        """A started trial's cost in trial-equivalents: what it ran once it has a result,
        else what it will run (its epochs, or the plan's length where it has none)."""
        if result and result.get("trial_equivalents") is not None:
            return float(result["trial_equivalents"])
        return self.trial_equivalents(params.get("epochs") or self.trial_epochs)


@dataclass
class Meter:
    """How long one attempt's job has run, for billing. One per attempt; rebuilt on resume
    from what the lineage and the trial recorded (`from_record`).

    `started` is the job's own start when the executor gave it (`own_start`), else the
    controller's clock at the first poll that saw the job RUNNING; None while it queues.
    `ended` is set once, when a poll first sees the job finished. `seen` is the last time a
    controller saw the job running; `watching` says this controller saw it running, so a job
    it sees ended ended under its eyes (and not while it was down).
    """

    started: float | None = None
    own_start: bool = False
    ended: float | None = None
    seen: float | None = None
    watching: bool = False

    @classmethod
    def from_record(cls, entry: dict[str, Any], seen: float | None = None) -> Meter:
        started, ended = entry.get(STARTED_AT), entry.get(ENDED_AT)
        return cls(
            started=None if started is None else float(started),
            own_start=entry.get(START_CLOCK) == "job",
            ended=None if ended is None else float(ended),
            seen=seen,
        )

    def observe(self, status: JobStatus, now: float) -> None:
        """Take in one poll's word on the job. UNKNOWN (the executor could not be asked)
        changes nothing; once ended, nothing changes."""
        if self.ended is not None or status.state == JobState.UNKNOWN:
            return
        if status.started_at is not None:
            self.started, self.own_start = float(status.started_at), True
        running = status.state == JobState.RUNNING
        if running and self.started is None:
            self.started = now
        if running:
            self.seen, self.watching = now, True
        if status.state.finished or status.state == JobState.NOT_FOUND:
            self.ended = self._end(status, now)

    def _end(self, status: JobStatus, now: float) -> float | None:
        if self.started is None:
            return None  # never ran: nothing to bill
        if status.ended_at is not None:
            return max(self.started, float(status.ended_at))
        if self.watching:
            return now  # it ended since the last poll, which saw it running
        return self.seen if self.seen is not None else self.started

    def seconds(self, now: float) -> float:
        """Billed run time so far: to the end once ended, else to `now` while it runs."""
        if self.started is None:
            return 0.0
        end = self.ended
        if end is None:
            end = now if self.watching or self.own_start else (self.seen or self.started)
        return max(0.0, end - self.started)

    def start_record(self) -> dict[str, Any]:
        """The lineage facts of the start, once known ({} while the job queues)."""
        if self.started is None:
            return {}
        return {STARTED_AT: self.started, START_CLOCK: "job" if self.own_start else "controller"}


def mlflow_cost_names(basis: str | None, unit: str | None) -> tuple[str, str]:
    """The MLflow metric names of the two cost figures, labelled by what they are: the
    target's GPU-hours (`target_gpu_hours_est` where estimated) and the compute spent here
    (`cpu_hours_here` or `gpu_hours_here`)."""
    target = "target_gpu_hours_est" if basis == ESTIMATED else "target_gpu_hours"
    here = "gpu_hours_here" if unit == GPU_HOURS else "cpu_hours_here"
    return target, here
