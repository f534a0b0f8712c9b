"""The controller's loop with a fake clock and an in-process executor: no sleeps, no
subprocesses. The Optuna storage is real (SQLite in tmp_path); MLflow is the NullTracker here
and real in tests/test_sweep_e2e.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from scaleout.core.errors import UsageError
from scaleout.core.job import (
    Capacity,
    JobHandle,
    JobState,
    JobStatus,
    Layout,
    TrialMetrics,
    TrialSpec,
)
from scaleout.core.placement import layout_for
from scaleout.core.plan import Evaluation, make_plan
from scaleout.core.space import parse_space
from scaleout.sweep.controller import Controller
from scaleout.sweep.search import Attr, OptunaSearcher, same_point
from scaleout.sweep.study import create_or_load
from scaleout.sweep.tracking import NullTracker


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@dataclass
class Job:
    spec: TrialSpec
    name: str
    start: float  # when it starts running (after its queue time)
    lr: float
    start_epoch: int = 0
    cancelled: bool = False
    fail_at_epoch: int | None = None
    lost: bool = False
    ended: float | None = None
    epochs: int | None = None  # the trial's own length, where the plan varies it


@dataclass
class World:
    """What the fake 'cluster' holds: jobs survive a controller, like real ones."""

    clock: FakeClock
    epochs: int = 4
    epoch_s: float = 10.0
    jobs: dict[str, Job] = field(default_factory=dict)
    checkpoints: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # job name -> epoch it dies at
    # job name -> epoch it dies at after that epoch's checkpoint, before its validation
    unvalidated: dict[str, int] = field(default_factory=dict)
    queue_s: float = 0.0  # each job waits this long in the queue before it runs
    own_times: bool = False  # the executor reports each job's own start and end
    real_gpus: bool = False  # trials run on real GPUs (billed by run time), not virtual ones

    def nds(self, lr: float, epoch: int) -> float:
        # Best near lr = 1e-3, improving with epochs: a smooth, deterministic landscape.
        return round(0.5 * epoch / self.epochs * math.exp(-((math.log10(lr) + 3) ** 2)), 6)

    def advance(self, job: Job) -> JobState:
        wd = job.spec.work_dir
        if job.cancelled:
            return JobState.CANCELLED
        if self.clock.t < job.start:
            return JobState.PENDING
        total = job.epochs or self.epochs
        done = min(total, job.start_epoch + int((self.clock.t - job.start) // self.epoch_s))
        cut = self.unvalidated.get(job.name)
        stop = cut if cut is not None else self.failures.get(job.name)
        if stop is not None and done >= stop:
            done = stop
        for e in range(job.start_epoch + 1, done + 1):
            self.checkpoints[wd] = e
            if e != cut:
                self.metrics.setdefault(wd, {})[e] = {"NDS": self.nds(job.lr, e), "mAP": 0.1}
        if stop is not None and done >= stop:
            job.ended = job.start + (stop - job.start_epoch) * self.epoch_s
            return JobState.FAILED
        if done >= total:
            job.ended = job.start + (total - job.start_epoch) * self.epoch_s
            return JobState.SUCCEEDED
        return JobState.RUNNING


class FakeExecutor:
    name = "fake"

    def __init__(self, world: World, slots: int = 2) -> None:
        self.world = world
        self.slots = slots
        self.cancelled: list[str] = []

    def capacity(self) -> Capacity:
        if self.world.real_gpus:  # room for `slots` trials of 160 GPUs at once
            return Capacity(nodes=1, gpus_per_node=160 * self.slots, slots=self.slots)
        return Capacity(nodes=1, gpus_per_node=0, slots=self.slots, virtual=True)

    def submit(self, spec: TrialSpec, job_name: str) -> JobHandle:
        lr = float(spec.argv[1])
        epochs = int(spec.argv[2]) if len(spec.argv) > 2 else None
        start_epoch = self.world.checkpoints.get(spec.work_dir, 0) if spec.resume else 0
        start = self.world.clock.t + self.world.queue_s
        self.world.jobs[job_name] = Job(spec, job_name, start, lr, start_epoch, epochs=epochs)
        return JobHandle("fake", job_name, job_name)

    def poll(self, handles):
        out = {}
        for h in handles:
            job = self.world.jobs.get(h.name)
            if job is None or job.lost:
                out[h.name] = JobStatus(JobState.NOT_FOUND, reason="lost")
            else:
                state = self.world.advance(job)
                ran = self.world.own_times and state != JobState.PENDING
                out[h.name] = JobStatus(
                    state,
                    1 if state == JobState.FAILED else 0,
                    "crashed" if state == JobState.FAILED else "",
                    started_at=job.start if ran else None,
                    ended_at=job.ended if self.world.own_times else None,
                )
        return out

    def cancel(self, handle: JobHandle) -> None:
        self.cancelled.append(handle.name)
        self.world.jobs[handle.name].cancelled = True

    def find(self, job_name, spec):
        return JobHandle("fake", job_name, job_name) if job_name in self.world.jobs else None


class FakeTrainer:
    name = "fake"

    def __init__(self, world: World) -> None:
        self.world = world

    def reference(self):
        return {}

    def render(self, params, layout, work_dir, *, resume, name):
        return TrialSpec(
            name=name,
            work_dir=str(work_dir),
            argv=("train", repr(params["lr"]))
            + ((str(params["epochs"]),) if params.get("epochs") else ()),
            layout=layout,
            resume=resume,
        )

    def read_metrics(self, work_dir: Path) -> TrialMetrics:
        return TrialMetrics(epochs=dict(self.world.metrics.get(str(work_dir), {})))

    def has_checkpoint(self, work_dir: Path) -> bool:
        return self.world.checkpoints.get(str(work_dir), 0) > 0


def open_searcher(tmp_path, name, plan):
    """The session's way in: the study, its searcher, the seeds queued."""
    searcher = OptunaSearcher(
        create_or_load(f"sqlite:///{tmp_path / 'study.db'}", name, plan), plan
    )
    searcher.enqueue(plan.seeds[: plan.trials])
    return searcher


@pytest.fixture
def world():
    return World(FakeClock())


def make(
    tmp_path,
    world,
    *,
    trials=6,
    pruner=None,
    slots=2,
    attempts=2,
    study_name="s",
    poll_s=5.0,
    search=None,
):
    from scaleout.core.rules import Reference

    ref = Reference(
        gpus=8,
        samples_per_gpu=1,
        lr=2e-4,
        warmup_iters=500,
        warmup_ratio=1 / 3,
        min_lr_ratio=1e-3,
        epochs=world.epochs,
        train_samples=28130,
    )
    space = parse_space(
        {
            "budget": {"trials": trials},
            "retries": {"max_attempts": attempts},
            "pruner": pruner or {"type": "none"},
            "sampler": {"seed": 1},
            "search": search or {},
        }
    )
    plan = make_plan(space, ref, 160)
    searcher = open_searcher(tmp_path, study_name, plan)
    executor = FakeExecutor(world, slots)
    events = []
    c = Controller(
        searcher=searcher,
        plan=plan,
        trainer=FakeTrainer(world),
        executor=executor,
        tracker=NullTracker(),
        sweep_name="s",
        sweep_dir=tmp_path,
        parent_run_id="p",
        parallel=slots,
        clock=world.clock,
        poll_interval_s=poll_s,
        on_event=events.append,
    )
    c.tracker.start_sweep("s", "u", {}, {})
    return c, executor, events


def test_runs_seeds_first_then_samples_until_the_budget(tmp_path, world):
    c, ex, events = make(tmp_path, world, trials=5)
    assert c.run() == "budget spent"
    trials = c.searcher.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert [t.user_attrs[Attr.ORIGIN] for t in trials] == [
        "reference",
        "sqrt",
        "linear",
        "sampled",
        "sampled",
    ]
    assert trials[0].user_attrs[Attr.PARAMS]["lr"] == 2e-4
    # the objective is the last epoch's NDS
    lr = trials[1].user_attrs[Attr.PARAMS]["lr"]
    assert trials[1].value == world.nds(lr, world.epochs)
    assert trials[1].intermediate_values == {e: world.nds(lr, e) for e in range(1, 5)}


def test_never_more_jobs_than_slots(tmp_path, world):
    c, ex, _ = make(tmp_path, world, trials=6, slots=2)
    c.reconcile()
    peak = 0
    while not c.step():
        peak = max(peak, len(c.active))
        world.clock.sleep(5)
    assert peak == 2
    assert len(world.jobs) == 6


def test_sampled_min_lr_is_capped_at_the_reference_floor(tmp_path, world):
    c, _, _ = make(tmp_path, world, trials=8)
    c.run()
    for t in c.searcher.study.get_trials():
        p = t.user_attrs[Attr.PARAMS]
        if t.user_attrs[Attr.ORIGIN] == "sampled":
            assert p["lr"] * p["min_lr_ratio"] <= 2e-7 * (1 + 1e-9)
            assert p["min_lr_ratio"] <= t.params["min_lr_ratio"]


def test_crash_is_retried_from_checkpoint_with_lineage(tmp_path, world):
    c, ex, events = make(tmp_path, world, trials=1)
    world.failures["s-t000-a1"] = 2  # the first attempt dies after epoch 2
    assert c.run() == "budget spent"
    t = c.searcher.study.get_trials()[0]
    assert t.state == TrialState.COMPLETE
    lineage = t.user_attrs[Attr.ATTEMPTS]
    assert [a["attempt"] for a in lineage] == [1, 2]
    assert lineage[0]["state"] == "failed" and lineage[0]["reason"] == "crashed"
    assert lineage[1]["resumed_from_checkpoint"] is True
    assert world.jobs["s-t000-a2"].start_epoch == 2  # continued, not restarted
    assert t.user_attrs[Attr.RESULT]["attempts"] == 2
    assert any(
        e.kind == "failed" and "retrying from its last checkpoint" in e.message for e in events
    )


def test_a_controller_killed_while_retrying_still_runs_the_retry(tmp_path, world):
    c, ex, _ = make(tmp_path, world, trials=1, attempts=2)
    world.failures["s-t000-a1"] = 1

    def killed_at_the_retry(spec, name):
        if name.endswith("-a2"):
            raise KeyboardInterrupt  # the controller dies after storing attempt 2, before its job
        return FakeExecutor.submit(ex, spec, name)

    ex.submit = killed_at_the_retry
    with pytest.raises(KeyboardInterrupt):
        c.run()
    c2, _, _ = make(tmp_path, world, trials=1, attempts=2)
    assert c2.run() == "budget spent"
    t = c2.searcher.study.get_trials()[0]
    # Not failed by re-attaching to attempt 1's dead job as if it were attempt 2's.
    assert t.state == TrialState.COMPLETE
    assert [a["attempt"] for a in t.user_attrs[Attr.ATTEMPTS]] == [1, 2]


def test_fails_after_max_attempts_and_keeps_going(tmp_path, world):
    c, ex, events = make(tmp_path, world, trials=2, attempts=2)
    world.failures["s-t000-a1"] = 1
    world.failures["s-t000-a2"] = 1
    c.run()
    states = [t.state for t in c.searcher.study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]
    failure = c.searcher.study.get_trials()[0].user_attrs[Attr.FAILURE]
    assert "attempt 2 of 2 failed" in failure["reason"]
    assert c.tracker.runs["trial-0"]["status"] == "FAILED"


def test_pruning_cancels_the_job(tmp_path, world):
    # A median pruner after 3 complete trials prunes a poor trial at its first epoch.
    c, ex, events = make(
        tmp_path,
        world,
        trials=8,
        slots=1,
        pruner={"type": "median", "options": {"n_startup_trials": 3, "n_warmup_steps": 0}},
    )
    c.run()
    pruned = [t for t in c.searcher.study.get_trials() if t.state == TrialState.PRUNED]
    assert pruned, "a trial below the median should have been pruned"
    for t in pruned:
        name = f"s-t{t.number:03d}-a1"
        assert name in ex.cancelled
        run = c.tracker.runs[f"trial-{t.number}"]  # ended as planned: not drawn as a failure
        assert run["status"] == "FINISHED" and run["tags"]["state"] == "PRUNED"


def test_resume_reattaches_running_jobs_and_does_not_rerun_finished(tmp_path, world):
    c, ex, _ = make(tmp_path, world, trials=4)
    c.reconcile()
    for _ in range(3):  # t000, t001 finish at 40 s; t002, t003 start then
        c.step()
        world.clock.sleep(20)
    before = dict(world.jobs)
    assert len(before) == 4
    # The controller dies here; a new one opens the same study.
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    c2 = Controller(
        searcher=OptunaSearcher(study, c.plan),
        plan=c.plan,
        trainer=c.trainer,
        executor=FakeExecutor(world),
        tracker=c.tracker,
        sweep_name="s",
        sweep_dir=tmp_path,
        parent_run_id="p",
        parallel=2,
        clock=world.clock,
        poll_interval_s=5.0,
    )
    assert c2.run() == "budget spent"
    assert set(world.jobs) == set(before)  # nothing resubmitted
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 4
    # epochs reported once each
    for n in range(4):
        assert all(len(v) == 1 for v in c.tracker.runs[f"trial-{n}"]["epochs"].values())


def test_resume_launches_a_trial_whose_controller_died_before_submitting(tmp_path, world):
    c, ex, _ = make(tmp_path, world, trials=1)
    asked = c.searcher.ask()  # asked, nothing stored: the controller died right here
    assert asked.number == 0
    c2, _, _ = make(tmp_path, world, trials=1)
    assert c2.run() == "budget spent"
    assert list(world.jobs) == ["s-t000-a1"]
    assert c2.searcher.study.get_trials()[0].state == TrialState.COMPLETE


def test_lost_job_on_resume_resumes_from_checkpoint(tmp_path, world):
    c, ex, _ = make(tmp_path, world, trials=1)
    c.reconcile()
    c.step()
    world.clock.sleep(25)
    c.step()  # epochs 1-2 done, checkpoint at 2
    world.jobs["s-t000-a1"].lost = True  # the machine rebooted: the process is gone
    c2, _, _ = make(tmp_path, world, trials=1)
    c2.run()
    t = c2.searcher.study.get_trials()[0]
    assert t.state == TrialState.COMPLETE
    assert world.jobs["s-t000-a2"].start_epoch == 2


def test_stop_request_leaves_jobs_running(tmp_path, world):
    c, ex, _ = make(tmp_path, world, trials=4)
    c.reconcile()
    c.step()
    c.stop_requested = True
    assert c.step() == "stopped"
    assert ex.cancelled == []
    assert len(c.active) == 2


@pytest.mark.parametrize(
    ("gpus", "cap", "expected"),
    [
        (16, Capacity(4, 8, 4), Layout(2, 8, 16, True)),
        (8, Capacity(4, 8, 4), Layout(1, 8, 8, True)),
        (4, Capacity(4, 8, 8), Layout(1, 4, 4, True)),
        (160, Capacity(1, 0, 2, virtual=True), Layout(1, 1, 160, False)),
        (160, Capacity(1, 8, 1, virtual=True), Layout(1, 8, 160, True)),
        (160, Capacity(1, 8, 2, virtual=True), Layout(1, 4, 160, True)),
        (24, Capacity(1, 0, 1, virtual=True), Layout(1, 2, 24, False)),  # procs_per_trial 2
        # procs_per_node: fewer processes than GPUs on whole nodes (fake-GPU test clusters)
        (16, Capacity(4, 8, 4, procs_per_node=1), Layout(2, 1, 16, False)),
        (160, Capacity(20, 8, 20, procs_per_node=2), Layout(20, 2, 160, False)),
        (8, Capacity(4, 8, 4, procs_per_node=1), Layout(1, 1, 8, False)),
        (6, Capacity(4, 8, 4, procs_per_node=4), Layout(1, 3, 6, False)),
        (16, Capacity(4, 8, 4, procs_per_node=8), Layout(2, 8, 16, True)),
    ],
)
def test_layout(gpus, cap, expected):
    procs = 2 if gpus == 24 else 1
    assert layout_for(gpus, cap, cap.slots, procs) == expected


@pytest.mark.parametrize(
    ("gpus", "cap", "words"),
    [
        (12, Capacity(4, 8, 4), "does not fill whole nodes of 8 GPUs"),
        (40, Capacity(4, 8, 4), "does not fit this cluster (4 nodes x 8 GPUs = 32)"),
        (12, Capacity(4, 8, 4, procs_per_node=1), "does not fill whole nodes of 8 GPUs"),
        (48, Capacity(4, 8, 4, procs_per_node=1), "(4 nodes x 8 GPUs = 32)"),
        (
            24,
            Capacity(4, 8, 4, max_nodes_per_job=2, where="Slurm partition 'p'"),
            "needs 3 nodes of 8 GPUs, but Slurm partition 'p' allows at most 2 node(s) per job",
        ),
    ],
)
def test_layout_refusals(gpus, cap, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        layout_for(gpus, cap, 1)


def make_with(tmp_path, world, space_extra: dict, trials: int = 6, wall_time_h: float = 44.4):
    from scaleout.core.rules import Reference

    ref = Reference(
        gpus=8,
        samples_per_gpu=1,
        lr=2e-4,
        warmup_iters=500,
        warmup_ratio=1 / 3,
        min_lr_ratio=1e-3,
        epochs=world.epochs,
        train_samples=28130,
        wall_time_h=wall_time_h,
    )
    plan = make_plan(parse_space({"budget": {"trials": trials}, **space_extra}), ref, 160)
    return Controller(
        searcher=open_searcher(tmp_path, "s", plan),
        plan=plan,
        trainer=FakeTrainer(world),
        executor=FakeExecutor(world, 2),
        tracker=NullTracker(),
        sweep_name="s",
        sweep_dir=tmp_path,
        parent_run_id="p",
        parallel=2,
        clock=world.clock,
        poll_interval_s=5.0,
    )


@pytest.mark.parametrize(
    "sampler",
    [
        {"type": "tpe"},
        {"type": "random"},
        {"type": "qmc"},
        {"type": "cmaes"},
        {"type": "gp", "options": {"n_startup_trials": 4}},
        {"type": "grid", "options": {"points": 2}},
    ],
)
def test_every_sampler_drives_a_sweep(tmp_path, world, sampler):
    c = make_with(tmp_path, world, {"sampler": sampler})
    assert c.run() == "budget spent"
    trials = c.searcher.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    sampled = [t.params["lr"] for t in trials if t.user_attrs[Attr.ORIGIN] == "sampled"]
    lr_range = c.plan.ranges["lr"]
    assert sampled and all(lr_range.low <= v <= lr_range.high for v in sampled)


@pytest.mark.parametrize("pruner", ["median", "asha", "hyperband"])
def test_every_pruner_prunes_poor_trials(tmp_path, world, pruner):
    world.epochs = 8
    opts = {
        "median": {"n_startup_trials": 2, "n_warmup_steps": 0},
        "asha": {"min_resource": 1, "reduction_factor": 2},
        "hyperband": {"min_resource": 1, "reduction_factor": 2},
    }[pruner]
    c = make_with(
        tmp_path,
        world,
        {"pruner": {"type": pruner, "options": opts}, "sampler": {"type": "random", "seed": 3}},
        trials=12,
    )
    c.run()
    states = [t.state for t in c.searcher.study.get_trials()]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert len(states) == 12


def test_gpu_hour_budget_stops_launching(tmp_path, world):
    # The plan estimates 0.8 GPU-hours a trial (0.1 h x 8 GPUs), so a 4 GPU-hour budget plans
    # 5 trials; on real GPUs the fake trials really take 40 s x 160 GPUs = 1.8 GPU-hours each,
    # and the controller stops launching once the hours are spent, before the 5th.
    world.real_gpus = True
    c = make_with(
        tmp_path, world, {"budget": {"trials": 10, "gpu_hours": 4}}, trials=10, wall_time_h=0.1
    )
    assert c.plan.trials == 5
    c.run()
    done = [t for t in c.searcher.study.get_trials() if t.state.is_finished()]
    assert 2 <= len(done) <= 4
    assert c.gpu_hours_used() >= 4.0
    for t in done:
        assert t.user_attrs[Attr.RESULT]["gpu_hours"] == pytest.approx(40 * 160 / 3600, rel=0.2)


def test_a_gpu_hour_budget_on_virtual_gpus_counts_the_plans_estimate(tmp_path, world):
    # Virtual GPUs: 160 x the CPU time is no GPU-hour figure; each full trial counts the
    # plan's 0.8 GPU-hours, so the 4 GPU-hour budget buys exactly the 5 trials it planned.
    c = make_with(
        tmp_path, world, {"budget": {"trials": 10, "gpu_hours": 4}}, trials=10, wall_time_h=0.1
    )
    c.run()
    done = [t for t in c.searcher.study.get_trials() if t.state.is_finished()]
    assert len(done) == 5 and c.gpu_hours_used() == pytest.approx(4.0)
    for t in done:
        res = t.user_attrs[Attr.RESULT]
        assert res["gpu_hours"] == pytest.approx(0.8) and res["gpu_hours_basis"] == "estimated"
        assert res["trial_equivalents"] == 1.0 and res["compute_unit_here"] == "CPU-hours"


def test_fixed_seed_epochs_and_warmup_ratio_reach_the_trainer(tmp_path, world):
    rendered = []

    class Recording(FakeTrainer):
        def render(self, params, layout, work_dir, *, resume, name):
            rendered.append(params)
            return super().render(params, layout, work_dir, resume=resume, name=name)

    c = make_with(
        tmp_path,
        world,
        {"search": {"fixed": {"seed": 3, "epochs": 4, "warmup_ratio": 0.5, "wd": 0.05}}},
        trials=1,
    )
    c.trainer = Recording(world)
    c.run()
    (p,) = rendered
    assert (p["seed"], p["epochs"], p["warmup_ratio"], p["wd"]) == (3, 4, 0.5, 0.05)


# -- GPU time is priced from each job's own run time (docs/sweep.md, "The budget") ---------
def _half_hour_jobs(world):
    world.epoch_s = 450.0  # 4 epochs: each job runs 0.5 h
    world.real_gpus = True


def test_queue_time_is_not_billed(tmp_path, world):
    # Queued 1 h, ran 0.5 h on 160 GPUs: 80 GPU-hours, not the 240 of pricing from submission.
    _half_hour_jobs(world)
    world.queue_s, world.own_times = 3600.0, True
    c, _, _ = make(tmp_path, world, trials=1, poll_s=60.0)
    assert c.run() == "budget spent"
    t = c.searcher.study.get_trials()[0]
    assert t.state == TrialState.COMPLETE
    assert t.user_attrs[Attr.RESULT]["gpu_hours"] == pytest.approx(80.0)
    (attempt,) = t.user_attrs[Attr.ATTEMPTS]
    assert attempt["gpu_hours"] == pytest.approx(80.0)
    assert attempt["start_clock"] == "job"
    assert attempt["started_at"] == pytest.approx(attempt["submitted"] + 3600.0)
    assert c.gpu_hours_used() == pytest.approx(80.0)


def test_without_the_jobs_own_times_billing_starts_when_seen_running(tmp_path, world):
    _half_hour_jobs(world)
    world.queue_s = 3600.0  # the executor says nothing of start and end
    c, _, _ = make(tmp_path, world, trials=1, poll_s=60.0)
    c.run()
    t = c.searcher.study.get_trials()[0]
    (attempt,) = t.user_attrs[Attr.ATTEMPTS]
    assert attempt["start_clock"] == "controller"
    # Within one poll (60 s x 160 GPUs = 2.7 GPU-hours) of the true 80.
    assert t.user_attrs[Attr.RESULT]["gpu_hours"] == pytest.approx(80.0, abs=160 * 60 / 3600)


def test_controller_downtime_is_not_billed(tmp_path, world):
    # The job runs 0.5 h; the controller dies after 10 min and is back an hour later.
    _half_hour_jobs(world)
    world.own_times = True
    c, _, _ = make(tmp_path, world, trials=1, poll_s=60.0)
    c.reconcile()
    for _ in range(10):
        c.step()
        world.clock.sleep(60)
    world.clock.sleep(3600)
    c2, _, _ = make(tmp_path, world, trials=1, poll_s=60.0)
    assert c2.run() == "budget spent"
    t = c2.searcher.study.get_trials()[0]
    assert t.state == TrialState.COMPLETE
    assert t.user_attrs[Attr.RESULT]["gpu_hours"] == pytest.approx(80.0)


def test_downtime_without_the_jobs_own_times_bills_to_the_last_sighting(tmp_path, world):
    _half_hour_jobs(world)
    c, _, _ = make(tmp_path, world, trials=1, poll_s=60.0)
    c.reconcile()
    for _ in range(17):  # to 960 s: epoch 2 (at 900 s) reported
        c.step()
        world.clock.sleep(60)
    seen = c.searcher.study.get_trials()[0].user_attrs[Attr.SEEN_RUNNING]
    assert seen["attempt"] == 1
    world.clock.sleep(3600)  # the job ends 20 minutes into this hour, unwatched
    c2, _, _ = make(tmp_path, world, trials=1, poll_s=60.0)
    c2.run()
    hours = c2.searcher.study.get_trials()[0].user_attrs[Attr.RESULT]["gpu_hours"]
    # First seen running at the poll after submission (60 s), last at the epoch-2 report
    # (900 s): billed that stretch, a little short of the 0.5 h it ran, never the hour down.
    assert hours == pytest.approx(160 * (900 - 60) / 3600)


def test_a_retried_trial_bills_each_attempt(tmp_path, world):
    world.own_times, world.real_gpus = True, True
    world.failures["s-t000-a1"] = 2  # attempt 1 runs 2 epochs, attempt 2 the other 2
    c, _, _ = make(tmp_path, world, trials=1)
    c.run()
    t = c.searcher.study.get_trials()[0]
    a1, a2 = t.user_attrs[Attr.ATTEMPTS]
    assert a1["gpu_hours"] == pytest.approx(20 * 160 / 3600)
    assert a2["gpu_hours"] == pytest.approx(20 * 160 / 3600)
    assert t.user_attrs[Attr.RESULT]["gpu_hours"] == pytest.approx(40 * 160 / 3600)


# -- a resumed sweep never re-runs a configuration (docs/sweep.md, "Resume") --------------
def _run_until_two_sampled_are_asked(tmp_path, world):
    """t000-t001 finished, t002-t003 running (t003 the first sampled), the sampler still in
    its random start-up phase: where a reseeded-alike sampler drew t003's point again."""
    c, _, _ = make(tmp_path, world, trials=8)
    c.reconcile()
    for _ in range(3):
        c.step()
        world.clock.sleep(20)
    assert [t.state for t in c.searcher.study.get_trials()].count(TrialState.RUNNING) == 2
    return c


def test_resumed_sampler_proposes_no_configuration_the_study_has(tmp_path, world):
    c = _run_until_two_sampled_are_asked(tmp_path, world)
    taken = [dict(t.params) for t in c.searcher.study.get_trials()]
    again = open_searcher(tmp_path, "s", c.plan)  # the controller died; a resume opens this
    asked = again.ask()
    assert asked.number == 4 and asked.origin == "sampled"
    assert not any(same_point(asked.params, p, again.dists) for p in taken), asked.params


def test_resumed_seeded_sweep_continues_deterministically(tmp_path):
    proposals = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        world = World(FakeClock())
        c = _run_until_two_sampled_are_asked(tmp_path / run, world)
        proposals.append(dict(open_searcher(tmp_path / run, "s", c.plan).ask().params))
    assert proposals[0] == proposals[1]


def test_resumed_sweep_finishes_with_distinct_configurations(tmp_path, world):
    _run_until_two_sampled_are_asked(tmp_path, world)
    c2, _, _ = make(tmp_path, world, trials=8)
    assert c2.run() == "budget spent"
    trials = c2.searcher.study.get_trials()
    assert len(trials) == 8
    for i, a in enumerate(trials):
        for b in trials[i + 1 :]:
            assert not same_point(a.params, b.params, c2.searcher.dists), (a.number, b.number)


def test_a_permanent_failure_is_not_retried_and_its_cause_is_said(tmp_path, world):
    from scaleout.trainers.base import Failure

    c, ex, events = make(tmp_path, world, trials=1, attempts=3)
    world.failures["s-t000-a1"] = 0
    cause = Failure(
        "ModuleNotFoundError: No module named 'mmcv'", "Traceback ...", 3, True, "import"
    )
    c.trainer.failure = lambda work_dir, log: cause
    c.run()
    (t,) = c.searcher.study.get_trials()
    assert t.state == TrialState.FAIL
    assert [a["attempt"] for a in t.user_attrs[Attr.ATTEMPTS]] == [1]  # not retried
    failure = t.user_attrs[Attr.FAILURE]
    assert failure["cause"] == cause.line and failure["permanent"] is True
    assert "rank 3: ModuleNotFoundError: No module named 'mmcv'" in failure["reason"]
    assert "not retried" in failure["reason"]
    assert "No module named 'mmcv'" in c.tracker.runs["trial-0"]["tags"]["reason"]
    assert any(e.kind == "failed" and "No module named 'mmcv'" in e.message for e in events)


# -- a controller killed between two writes (docs/sweep.md, "Resume, crashes and faults") ---
def test_a_controller_killed_between_logging_an_epoch_and_storing_it_logs_it_once(tmp_path, world):
    c, _, _ = make(tmp_path, world, trials=1)
    tracker, real = c.tracker, c.tracker.log_epochs

    def log_then_die(run_id, epochs):
        real(run_id, epochs)
        raise KeyboardInterrupt  # dies before Attr.LOGGED_EPOCH is stored

    tracker.log_epochs = log_then_die
    with pytest.raises(KeyboardInterrupt):
        c.run()
    tracker.log_epochs = real
    c2, _, _ = make(tmp_path, world, trials=1)
    c2.tracker = tracker  # the same MLflow store
    assert c2.run() == "budget spent"
    epochs = tracker.runs["trial-0"]["epochs"]
    assert {e: len(v) for e, v in epochs.items()} == {1: 1, 2: 1, 3: 1, 4: 1}
    (t,) = c2.searcher.study.get_trials()
    assert t.state == TrialState.COMPLETE and sorted(t.intermediate_values) == [1, 2, 3, 4]


@pytest.mark.parametrize("dies_in", ["finish_trial", "tell"])
def test_a_controller_killed_while_finishing_a_trial_finishes_it_on_resume(
    tmp_path, world, dies_in
):
    c, _, _ = make(tmp_path, world, trials=1)
    tracker = c.tracker
    target = tracker if dies_in == "finish_trial" else c.searcher
    real = getattr(target, dies_in)

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # dies with the trial's ending decided, not carried out

    setattr(target, dies_in, die)
    with pytest.raises(KeyboardInterrupt):
        c.run()
    setattr(target, dies_in, real)
    c2, _, _ = make(tmp_path, world, trials=1)
    c2.tracker = tracker
    assert c2.run() == "budget spent"
    (t,) = c2.searcher.study.get_trials()
    assert t.state == TrialState.COMPLETE
    run = tracker.runs["trial-0"]
    # Never COMPLETE in the study with its run still RUNNING: ended once, with its figures.
    assert run["status"] == "FINISHED" and run["finished"] == 1
    assert "wall_time_s" in run["final"] and run["tags"]["state"] == "COMPLETE"
    assert list(world.jobs) == ["s-t000-a1"]  # its finished job was not run again


def test_a_pruned_trial_whose_controller_died_before_the_cancel_is_cancelled_on_resume(
    tmp_path, world
):
    c, ex, _ = make(
        tmp_path,
        world,
        trials=8,
        slots=1,
        pruner={"type": "median", "options": {"n_startup_trials": 3, "n_warmup_steps": 0}},
    )

    def die(handle):
        raise KeyboardInterrupt  # the prune is decided and stored; the job still runs

    ex.cancel = die
    with pytest.raises(KeyboardInterrupt):
        c.run()
    (pruning,) = [
        t
        for t in c.searcher.study.get_trials(states=[TrialState.RUNNING])
        if Attr.ENDING in t.user_attrs
    ]
    assert pruning.user_attrs[Attr.ENDING]["state"] == "PRUNED"
    c2, ex2, _ = make(tmp_path, world, trials=8, slots=1, pruner=c.plan.space.pruner.model_dump())
    c2.tracker = c.tracker
    assert c2.run() == "budget spent"
    t = c2.searcher.study.get_trials()[pruning.number]
    assert t.state == TrialState.PRUNED
    assert ex2.cancelled[0] == f"s-t{t.number:03d}-a1"  # first thing on resume
    assert (
        c.tracker.runs[f"trial-{t.number}"]["status"] == "FINISHED"
    )  # a pruned run ends FINISHED, its state tag says PRUNED


def test_an_epoch_checkpointed_but_never_validated_is_reported(tmp_path, world):
    c, _, events = make(tmp_path, world, trials=1)
    c.plan = replace(c.plan, evaluation=Evaluation(1, "test: every epoch", epochs=(1, 2, 3, 4)))
    world.unvalidated["s-t000-a1"] = 2  # killed after epoch 2's checkpoint, before its NDS
    assert c.run() == "budget spent"
    (t,) = c.searcher.study.get_trials()
    assert t.state == TrialState.COMPLETE
    assert world.jobs["s-t000-a2"].start_epoch == 2  # resumed after the checkpointed epoch
    assert sorted(t.intermediate_values) == [1, 3, 4]
    assert t.user_attrs[Attr.UNVALIDATED] == [2]
    (gap,) = [e for e in events if e.kind == "gap"]
    assert "epoch 2 reported no NDS" in gap.message
    assert c.tracker.runs["trial-0"]["tags"][Attr.UNVALIDATED] == "2"


def test_where_epochs_vary_the_budget_counts_trial_equivalents(tmp_path, world):
    # Sampled trials run 6 or 7 epochs (1.5 or 1.75 trial-equivalents of the reference's 4);
    # the seeds run 4 (1 each). A budget of 6 buys the 3 seeds and 2 sampled trials: 5
    # trials, where counting trials would have started 6.
    c, _, _ = make(tmp_path, world, trials=6, slots=1, search={"epochs": {"range": [6, 7]}})
    assert c.budget.counts_cost
    assert c.run() == "budget spent"
    trials = c.searcher.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    epochs = [t.user_attrs[Attr.PARAMS]["epochs"] for t in trials]
    assert epochs[:3] == [4, 4, 4] and all(e in (6, 7) for e in epochs[3:])
    cost = [t.user_attrs[Attr.RESULT]["trial_equivalents"] for t in trials]
    assert cost == [e / 4 for e in epochs]  # each ran its own length in full
    assert sum(cost[:-1]) < 6 <= sum(cost)
    assert c.cost_used() == pytest.approx(sum(cost))
