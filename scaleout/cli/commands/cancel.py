"""`scaleout cancel NAME`: stop a sweep's detached trials (local, Slurm, Ray) while no
controller runs it, through the executor registry and the job handles stored on the trials."""

from __future__ import annotations

import argparse
import json
import socket
from typing import Any

from scaleout.cli.commands.common import add_workspace_arg, nonnegative_int

HELP = "stop the running trials of a sweep whose controller is not running (local, Slurm, Ray)"
DESCRIPTION = """\
Stop the jobs of a sweep's running trials (all of them, or the --trial ones): a local
job's process group, a Slurm job (scancel), a Ray job (stop_job), each through the job
handle stored on the trial. Trials keep running on their own after the controller stops
(Ctrl-C, a lost session, kill -9); this is how to stop them.

While a controller runs the sweep, cancel refuses (exit 3): the controller owns its trials.
Stop it first with Ctrl-C (`scaleout sweep ... --cancel-on-exit` stops the trials too),
then cancel.

The study keeps the trials as running: a later `scaleout sweep --name NAME --resume` sees
their jobs cancelled and retries each from its last checkpoint as its next attempt (a
trial on its last attempt is marked failed). Without a resume they stay stopped.

examples:
  scaleout cancel lr_scaling-160g
  scaleout cancel lr_scaling-160g --trial 4 --trial 7
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cancel",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="the sweep's name (scaleout list shows them)")
    p.add_argument(
        "--trial",
        type=nonnegative_int("--trial"),
        action="append",
        metavar="N",
        help="stop only trial N (repeatable; default: every running trial)",
    )
    add_workspace_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from scaleout.core.errors import StateError, UsageError
    from scaleout.sweep.workspace import ControllerLock, SweepStore

    store = SweepStore.open(args.name, args.workspace)
    lock = ControllerLock(store.sweep)
    holder = lock.holder()
    if holder:
        raise StateError(
            f"a controller is running sweep {store.name} ({holder}): it owns its trials",
            hint="stop it with Ctrl-C (add --cancel-on-exit to `scaleout sweep` to stop the "
            f"trials with it), then run `scaleout cancel {store.name}`",
        )
    # Held while the jobs are stopped, so no controller starts (and re-attaches them) meanwhile.
    lock.acquire()
    try:
        records = store.records()
        running = [r for r in records if r.state == "RUNNING"]
        if args.trial:
            known = {r.number: r for r in records}
            missing = [n for n in args.trial if n not in known]
            if missing:
                raise UsageError(
                    f"--trial {missing[0]}: sweep {store.name} has no started trial {missing[0]}",
                    hint=f"its trials: {', '.join(str(n) for n in sorted(known)) or 'none yet'}",
                )
            for n in args.trial:
                if known[n].state != "RUNNING":
                    print(f"t{n:03d}: {known[n].state.lower()}, nothing to stop")
            running = [r for r in running if r.number in set(args.trial)]
        if not running:
            if not args.trial:
                print(f"sweep {store.name} has no running trials: nothing to stop")
            return 0
        return _cancel(store, running)
    finally:
        lock.release()


def _cancel(store: Any, records: list[Any]) -> int:
    from scaleout.core.errors import ScaleoutError
    from scaleout.core.job import JobHandle
    from scaleout.executors import make_executor

    meta = store.meta
    executors: dict[str, Any] = {}
    failed = 0
    stopped = []
    for r in records:
        label = f"t{r.number:03d}"
        if not r.job.get("name"):
            print(f"{label}: no job was submitted yet; nothing to stop")
            continue
        handle = JobHandle.from_json(json.dumps(r.job))
        host = handle.data.get("host")
        if handle.executor == "local" and host and host != socket.gethostname():
            print(f"{label}: its job {handle.job_id} runs on host {host}: cancel it there")
            failed += 1
            continue
        try:
            ex = executors.get(handle.executor)
            if ex is None:
                options = (
                    meta.get("executor_options", {}) if handle.executor == meta["executor"] else {}
                )
                ex = executors[handle.executor] = make_executor(handle.executor, options, None)
            ex.cancel(handle)
            state = ex.poll([handle]).get(handle.name)
        except ScaleoutError as exc:
            print(f"{label}: could not stop job {handle.job_id} ({handle.executor}): {exc}")
            failed += 1
            continue
        except Exception as exc:  # a cluster that does not answer: say which job, go on
            print(f"{label}: could not stop job {handle.job_id} ({handle.executor}): {exc!r}")
            failed += 1
            continue
        now = state.state.value if state is not None else "unknown"
        print(f"{label}: cancelled job {handle.job_id} ({handle.executor}, {handle.name}): {now}")
        stopped.append(r)
    if stopped:
        print(_after(store, stopped))
    return 1 if failed else 0


def _after(store: Any, stopped: list[Any]) -> str:
    """What becomes of the cancelled trials: the study still holds them as running."""
    max_attempts = int((store.plan.get("retries") or {}).get("max_attempts", 1))
    last = [r for r in stopped if r.attempts >= max_attempts]
    lines = [
        f"the study keeps {len(stopped)} trial(s) as running; `scaleout sweep --name "
        f"{store.name} --resume` would retry each from its last checkpoint"
    ]
    if last:
        names = ", ".join(f"t{r.number:03d}" for r in last)
        lines.append(f"  ({names} on its last attempt of {max_attempts}: a resume marks it failed)")
    return "\n".join(lines)
