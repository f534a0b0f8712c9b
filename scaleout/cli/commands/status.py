"""`scaleout status NAME`: where a sweep stands (works while its controller runs)."""

from __future__ import annotations

import argparse
from typing import Any

from scaleout.cli.commands.common import add_workspace_arg, print_json

HELP = "show where a sweep stands: counts, running trials, best so far"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help=HELP,
        description=HELP + ". With no controller running, the running trials' epochs are read "
        "from their own logs.",
    )
    p.add_argument("name", help="the sweep's name (scaleout list shows them)", nargs="?")
    add_workspace_arg(p)
    p.add_argument(
        "--list",
        action="store_true",
        help="print the workspace's sweep names, one a line (scaleout list shows more)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the status as JSON (default: text and a table)"
    )
    p.set_defaults(run=run)


def sweep_status(store: Any) -> dict[str, Any]:
    """Where the sweep in `store` (a SweepStore) stands: counts, running trials, best.

    With no controller running, nothing reports the detached trials' epochs to the study, so
    their epochs come from the trials' own logs, read by the trainer adapter as the controller
    reads them (`epoch_from`: "logs"); with one, the study is current ("study")."""
    from scaleout.sweep.workspace import STATES, best_first

    meta, objective = store.meta, store.objective
    records = store.records(include_waiting=True)
    controller = store.controller()
    active = [r for r in records if r.state == "RUNNING"]
    from_logs, logs_note = ({}, None) if controller else _read_logs(store, active)
    running = []
    for r in active:
        epoch = max(r.intermediate, default=0)
        value = r.intermediate[epoch] if r.intermediate else None
        source = "study"
        seen = from_logs.get(r.number)
        if seen is not None and seen[0] >= epoch:
            epoch, value, source = seen[0], seen[1] if seen[1] is not None else value, "logs"
        running.append(
            {
                "trial": r.number,
                "origin": r.origin,
                "attempt": r.attempts,
                "job_id": r.job.get("job_id"),
                "job": r.job.get("name"),
                "epoch": epoch,
                objective: value,
                "epoch_from": source,
                "params": r.params or None,
            }
        )
    ranked = best_first(records, store.direction)
    best = next(
        ({"trial": r.number, "value": r.value, "params": r.params} for rank, r in ranked if rank),
        None,
    )
    return {
        "sweep": store.name,
        "dir": str(store.dir),
        "space_file": meta["space_file"],
        "gpus": meta["gpus"],
        "trainer": meta["trainer"]["name"],
        "executor": meta["executor"],
        "budget": meta["trials"],
        "objective": objective,
        "counts": {s.lower(): sum(r.state == s for r in records) for s in STATES},
        "controller": controller,
        "running": running,
        "logs_note": logs_note,
        "best": best,
        "mlflow_uri": meta["mlflow_uri"],
    }


def _read_logs(store: Any, active: list[Any]) -> tuple[dict[int, tuple[int, Any]], str | None]:
    """{trial: (last epoch, objective then)} from the running trials' own logs, and a note
    when the trainer cannot read them here (its config or repo not on this machine)."""
    if not active:
        return {}, None
    from scaleout.cli.commands.common import sweep_trainer

    try:
        trainer = sweep_trainer(store.meta)
    except Exception as exc:  # UsageError for a missing repo; never fail `status` for it
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return {}, f"epochs from the study: the trials' logs cannot be read here ({reason})"
    out: dict[int, tuple[int, Any]] = {}
    for r in active:
        if r.work_dir is None or not r.work_dir.is_dir():
            continue
        try:
            m = trainer.read_metrics(r.work_dir)
        except Exception:  # a half-written log: the study's epoch stands
            continue
        if m.last_epoch:
            out[r.number] = (m.last_epoch, m.latest(store.objective))
    return out, None


def run(args: argparse.Namespace) -> int:
    from scaleout.core.errors import UsageError
    from scaleout.sweep.workspace import SweepStore, list_sweeps, workspace_root

    root = workspace_root(args.workspace)
    if args.list or not args.name:
        names = list_sweeps(root)
        if args.json:
            print_json(names)
        elif not names:
            print(f"no sweeps in {root}")
        else:
            print("\n".join(names))
        if not args.list and not args.name:
            raise UsageError("give a sweep name: scaleout status NAME")
        return 0
    st = sweep_status(SweepStore.open(args.name, root))
    if args.json:
        print_json(st)
        return 0
    from rich.table import Table

    from scaleout.cli.render import make_console
    from scaleout.results.format import fmt_lr, fmt_metric, fmt_trial

    c = make_console()
    n = st["counts"]
    ctl = f"controller: {st['controller']}" if st["controller"] else "no controller running"
    c.print(
        f"[bold]{st['sweep']}[/] ({st['gpus']} GPUs, {st['trainer']} trainer, "
        f"{st['executor']} executor) {ctl}"
    )
    c.print(
        f"  {n['complete']} complete, {n['pruned']} pruned, {n['fail']} failed, "
        f"{n['running']} running of {st['budget']}"
    )
    if st["best"]:
        p = st["best"]["params"] or {}
        c.print(
            f"  best {st['objective']} {fmt_metric(st['best']['value'])}: "
            f"{fmt_trial(st['best']['trial'])} lr {fmt_lr(p.get('lr'))} "
            f"warmup {p.get('warmup_iters')}"
        )
    if st["running"]:
        t = Table()
        for col in ("trial", "origin", "try", "job", "epoch", st["objective"]):
            t.add_column(col)
        for r in st["running"]:
            t.add_row(
                fmt_trial(r["trial"]),
                str(r["origin"]),
                str(r["attempt"]),
                str(r["job_id"]),
                str(r["epoch"]),
                fmt_metric(r[st["objective"]]),
            )
        c.print(t)
    if st["logs_note"]:
        c.print(f"  [dim]{st['logs_note']}[/]")
    if n["running"] and not st["controller"]:
        logs = any(r["epoch_from"] == "logs" for r in st["running"])
        read = " (epochs above: from their own logs)" if logs else ""
        c.print(
            f"  no controller: the running trials go on by themselves{read}\n"
            f"  resume with: scaleout sweep --name {st['sweep']} --resume\n"
            f"  stop them:   scaleout cancel {st['sweep']}"
        )
    return 0
