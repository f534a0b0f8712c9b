"""Replay a tabulated blackbox through the real controller, on simulated time.

`ReplayWorld` is an executor, a trainer and a clock that share one simulated timeline: a
submitted trial starts `launch_s` (+- `launch_jitter_s`) later, reports epoch k at
`launch_s + k x epoch_s`, and succeeds after its last epoch; its per-epoch metrics come from
`blackbox.Blackbox.curve` at the trial's (lr, warmup_iters, min_lr_ratio), with seed noise
drawn once per trial. The controller, the samplers, the pruners, the retries and the budget
run unchanged; `clock.sleep` advances simulated time instead of waiting, so a 200-trial sweep
takes seconds.

Not a user-facing executor: it lives with the benchmarks and answers only what the benchmarks
ask (benchmarks/search_quality.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scaleout.core.job import (
    Capacity,
    JobHandle,
    JobState,
    JobStatus,
    Layout,
    TrialMetrics,
    TrialParams,
    TrialSpec,
)


class SimClock:
    """Simulated seconds; `sleep` moves time forward and costs nothing."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


@dataclass
class _Job:
    work_dir: str
    submitted: float
    curve: Any  # blackbox.Curve
    launch_s: float = 0.0  # this job's submit-to-first-iteration latency
    cancelled_at: float | None = None


@dataclass
class ReplayWorld:
    """One simulated cluster: `slots` trials at once, each `gpus` GPUs."""

    blackbox: Any
    slots: int
    gpus: int
    epoch_s: float
    launch_s: float = 0.0
    launch_jitter_s: float = 0.0  # each job's latency is launch_s +- up to this, uniformly
    seed: int = 0
    noise: bool = True
    clock: SimClock = field(default_factory=SimClock)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.params: dict[str, TrialParams] = {}
        self.jobs: dict[str, _Job] = {}
        self.epochs = len(self.blackbox.curve(1e-3, 10, 1e-3).nds)
        self.executor = _Executor(self)
        self.trainer = _Trainer(self)

    # -- the timeline ----------------------------------------------------------------------
    def epochs_done(self, job: _Job) -> int:
        end = self.clock.now() if job.cancelled_at is None else job.cancelled_at
        k = math.floor((end - job.submitted - job.launch_s) / self.epoch_s + 1e-9)
        return max(0, min(self.epochs, k))

    def epochs_run(self) -> float:
        """Epochs trained by every job so far (a cancelled one counts what it ran)."""
        return float(sum(self.epochs_done(j) for j in self.jobs.values()))

    def gpu_seconds(self) -> tuple[float, float]:
        """(busy, held): GPU-seconds spent training, and GPU-seconds held by jobs including
        their launch latency; idle = slots x gpus x elapsed - busy."""
        busy = held = 0.0
        now = self.clock.now()
        for j in self.jobs.values():
            end = now if j.cancelled_at is None else j.cancelled_at
            finish = j.submitted + j.launch_s + self.epochs * self.epoch_s
            end = min(end, finish)
            held += max(0.0, end - j.submitted) * self.gpus
            busy += self.epochs_done(j) * self.epoch_s * self.gpus
        return busy, held


class _Executor:
    name = "replay"

    def __init__(self, world: ReplayWorld) -> None:
        self.w = world

    def capacity(self) -> Capacity:
        return Capacity(1, 0, self.w.slots, virtual=True)

    def submit(self, spec: TrialSpec, job_name: str) -> JobHandle:
        p = self.w.params[spec.work_dir]
        rng = self.w.rng if self.w.noise else None
        curve = self.w.blackbox.curve(p["lr"], p["warmup_iters"], p["min_lr_ratio"], rng=rng)
        launch = self.w.launch_s
        if self.w.launch_jitter_s:
            launch += float(self.w.rng.uniform(-self.w.launch_jitter_s, self.w.launch_jitter_s))
        self.w.jobs[job_name] = _Job(spec.work_dir, self.w.clock.now(), curve, max(0.0, launch))
        return JobHandle(self.name, job_name, job_name)

    def poll(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for h in handles:
            job = self.w.jobs.get(h.name)
            if job is None:
                out[h.name] = JobStatus(JobState.NOT_FOUND)
            elif job.cancelled_at is not None:
                out[h.name] = JobStatus(JobState.CANCELLED)
            elif self.w.epochs_done(job) >= self.w.epochs:
                end = job.submitted + job.launch_s + self.w.epochs * self.w.epoch_s
                out[h.name] = JobStatus(
                    JobState.SUCCEEDED, 0, started_at=job.submitted + job.launch_s, ended_at=end
                )
            else:
                running = self.w.clock.now() >= job.submitted + job.launch_s
                state = JobState.RUNNING if running else JobState.PENDING
                started = job.submitted + job.launch_s if running else None
                out[h.name] = JobStatus(state, started_at=started)
        return out

    def cancel(self, handle: JobHandle) -> None:
        job = self.w.jobs.get(handle.name)
        if job is not None and job.cancelled_at is None:
            job.cancelled_at = self.w.clock.now()

    def find(self, job_name: str, spec: TrialSpec) -> JobHandle | None:
        return JobHandle(self.name, job_name, job_name) if job_name in self.w.jobs else None


class _Trainer:
    name = "replay"

    def __init__(self, world: ReplayWorld) -> None:
        self.w = world

    def reference(self) -> dict[str, Any]:
        return {}

    def render(
        self, params: TrialParams, layout: Layout, work_dir: Path, *, resume: bool, name: str
    ) -> TrialSpec:
        self.w.params[str(work_dir)] = params
        return TrialSpec(name=name, work_dir=str(work_dir), argv=("replay",), layout=layout)

    def read_metrics(self, work_dir: Path) -> TrialMetrics:
        job = next((j for j in self.w.jobs.values() if j.work_dir == str(work_dir)), None)
        if job is None:
            return TrialMetrics()
        done = self.w.epochs_done(job)
        epochs = {
            e: {"NDS": float(job.curve.nds[e - 1]), "mAP": float(job.curve.map[e - 1])}
            for e in range(1, done + 1)
        }
        return TrialMetrics(epochs=epochs)

    def has_checkpoint(self, work_dir: Path) -> bool:
        return False


def replay_controller(world: ReplayWorld, plan: Any, sweep_dir: Path, poll_s: float) -> Any:
    """scaleout's real controller over `world`: an in-memory Optuna study with the plan's
    pruner, the plan's searcher with its seed trials queued, no tracking."""
    import optuna

    from scaleout.sweep.controller import Controller
    from scaleout.sweep.search import OptunaSearcher
    from scaleout.sweep.study import make_pruner
    from scaleout.sweep.tracking import NullTracker

    study = optuna.create_study(direction="maximize", pruner=make_pruner(plan))
    searcher = OptunaSearcher(study, plan)
    searcher.enqueue(plan.seeds[: plan.trials])
    return Controller(
        searcher=searcher,
        plan=plan,
        trainer=world.trainer,
        executor=world.executor,
        tracker=NullTracker(),
        sweep_name=sweep_dir.name,
        sweep_dir=sweep_dir,
        parent_run_id="",
        parallel=world.slots,
        clock=world.clock,
        poll_interval_s=poll_s,
    )
