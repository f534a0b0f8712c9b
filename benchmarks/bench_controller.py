"""Controller overhead per trial event, with an executor and trainer that cost nothing.

Every trial runs 4 epochs; each step the in-process executor advances each job one epoch.
What is left is the controller's own work: Optuna ask/tell and user attrs in SQLite,
pruner reports, tracker calls (MLflow: a local SQLite store, the default) and bookkeeping.

    python benchmarks/bench_controller.py [--trials 40] [--parallel 4] [--tracker mlflow|null]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from scaleout.core.job import Capacity, JobHandle, JobState, JobStatus, TrialMetrics, TrialSpec
from scaleout.core.plan import make_plan
from scaleout.core.rules import Reference
from scaleout.core.space import parse_space
from scaleout.sweep.controller import Controller
from scaleout.sweep.search import OptunaSearcher
from scaleout.sweep.study import create_or_load
from scaleout.sweep.tracking import MlflowTracker, NullTracker

EPOCHS = 4


class InstantExecutor:
    name = "instant"

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self.progress: dict[str, int] = {}
        self.specs: dict[str, TrialSpec] = {}

    def capacity(self) -> Capacity:
        return Capacity(1, 0, self.parallel, virtual=True)

    def submit(self, spec: TrialSpec, job_name: str) -> JobHandle:
        self.progress[spec.work_dir] = 0
        return JobHandle("instant", job_name, job_name)

    def poll(self, handles):
        out = {}
        for h in handles:
            wd = h.name
            out[h.name] = JobStatus(JobState.RUNNING)
            for k in self.progress:
                if k.endswith(h.name.split("-")[-2]):
                    self.progress[k] += 1
                    if self.progress[k] >= EPOCHS:
                        out[h.name] = JobStatus(JobState.SUCCEEDED, 0)
            del wd
        return out

    def cancel(self, handle) -> None:
        pass

    def find(self, name, spec):
        return None


class InstantTrainer:
    name = "instant"

    def __init__(self, ex: InstantExecutor) -> None:
        self.ex = ex

    def reference(self):
        return {}

    def render(self, params, layout, work_dir, *, resume, name):
        return TrialSpec(name=name, work_dir=str(work_dir), argv=("x",), layout=layout)

    def read_metrics(self, work_dir: Path) -> TrialMetrics:
        done = min(EPOCHS, self.ex.progress.get(str(work_dir), 0))
        return TrialMetrics(
            epochs={e: {"NDS": 0.1 * e, "mAP": 0.05 * e} for e in range(1, done + 1)}
        )

    def has_checkpoint(self, work_dir: Path) -> bool:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--tracker", choices=("mlflow", "null"), default="mlflow")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    ref = Reference(8, 1, 2e-4, 500, 1 / 3, 1e-3, EPOCHS, 28130)
    plan = make_plan(
        parse_space({"budget": {"trials": args.trials}, "pruner": {"type": "median"}}), ref, 160
    )
    searcher = OptunaSearcher(create_or_load(f"sqlite:///{tmp / 'study.db'}", "bench", plan), plan)
    searcher.enqueue(plan.seeds[: plan.trials])
    tracker = (
        MlflowTracker(f"sqlite:///{tmp / 'mlflow.db'}", (tmp / "art").as_uri())
        if args.tracker == "mlflow"
        else NullTracker()
    )
    parent = tracker.start_sweep("bench", "uid", {"k": 1}, {})
    ex = InstantExecutor(args.parallel)
    c = Controller(
        searcher=searcher,
        plan=plan,
        trainer=InstantTrainer(ex),
        executor=ex,
        tracker=tracker,
        sweep_name="bench",
        sweep_dir=tmp,
        parent_run_id=parent,
        parallel=args.parallel,
        poll_interval_s=0.0,
    )
    events = 0

    def count(e) -> None:
        nonlocal events
        events += 1

    c.on_event = count
    t0 = time.perf_counter()
    steps = 0
    c.reconcile()
    while not c.step():
        steps += 1
    dt = time.perf_counter() - t0
    print(
        f"tracker={args.tracker} trials={args.trials} parallel={args.parallel}: "
        f"{dt:.2f} s, {steps} steps, {events} events "
        f"(start, epoch report, finish) -> {1000 * dt / events:.1f} ms per event, "
        f"{1000 * dt / args.trials:.0f} ms per trial"
    )


if __name__ == "__main__":
    main()
