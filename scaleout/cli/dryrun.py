"""`scaleout sweep ... --dry-run`: the first trials exactly as they would run, nothing written.

The seed trials (within the budget) and one sampled trial are rendered by the trainer as the
controller renders them (same plan, layout, work dirs and names), then printed: the command
each node runs, the environment, the working directory, and every file the trial's work
dir would receive before launch (the trial's config override). A BEVFormer user reads the
command before spending 160 GPUs on it. Nothing is created: no workspace, study, MLflow
run or job.
"""

from __future__ import annotations

import argparse
import math
import random
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from scaleout.core.errors import ScaleoutError, UsageError
from scaleout.core.job import Capacity, Layout, TrialSpec
from scaleout.core.placement import layout_for
from scaleout.core.plan import Plan, make_plan

# Up to this many nodes every node's command is printed; beyond, the first two and the last.
ALL_NODES_UP_TO = 4
ASSUMED_GPUS_PER_NODE = 8


@dataclass(frozen=True)
class DryTrial:
    number: int
    origin: str
    params: dict[str, Any]
    job: str
    spec: TrialSpec


def run_dry(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Render and print; return the exit code. `args` are `scaleout sweep`'s."""
    out = out or sys.stdout
    if args.resume or args.space is None or args.gpus is None:
        raise UsageError("--dry-run shows a new sweep's first trials: give --gpus and --space")
    from scaleout.cli.commands.common import trainer_flags
    from scaleout.cli.commands.sweep import executor_options
    from scaleout.sweep.session import build_plan
    from scaleout.sweep.workspace import Sweep, check_name, default_name, workspace_root

    flags = {k: v for k, v in trainer_flags(args).items() if v is not None}
    plan, trainer, choice = build_plan(
        args.space,
        args.gpus,
        samples_per_gpu=args.samples_per_gpu,
        trainer_flags=flags,
        need_trainer=True,
    )
    # The plan with what the trainer's config says (conflicts, evaluation), as a sweep gets it.
    plan = make_plan(
        plan.space,
        plan.reference,
        plan.gpus,
        samples_per_gpu=plan.samples_per_gpu,
        reference_sources=plan.reference_sources,
        space_path=plan.space_path,
        trainer_values=trainer.reference(),
        trainer=choice,
    )
    if args.trials is not None:
        plan = replace(plan, trials=int(args.trials))
    name = check_name(args.name or default_name(args.space, args.gpus))
    sweep = Sweep(workspace_root(args.workspace), name)
    options = executor_options(args)
    layout, where = _layout(plan, args.executor, options, args.parallel, args.procs_per_trial)
    trials = dry_trials(plan, trainer, layout, sweep, name)
    if getattr(args, "json", False):
        import json

        json.dump(_as_json(plan, layout, where, trials), out, indent=2, default=str)
        out.write("\n")
    else:
        print_dry(plan, layout, where, trials, args.executor, out)
    return 0


def dry_trials(plan: Plan, trainer: Any, layout: Layout, sweep: Any, name: str) -> list[DryTrial]:
    """The seed trials within the budget, then one sampled trial, rendered like the
    controller renders them (trial numbers in enqueue order, attempt 1, fresh work dirs)."""
    from scaleout.sweep.workspace import trial_dir

    points: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = [
        (s.origin, {k: v for k, v in s.params().items() if k in plan.ranges}, s.params())
        for s in plan.seeds[: plan.trials]
    ]
    if len(points) < plan.trials:
        points.append(("sampled (an example draw)", example_draw(plan), None))
    out = []
    for number, (origin, sampled, seed) in enumerate(points):
        params = plan.trial_params(sampled, seed)
        work_dir = trial_dir(sweep.dir, number)
        spec = trainer.render(params, layout, work_dir, resume=False, name=f"t{number:03d}")
        # What the controller adds to every trial's environment.
        env = {**spec.env, "SCALEOUT_SWEEP": name, "SCALEOUT_TRIAL": str(number)}
        spec = replace(spec, env=env)
        out.append(DryTrial(number, origin, params.to_dict(), f"{name}-t{number:03d}-a1", spec))
    return out


def example_draw(plan: Plan) -> dict[str, Any]:
    """A point from the search ranges (log-uniform where the range is log), seeded by the
    space file's sampler seed. The sweep's sampler makes its own choice; this shows how a
    sampled trial renders, couplings (the min_lr_ratio cap) included."""
    rng = random.Random(plan.space.sampler.seed)
    point: dict[str, Any] = {}
    for name, r in plan.ranges.items():
        if r.log:
            value = math.exp(rng.uniform(math.log(r.low), math.log(r.high)))
        else:
            value = rng.uniform(r.low, r.high)
        point[name] = round(value) if r.integer else float(f"{value:.4g}")
    return point


def _layout(
    plan: Plan, executor: str, options: dict[str, Any], parallel: int | None, procs: int
) -> tuple[Layout, str]:
    """The layout the controller would use: from the executor's capacity when it answers;
    else whole nodes of 8 GPUs, said so (a dry run on a laptop for a cluster)."""
    from scaleout.sweep.session import make_executor

    try:
        cap = make_executor(executor, options, parallel).capacity()
        return layout_for(
            plan.gpus, cap, parallel or 0, procs
        ), f"as the {executor} executor has it"
    except Exception as e:  # a cluster that does not answer, or whose client is missing
        if executor == "local" or (isinstance(e, ScaleoutError) and "does not fit" in str(e)):
            raise
        gpn = options.get("procs_per_node") or ASSUMED_GPUS_PER_NODE
        nodes = max(1, math.ceil(plan.gpus / gpn))
        cap = Capacity(nodes=nodes, gpus_per_node=gpn, slots=1)
        reason = str(e).splitlines()[0]
        return (
            layout_for(plan.gpus, cap, 1, procs),
            f"assuming nodes of {gpn} GPUs: the {executor} executor did not answer ({reason})",
        )


def node_argv(spec: TrialSpec, node_rank: int) -> list[str]:
    """A node's command, its node rank filled; the rendezvous stays for the executor."""
    values = {
        "{node_rank}": str(node_rank),
        "{master_addr}": "<master_addr>",
        "{master_port}": "<master_port>",
    }
    argv = []
    for arg in spec.argv:
        for key, value in values.items():
            arg = arg.replace(key, value)
        argv.append(arg)
    return argv


def _shown_nodes(nnodes: int) -> list[int]:
    if nnodes <= ALL_NODES_UP_TO:
        return list(range(nnodes))
    return [0, 1, nnodes - 1]


def print_dry(
    plan: Plan, layout: Layout, where: str, trials: list[DryTrial], executor: str, out: TextIO
) -> None:
    w = out.write
    w(
        f"dry run: {len(trials)} of {plan.trials} trials of {plan.gpus} GPUs x "
        f"{plan.samples_per_gpu} (global batch {plan.scale.target_global_batch}), rendered as "
        f"they would run; nothing was written or started\n"
    )
    kind = "GPU" if layout.use_gpu else "CPU"
    w(
        f"layout: {layout.nnodes} node(s) x {layout.procs_per_node} {kind} process(es), "
        f"{layout.virtual_gpus} GPUs, {where}\n"
    )
    for note in plan.notes:
        w(f"note: {note}\n")
    for t in trials:
        s = t.spec
        w(f"\n== trial {t.number} ({t.origin}): job {t.job}\n")
        w("params: " + ", ".join(f"{k}={v}" for k, v in t.params.items()) + "\n")
        w(f"work dir: {s.work_dir}\n")
        w(f"runs in: {s.cwd or s.work_dir}\n")
        if s.container:
            w(f"container: {s.container}\n")
        per = "once per node" if s.launch == "node" else f"{layout.procs_per_node} tasks per node"
        w(f"command ({per}; the executor fills <master_addr> and <master_port>):\n")
        shown = _shown_nodes(layout.nnodes)
        for node in shown:
            w(f"  node {node}: {shlex.join(node_argv(s, node))}\n")
        if len(shown) < layout.nnodes:
            w(f"  nodes 2..{layout.nnodes - 2}: the same, with their own node rank\n")
        w("environment (added to the executor's own):\n")
        for key, value in sorted(s.env.items()):
            w(f"  {key}={shlex.quote(value)}\n")
        if executor == "local":
            w("  (the local executor adds CUDA_VISIBLE_DEVICES and OMP/MKL_NUM_THREADS)\n")
        for rel, text in s.files.items():
            w(f"file {Path(s.work_dir) / rel}:\n")
            for line in text.rstrip("\n").splitlines():
                w(f"  | {line}\n")


def _as_json(plan: Plan, layout: Layout, where: str, trials: list[DryTrial]) -> dict[str, Any]:
    return {
        "gpus": plan.gpus,
        "trials_planned": plan.trials,
        "layout": {
            "nnodes": layout.nnodes,
            "procs_per_node": layout.procs_per_node,
            "virtual_gpus": layout.virtual_gpus,
            "use_gpu": layout.use_gpu,
            "from": where,
        },
        "notes": list(plan.notes),
        "trials": [
            {
                "number": t.number,
                "origin": t.origin,
                "job": t.job,
                "params": t.params,
                "work_dir": t.spec.work_dir,
                "cwd": t.spec.cwd,
                "launch": t.spec.launch,
                "container": t.spec.container,
                "argv": list(t.spec.argv),
                "nodes": {str(n): node_argv(t.spec, n) for n in range(layout.nnodes)},
                "env": t.spec.env,
                "files": t.spec.files,
            }
            for t in trials
        ],
    }
