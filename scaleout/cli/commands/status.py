"""`scaleout status NAME`: where a sweep stands (works while its controller runs)."""

from __future__ import annotations

import argparse
from typing import Any

from scaleout.cli.commands.common import print_json

HELP = "show where a sweep stands: counts, running trials, best so far"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help=HELP, description=HELP + ".")
    p.add_argument("name", help="the sweep's name (scaleout status --list shows them)", nargs="?")
    p.add_argument("--workspace", help="default: $SCALEOUT_WORKSPACE or ./scaleout-workspace")
    p.add_argument("--list", action="store_true", help="list the workspace's sweeps")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def sweep_status(store: Any) -> dict[str, Any]:
    """Where the sweep in `store` (a SweepStore) stands: counts, running trials, best."""
    from scaleout.sweep.workspace import STATES, best_first

    meta, objective = store.meta, store.objective
    records = store.records(include_waiting=True)
    running = [
        {
            "trial": r.number,
            "origin": r.origin,
            "attempt": r.attempts,
            "job_id": r.job.get("job_id"),
            "job": r.job.get("name"),
            "epoch": max(r.intermediate, default=0),
            objective: r.intermediate[max(r.intermediate)] if r.intermediate else None,
            "params": r.params or None,
        }
        for r in records
        if r.state == "RUNNING"
    ]
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
        "controller": store.controller(),
        "running": running,
        "best": best,
        "mlflow_uri": meta["mlflow_uri"],
    }


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
    if n["running"] and not st["controller"]:
        c.print(f"  resume with: scaleout sweep --name {st['sweep']} --resume")
    return 0
