"""`scaleout probe`: run the reference recipe for a few hundred iterations (or read a run that
exists) and estimate its gradient noise scale from the statistics its logs carry.

The run goes through the same trainer adapter and executor a sweep's trials do: the adapter
renders the reference seed's values at the probe's GPU count, the executor starts it, the
adapter's log reader (`read_metrics(...).grad_stats`) reads the two squared norms back, and
the job is cancelled once it is past the iterations asked for. Nothing in the trainer is
patched: the statistics come from minibev itself or from scaleout's trainer hooks
(scaleout.hooks), which the trainer's config enables (docs/evidence.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaleout.core.errors import ScaleoutError, UsageError
from scaleout.core.job import GradStat, JobState, TrialParams
from scaleout.core.probefile import SCHEMA
from scaleout.evidence.noise import NoiseScale

# 300 was refused on minibev at 8 GPUs (no top to the band over 30 points), 1,200 gave a
# stable estimate: benchmarks/RESULTS.md "Evidence".
DEFAULT_ITERS = 1200
JOB_NAME = "probe"
LOST_AFTER_S = 60.0


@dataclass(frozen=True)
class ProbeRun:
    """What the probe read: the statistics up to the iterations asked for, and the run."""

    work_dir: Path
    stats: tuple[GradStat, ...]
    iters_done: int
    sources: tuple[str, ...]
    how: str  # "ran" (to its end), "cancelled" (past --iters), "read" (--from-run)
    argv: tuple[str, ...] | None = None


def default_gpus(space_file: str, trainer_flags: dict[str, Any]) -> int:
    """The reference's GPU count: the space file's, else the trainer config's."""
    from scaleout.core.space import parse_space_text, read_space_text, resolve_reference
    from scaleout.sweep.session import merge_choice, trainer_from_choice

    space = parse_space_text(read_space_text(space_file), space_file)
    if space.reference.gpus is not None:
        return space.reference.gpus
    trainer = trainer_from_choice(merge_choice(space, trainer_flags))
    ref, _ = resolve_reference(space, trainer.reference(), space_file)
    return ref.gpus


def reference_params(plan: Any) -> TrialParams:
    """The reference seed's values at the plan's GPU count: the recipe unchanged."""
    from scaleout.core.knobs import KNOBS, PlanContext

    ctx = PlanContext(plan.reference, plan.scale, plan.space_path, ("reference",), dict(plan.knobs))
    values: dict[str, Any] = {}
    for name, kp in plan.knobs.items():
        spec = getattr(plan.space.search, name)
        values[name] = KNOBS[name].seed_value("reference", spec, ctx, kp, values)
    return plan.trial_params({}, seed=values)


def run_probe(
    plan: Any,
    trainer: Any,
    executor: Any,
    run_dir: Path,
    iters: int,
    *,
    poll_s: float = 1.0,
    on_progress: Callable[[int], None] | None = None,
) -> ProbeRun:
    """Run the reference recipe in `run_dir` until it is past `iters` iterations (then
    cancel it) or ends. Raises ScaleoutError when the run fails."""
    from scaleout.core.placement import layout_for

    params = reference_params(plan)
    layout = layout_for(plan.gpus, executor.capacity(), 1)
    spec = trainer.render(params, layout, run_dir, resume=False, name=JOB_NAME)
    handle = executor.submit(spec, JOB_NAME)
    how = "ran"
    submitted = time.monotonic()
    try:
        while True:
            status = executor.poll([handle]).get(handle.name)
            done = trainer.read_metrics(run_dir).iters_done
            if on_progress is not None:
                on_progress(done)
            # A job the executor has not heard of yet (a queue, a wrapper starting) is given
            # time before it counts as gone.
            lost = status is not None and status.state is JobState.NOT_FOUND
            ended = status is not None and (
                status.state.finished or (lost and time.monotonic() - submitted > LOST_AFTER_S)
            )
            if ended and status.state is not JobState.SUCCEEDED:
                failure = trainer.failure(run_dir, handle.log)
                why = failure.summary if failure else status.reason or status.state.value
                raise ScaleoutError(
                    f"the probe's run of the reference recipe failed: {why}",
                    hint=f"its log: {handle.log or run_dir}",
                )
            if ended:
                break
            if done >= iters:
                executor.cancel(handle)
                how = "cancelled"
                break
            time.sleep(poll_s)
    except BaseException:
        executor.cancel(handle)  # Ctrl-C or a failure: leave no trainer running
        raise
    return _collect(trainer, run_dir, iters, how, spec.argv)


def read_run(trainer: Any, run_dir: Path, iters: int | None) -> ProbeRun:
    """A run the user already has (`--from-run DIR`), read by the trainer's log reader."""
    if not run_dir.is_dir():
        raise UsageError(f"--from-run {run_dir}: no such directory")
    return _collect(trainer, run_dir, iters, "read", None)


def _collect(trainer: Any, run_dir: Path, iters: int | None, how: str, argv: Any) -> ProbeRun:
    metrics = trainer.read_metrics(run_dir)
    stats = tuple(s for s in metrics.grad_stats if iters is None or s.iter <= iters)
    return ProbeRun(
        work_dir=run_dir,
        stats=stats,
        iters_done=metrics.iters_done,
        sources=metrics.sources,
        how=how,
        argv=tuple(argv) if argv is not None else None,
    )


def require_stats(run: ProbeRun, trainer: Any) -> None:
    """UsageError (exit 2) when the run's logs carry no gradient statistics, saying how
    the trainer's config turns them on."""
    if run.stats:
        return
    where = ", ".join(run.sources) or f"{run.work_dir} (no log files found)"
    hint_of = getattr(trainer, "grad_stats_hint", None)
    hint = hint_of() if callable(hint_of) else None
    if hint is None:
        hint = (
            f"the {trainer.name} trainer's logs are read by its profile's patterns, which hold "
            "no gradient statistics; scaleout reads them from mmcv and mmengine logs "
            "(docs/evidence.md)"
        )
    raise UsageError(f"{where}: the trainer's logs carry no gradient statistics", hint=hint)


def probe_document(
    ns: NoiseScale, run: ProbeRun, plan: Any, choice: dict[str, Any], command: str, iters: Any
) -> dict[str, Any]:
    """probe.json (schema scaleout.probe/1, docs/evidence.md)."""
    ref = plan.reference
    return {
        "schema": SCHEMA,
        **ns.to_dict(),
        "basis": (
            "measured: the two-batch estimator of McCandlish et al. 2018 (appendix A.1) over "
            f"the logged iterations {ns.first_iter}-{ns.last_iter} of the reference recipe at "
            f"{plan.gpus} GPUs; early in training the noise scale is lower than later"
        ),
        "gpus": plan.gpus,
        "global_batch": plan.scale.target_global_batch,
        "reference": {
            "gpus": ref.gpus,
            "samples_per_gpu": ref.samples_per_gpu,
            "global_batch": ref.global_batch,
            "lr": ref.lr,
        },
        "space_file": plan.space_path,
        "trainer": choice,
        "run": {
            "work_dir": str(run.work_dir),
            "how": run.how,
            "iters_done": run.iters_done,
            "iters_asked": iters,
            "sources": list(run.sources),
            "trainer_argv": list(run.argv) if run.argv is not None else None,
        },
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
