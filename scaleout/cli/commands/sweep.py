"""`scaleout sweep`: run (or resume) a sweep and show its progress."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from scaleout.cli.commands.common import add_trainer_args, positive_int, print_json, trainer_flags
from scaleout.core.errors import redact_url
from scaleout.executors import EXECUTOR_NAMES
from scaleout.sweep.faults import crash_point

# Exit code of a sweep that ran its budget and no trial ever reported the objective.
NOTHING_REPORTED = 4

HELP = "run a sweep (the same command again resumes it)"
DESCRIPTION = """\
Run the sweep the space file describes at the target GPU count: the seed trials first
(reference, sqrt, linear), then sampled ones, as many at once as the executor fits.
Metrics go to MLflow (one experiment per sweep) and the study to SQLite in the workspace.

Killing the controller (even kill -9) loses nothing: run the same command again, or
`scaleout sweep --name NAME --resume`. Running trials keep running and are re-attached;
finished ones are not re-run. Ctrl-C stops the controller and leaves trials running
(--cancel-on-exit stops them too).

examples:
  scaleout sweep --gpus 160 --space search_spaces/lr_scaling.yaml
  scaleout sweep --gpus 32 --space search_spaces/lr_scaling.yaml --preset tiny --trials 6
      # tiny checks the plumbing in seconds (3 epochs): its NDS means nothing; for a
      # result that shows the effect, the default preset (small), as in the first example
  scaleout sweep --name lr_scaling-160g --resume
  scaleout sweep --name lr_scaling-160g --resume --trials 20     # extend the budget
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--gpus",
        type=positive_int("--gpus"),
        help="target GPU count, e.g. 160 (required to start a sweep; a resume reads it back)",
    )
    p.add_argument(
        "--space",
        metavar="FILE",
        help="search-space YAML, e.g. search_spaces/lr_scaling.yaml (required to start a "
        "sweep; a resume reads the stored copy)",
    )
    p.add_argument(
        "--samples-per-gpu",
        type=positive_int("--samples-per-gpu"),
        help="samples per GPU at the target (default: the space's target, else the reference's)",
    )
    p.add_argument("--name", help="sweep name (default: <space file stem>-<gpus>g)")
    p.add_argument(
        "--trials",
        type=positive_int("--trials"),
        help="trial budget (default: the space file's budget; on resume, the stored one: "
        "a larger N extends it, fewer than the trials already started is refused)",
    )
    p.add_argument(
        "--parallel",
        type=positive_int("--parallel"),
        help="trials at once (default: what the executor fits)",
    )
    p.add_argument(
        "--executor",
        default="local",
        choices=EXECUTOR_NAMES,
        help="where trials run (default: local; see docs/clusters.md)",
    )
    add_executor_args(p)
    p.add_argument(
        "--procs-per-trial",
        type=positive_int("--procs-per-trial"),
        default=1,
        help="local executor without GPUs: processes (gloo DDP) per trial (default: 1)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="resume the sweep --name names (running the starting command again resumes too)",
    )
    p.add_argument(
        "--workspace",
        help="where sweeps live (default: $SCALEOUT_WORKSPACE or ./scaleout-workspace)",
    )
    p.add_argument(
        "--mlflow-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
        "else a SQLite store in the workspace)",
    )
    p.add_argument(
        "--storage",
        help="study storage, a SQLAlchemy URL (default: SQLite in the sweep's folder, study.db)",
    )
    p.add_argument(
        "--cancel-on-exit",
        action="store_true",
        help="on Ctrl-C, also stop the running trials (default: they keep running)",
    )
    p.add_argument(
        "--poll-interval",
        type=_seconds,
        default=2.0,
        metavar="S",
        help="seconds between polls (default 2)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the final summary as JSON (default: a table)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the seed trials and one sampled trial as they would run, writing nothing",
    )
    add_trainer_args(p)
    p.set_defaults(run=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--poll-interval takes seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"--poll-interval must be in (0, 3600] s, got {value:g}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.dry_run:  # scaleout/cli/dryrun.py renders the first trials and starts nothing
        from scaleout.cli.dryrun import run_dry

        return run_dry(args)
    from scaleout.cli.hints import resume_hint
    from scaleout.cli.progress import ProgressView
    from scaleout.cli.render import make_console
    from scaleout.cli.summary import sweep_summary
    from scaleout.sweep.controller import Controller
    from scaleout.sweep.session import SweepRequest, make_executor, open_sweep

    console = make_console(stderr=True)
    req = SweepRequest(
        space=args.space,
        gpus=args.gpus,
        name=args.name,
        samples_per_gpu=args.samples_per_gpu,
        trials=args.trials,
        parallel=args.parallel,
        executor=args.executor,
        executor_options=executor_options(args),
        trainer_flags={k: v for k, v in trainer_flags(args).items() if v is not None},
        workspace=args.workspace,
        mlflow_uri=args.mlflow_uri,
        storage=args.storage,
        resume=args.resume,
    )
    opened = open_sweep(req)
    try:
        executor = make_executor(
            opened.meta["executor"], opened.meta.get("executor_options", {}), args.parallel
        )
        controller = Controller(
            searcher=opened.searcher,
            plan=opened.plan,
            trainer=opened.trainer,
            executor=executor,
            tracker=opened.tracker,
            sweep_name=opened.sweep.name,
            sweep_dir=opened.sweep.dir,
            parent_run_id=opened.parent_run_id,
            parallel=args.parallel or 0,
            poll_interval_s=args.poll_interval,
            procs_per_trial=args.procs_per_trial,
        )
        _announce(console, opened, controller)
        with ProgressView(controller, console) as view:
            controller.on_event = view.event
            previous = _stop_on_sigint(controller, console)
            try:
                reason = controller.run_with(view.refresh)
            except KeyboardInterrupt:  # Ctrl-C twice: stop at once, but say how to go on
                console.print(resume_hint(opened.sweep.name, len(controller.active)))
                raise
            finally:
                signal.signal(signal.SIGINT, previous)
        if reason == "stopped" and args.cancel_on_exit:
            controller.cancel_all()
            console.print("cancelled the running trials (--cancel-on-exit)")
        summary = sweep_summary(opened.searcher.study, opened.plan, opened.sweep.name, reason)
        unreported = reason != "stopped" and not _reported(opened.searcher.study)
        if reason != "stopped":
            from scaleout.results.publish import publish_after_sweep  # plots, leaderboard

            publish_after_sweep(opened, console)
            crash_point("before_finish_sweep")
            status = "FAILED" if unreported else "FINISHED"
            opened.tracker.finish_sweep(opened.parent_run_id, _numeric(summary), status)
        _print_summary(console, summary, args.json)
        if reason == "stopped":
            running = 0 if args.cancel_on_exit else len(controller.active)
            cancelled = bool(args.cancel_on_exit and controller.active)
            hint = resume_hint(
                opened.sweep.name, running or len(controller.active), cancelled=cancelled
            )
            console.print(hint)
        if unreported:
            console.print(
                f"[red]scaleout: error: no trial reported {opened.plan.objective}[/] "
                f"(objective.metric in {opened.meta['space_file']}): the sweep found nothing; "
                "the trials' logs say what they did log"
            )
            return NOTHING_REPORTED
        return 0 if reason != "stopped" else 130
    finally:
        opened.lock.release()


def add_executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "cluster executors", "stored with a new sweep; a resumed sweep uses the stored values"
    )
    g.add_argument(
        "--procs-per-node",
        type=positive_int("--procs-per-node"),
        help="slurm/ray: processes per node (default: one per GPU; fewer run virtual GPUs)",
    )
    g.add_argument(
        "--container-runtime",
        choices=("pyxis", "enroot", "apptainer", "docker"),
        help="slurm/ray: how a trainer's container image runs (default: pyxis on slurm, "
        "docker on ray)",
    )
    g.add_argument("--ray-address", help="ray: the dashboard address (default: $RAY_ADDRESS)")
    g.add_argument("--slurm-partition", metavar="NAME", help="slurm: partition (default: its own)")
    g.add_argument(
        "--slurm-account",
        metavar="NAME",
        help="slurm: account to charge (default: your default account)",
    )
    g.add_argument(
        "--slurm-time",
        metavar="TIME",
        help="slurm: time limit per job, e.g. 24:00:00 (default: the partition's)",
    )
    g.add_argument(
        "--slurm-cpus-per-task",
        type=positive_int("--slurm-cpus-per-task"),
        metavar="N",
        help="slurm: CPUs per task, sbatch --cpus-per-task; also sets OMP_NUM_THREADS per "
        "process (default: Slurm's, one)",
    )
    g.add_argument(
        "--slurm-extra",
        action="append",
        default=[],
        metavar="FLAG",
        help="slurm: one more sbatch flag, e.g. --slurm-extra=--qos=high (repeatable; "
        "default: none)",
    )
    g.add_argument(
        "--slurm-master-addr",
        metavar="ADDR",
        help="slurm: rendezvous address (default: the job's first node; for test clusters)",
    )


def executor_options(args: argparse.Namespace) -> dict[str, Any]:
    """The executor flags given, as the options sweep.json stores."""
    import os

    given: dict[str, Any] = {
        "procs_per_node": args.procs_per_node,
        "container_runtime": args.container_runtime,
    }
    if args.executor == "slurm":
        given.update(
            partition=args.slurm_partition,
            account=args.slurm_account,
            time=args.slurm_time,
            cpus_per_task=args.slurm_cpus_per_task,
            extra=list(args.slurm_extra) or None,
            master_addr=args.slurm_master_addr,
        )
    if args.executor == "ray":
        given["address"] = args.ray_address or os.environ.get("RAY_ADDRESS")
    if args.executor == "local":
        given = {}
    return {k: v for k, v in given.items() if v is not None}


def _stop_on_sigint(controller: Any, console: Any) -> Any:
    def handler(signum: int, frame: Any) -> None:
        if controller.stop_requested:
            raise KeyboardInterrupt
        controller.stop_requested = True
        console.print(
            "stopping after this step; trials keep running (Ctrl-C again to stop at once)"
        )

    return signal.signal(signal.SIGINT, handler)


def _announce(console: Any, opened: Any, controller: Any) -> None:
    plan = opened.plan
    lay = controller.layout
    verb = "resuming" if opened.resumed else "starting"
    console.print(
        f"[bold]{verb} sweep {opened.sweep.name}[/]: {plan.trials} trials of "
        f"{plan.gpus} GPUs x {plan.samples_per_gpu} (global batch "
        f"{plan.scale.target_global_batch}), {controller.parallel} at once, "
        f"{opened.meta['trainer']['name']} trainer, {opened.meta['executor']} executor"
    )
    if opened.budget_change:
        old, new = opened.budget_change
        how = "extended" if new > old else "lowered"
        console.print(f"budget {how} from {old} to {new} trials (--trials)")
    if lay.virtual_gpus > lay.world_size:
        kind = "GPU" if lay.use_gpu else "CPU"
        procs = f"{lay.nnodes} node(s) x {lay.procs_per_node} {kind} process(es)"
        why = (
            f"this machine has fewer than {plan.gpus} GPUs"
            if opened.meta["executor"] == "local"
            else "--procs-per-node asks for fewer processes than GPUs"
        )
        console.print(
            f"[yellow]virtual GPUs[/]: {why}, so each trial runs on {procs} with the same "
            f"global batch of {plan.scale.target_global_batch} (the same optimisation, slower)"
        )
    console.print(
        f"  workspace {opened.sweep.dir}\n  MLflow {redact_url(opened.meta['mlflow_uri'])} "
        f"(experiment {opened.sweep.name}; `scaleout ui` to browse)"
    )


def _reported(study: Any) -> bool:
    """Whether any trial reported the objective: at an epoch, or as its final value."""
    return any(
        t.intermediate_values or t.value is not None for t in study.get_trials(deepcopy=False)
    )


def _numeric(summary: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}
    return out


def _print_summary(console: Any, summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    from scaleout.cli.render import make_console
    from scaleout.cli.summary import print_summary

    print_summary(summary, make_console())
    sys.stdout.flush()
