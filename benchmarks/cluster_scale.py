"""The controller at cluster scale, on simulated time (issue 14, part 4).

A 1,280-GPU cluster (8 slots of one 160-GPU trial each) runs a 200-trial sweep of the shipped
lr_scaling.yaml through the real controller, searcher, sampler and pruner, with the tabulated
minibev blackbox (benchmarks/blackbox.py) replayed by benchmarks/replay.py: a trial starts
`--launch-s` after it is submitted (queueing, container start, NCCL init), then reports one
epoch every `--epoch-s` seconds. The controller polls at the shipped interval (`scaleout sweep
--poll-interval`, 2 s) on the simulated clock, so the sweep's ~75 simulated hours take seconds.

    python benchmarks/cluster_scale.py [--trials 200] [--slots 8] [--launch-s 60] [--json]

Reported, all on simulated time except the CPU figure:
- GPU idle share: 1 - busy / (slots x GPUs x span). `span` is the full phase, from the first
  submit to the last (while the budget still allowed launches: after that, free slots are the
  sweep ending, not the controller's doing); the share is split into launch
  latency (a submitted job not yet training, the cluster's cost) and empty slots (no job: the
  controller's cost).
- Slot-refill delay: from a trial's end (success, or the cancel of a pruned trial) to the next
  submit, per refill.
- Controller CPU seconds per trial: `time.process_time()` over the whole run divided by trials
  (this machine's CPU, measured; includes TPE's ask and the pruner).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))

from blackbox import TABLE, Blackbox
from replay import ReplayWorld, replay_controller

from scaleout.core.plan import make_plan
from scaleout.core.space import load_space, parse_space
from scaleout.sweep.session import build_plan

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "search_spaces" / "lr_scaling.yaml"
GPUS = 160


def run(
    trials: int,
    slots: int,
    launch_s: float,
    epoch_s: float,
    poll_s: float,
    table: Path,
    partial: bool = False,
) -> dict[str, Any]:
    bb = Blackbox.load(table, partial=partial)
    reference_plan, _, _ = build_plan(SHIPPED, GPUS)
    data = load_space(SHIPPED).model_dump(exclude_none=True)
    data["budget"] = {"trials": trials}
    plan = make_plan(
        parse_space(data, SHIPPED),
        reference_plan.reference,
        GPUS,
        reference_sources=reference_plan.reference_sources,
        space_path=SHIPPED,
    )
    world = ReplayWorld(
        bb,
        slots=slots,
        gpus=GPUS,
        epoch_s=epoch_s,
        launch_s=launch_s,
        launch_jitter_s=launch_s / 4,
        seed=0,
    )
    controller = replay_controller(
        world, plan, Path(tempfile.mkdtemp(prefix="cluster-scale-")), poll_s
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    reason = controller.run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0

    def end_of(j: Any) -> float:
        finish = j.submitted + j.launch_s + world.epochs * epoch_s
        return finish if j.cancelled_at is None else min(j.cancelled_at, finish)

    jobs = sorted(world.jobs.values(), key=lambda j: j.submitted)
    starts = [j.submitted for j in jobs]
    ends = sorted(end_of(j) for j in jobs)
    last_launch = starts[-1]
    # The full phase ends at the last submit: until then the budget allowed launches, so a
    # free slot was the controller's doing; after it, slots empty because the sweep ends.
    full_end = last_launch
    span = full_end - starts[0]
    busy = launching = 0.0
    for j in jobs:
        lo, hi = j.submitted, min(end_of(j), full_end)
        if hi <= lo:
            continue
        train_lo = min(lo + j.launch_s, hi)
        launching += (train_lo - lo) * GPUS
        busy += (hi - train_lo) * GPUS
    capacity = slots * GPUS * span
    empty = capacity - busy - launching
    # Refill: each end inside the full phase is followed by the next submit.
    delays = []
    for e in ends:
        if e > last_launch:
            break
        nxt = next((s for s in starts if s >= e - 1e-9), None)
        if nxt is not None:
            delays.append(nxt - e)
    finished = sum(1 for j in jobs if j.cancelled_at is None)
    return {
        "trials": len(jobs),
        "completed": finished,
        "stopped_early": len(jobs) - finished,
        "stop_reason": reason,
        "slots": slots,
        "gpus_per_trial": GPUS,
        "launch_latency_s": launch_s,
        "epoch_s": epoch_s,
        "poll_interval_s": poll_s,
        "simulated_hours": world.clock.now() / 3600,
        "full_phase_hours": span / 3600,
        "gpu_idle_share": 1 - busy / capacity,
        "gpu_idle_share_launch_latency": launching / capacity,
        "gpu_idle_share_empty_slots": empty / capacity,
        "refill_delay_s": {
            "median": statistics.median(delays) if delays else None,
            "max": max(delays) if delays else None,
            "refills": len(delays),
        },
        "controller_cpu_s_per_trial": cpu / len(jobs),
        "controller_cpu_s": cpu,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--slots", type=int, default=8, help="160-GPU trials at once (default 8)")
    ap.add_argument("--launch-s", type=float, default=60.0, help="submit to first iteration")
    ap.add_argument(
        "--epoch-s",
        type=float,
        default=450.0,
        help="simulated seconds per epoch (default 450: BEVFormer-base's ~3 h for 24 epochs "
        "at 160 GPUs)",
    )
    ap.add_argument("--poll-interval", type=float, default=2.0, help="the shipped 2 s")
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--partial", action="store_true", help="accept an unfinished table")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = run(
        args.trials,
        args.slots,
        args.launch_s,
        args.epoch_s,
        args.poll_interval,
        args.table,
        args.partial,
    )
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    r = out["refill_delay_s"]
    print(
        f"{out['trials']} trials ({out['stopped_early']} stopped early) on {out['slots']} x "
        f"{out['gpus_per_trial']} GPUs, {out['simulated_hours']:.1f} simulated hours\n"
        f"GPU idle {out['gpu_idle_share']:.2%} of GPU time in the full phase "
        f"({out['gpu_idle_share_launch_latency']:.2%} launch latency, "
        f"{out['gpu_idle_share_empty_slots']:.2%} empty slots)\n"
        f"slot refill: median {r['median']:.1f} s, max {r['max']:.1f} s over {r['refills']} "
        f"refills (simulated)\n"
        f"controller CPU {out['controller_cpu_s_per_trial'] * 1e3:.0f} ms per trial on this "
        f"machine ({out['controller_cpu_s']:.1f} s in all, {out['wall_s']:.1f} s wall)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
