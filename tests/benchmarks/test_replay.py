"""The replay executor (benchmarks/replay.py) on a synthetic blackbox, through the real
controller: epochs arrive on simulated time, a pruned trial stops for real, costs add up."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import optuna

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
# Loaded by path: benchmarks/ on sys.path would shadow packages (benchmarks/tabulate.py is not
# the `tabulate` torch imports).
_spec = importlib.util.spec_from_file_location("scaleout_bench_replay", BENCH / "replay.py")
_replay = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _replay  # dataclasses look their module up by name
_spec.loader.exec_module(_replay)
ReplayWorld = _replay.ReplayWorld

from scaleout.core.plan import make_plan  # noqa: E402
from scaleout.core.rules import Reference  # noqa: E402
from scaleout.core.space import parse_space  # noqa: E402
from scaleout.sweep.controller import Controller  # noqa: E402
from scaleout.sweep.search import OptunaSearcher  # noqa: E402
from scaleout.sweep.study import make_pruner  # noqa: E402
from scaleout.sweep.tracking import NullTracker  # noqa: E402

EPOCHS = 4


class Curve:
    def __init__(self, nds: list[float]) -> None:
        self.nds, self.map = nds, [x / 2 for x in nds]


class Synthetic:
    """NDS rises each epoch, higher for lr nearer 1e-2."""

    def curve(self, lr, warmup_iters, min_lr_ratio, rng=None):
        top = 0.4 - 0.05 * abs(math.log10(lr / 1e-2))
        return Curve([top * e / EPOCHS for e in range(1, EPOCHS + 1)])


def _controller(tmp_path, world, trials, pruner="none"):
    ref = Reference(8, 1, 2e-3, 10, 1 / 3, 1e-3, EPOCHS, 1600)
    space = parse_space({"budget": {"trials": trials}, "pruner": {"type": pruner}})
    plan = make_plan(space, ref, 160)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(plan))
    searcher = OptunaSearcher(study, plan)
    searcher.enqueue(plan.seeds)
    c = Controller(
        searcher=searcher,
        plan=plan,
        trainer=world.trainer,
        executor=world.executor,
        tracker=NullTracker(),
        sweep_name="r",
        sweep_dir=tmp_path,
        parent_run_id="",
        parallel=world.slots,
        clock=world.clock,
        poll_interval_s=30.0,
    )
    return c, study


def test_epochs_arrive_on_simulated_time_and_trials_complete(tmp_path):
    world = ReplayWorld(Synthetic(), slots=2, gpus=160, epoch_s=100.0, launch_s=60.0)
    c, study = _controller(tmp_path, world, trials=4)
    assert c.run() == "budget spent"
    done = study.get_trials()
    assert [t.state.name for t in done] == ["COMPLETE"] * 4
    # 4 trials, 2 at a time, each 60 s launch + 4 x 100 s: two waves of 460 s, polled every 30 s
    assert 920 <= world.clock.now() <= 920 + 2 * 30
    assert world.epochs_run() == 4 * EPOCHS
    busy, held = world.gpu_seconds()
    assert busy == 4 * EPOCHS * 100.0 * 160 and held == 4 * 460.0 * 160
    ref = next(t for t in done if t.user_attrs["origin"] == "reference")
    assert ref.value == Synthetic().curve(2e-3, 10, 1e-3).nds[-1]


def test_a_cancelled_job_stops_counting_epochs(tmp_path):
    world = ReplayWorld(Synthetic(), slots=1, gpus=160, epoch_s=100.0)
    spec_dir = str(tmp_path / "t")
    from scaleout.core.job import Layout, TrialParams

    world.trainer.render(
        TrialParams.of(160, 1, lr=1e-2, warmup_iters=5, min_lr_ratio=1e-3),
        Layout(1, 1, 160),
        Path(spec_dir),
        resume=False,
        name="t",
    )
    from scaleout.core.job import TrialSpec

    h = world.executor.submit(TrialSpec("t", spec_dir, ("x",), Layout(1, 1, 160)), "job")
    world.clock.sleep(250)
    world.executor.cancel(h)
    world.clock.sleep(1000)
    assert world.epochs_run() == 2
    assert world.executor.poll([h])["job"].state.name == "CANCELLED"
    assert sorted(world.trainer.read_metrics(Path(spec_dir)).epochs) == [1, 2]


def test_jittered_launch_latency_is_each_jobs_own(tmp_path):
    world = ReplayWorld(
        Synthetic(), slots=2, gpus=160, epoch_s=100.0, launch_s=60.0, launch_jitter_s=15.0
    )
    c, study = _controller(tmp_path, world, trials=6)
    assert c.run() == "budget spent"
    latencies = [j.launch_s for j in world.jobs.values()]
    assert all(45.0 <= x <= 75.0 for x in latencies) and len(set(latencies)) == 6
    busy, held = world.gpu_seconds()
    # Held GPU time is each job's own latency plus its epochs, not the nominal 60 s.
    assert busy == 6 * EPOCHS * 100.0 * 160
    assert held == sum((x + EPOCHS * 100.0) * 160 for x in latencies)
    assert all(t.state.name == "COMPLETE" for t in study.get_trials())
