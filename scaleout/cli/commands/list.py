"""`scaleout list`: the sweeps of a workspace, with state, best and cost."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from scaleout.cli.commands.common import add_workspace_arg, print_json

HELP = "list the workspace's sweeps: state, trials, best objective and GPU-hours"
DESCRIPTION = """\
List the sweeps of a workspace, one line each: its state, trials started of the budget,
the best completed trial and the GPU-hours its finished trials billed.

states:
  running      a controller holds the sweep now (pid and host in --json)
  interrupted  no controller, but trials were running when it stopped: they may still
               run on their own; `scaleout sweep --name NAME --resume` re-attaches them
  stopped      no controller and no running trial, with budget left: resume to go on
  done         the budget is spent and no trial runs
  unreadable   its study cannot be read (the reason is shown)

examples:
  scaleout list
  scaleout list --workspace /shared/sweeps --json
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_workspace_arg(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list, one object per sweep (default: a table)",
    )
    p.set_defaults(run=run)


def sweep_line(store: Any) -> dict[str, Any]:
    """One sweep's state, counts, best and cost, read through its SweepStore."""
    from scaleout.core.errors import ScaleoutError
    from scaleout.sweep.workspace import best_first

    out: dict[str, Any] = {"sweep": store.name, "dir": str(store.dir)}
    try:
        meta = store.meta
        out.update(
            gpus=meta.get("gpus"),
            trainer=(meta.get("trainer") or {}).get("name"),
            executor=meta.get("executor"),
            created=meta.get("created"),
        )
        records = store.records()
        budget = int(store.study_attrs().get("trials", meta.get("trials") or 0))
        objective, direction = store.objective, store.direction
    except ScaleoutError as exc:
        return {**out, "state": "unreadable", "reason": exc.message}
    counts = {s.lower(): sum(r.state == s for r in records) for s in _STATES}
    ranked = best_first(records, direction)
    best = next((r for rank, r in ranked if rank == 1), None)
    holder = store.controller()
    started = len(records)
    if holder:
        state = "running"
    elif counts["running"]:
        state = "interrupted"
    elif started >= budget:
        state = "done"
    else:
        state = "stopped"
    out.update(
        state=state,
        controller=holder,
        budget=budget,
        started=started,
        counts=counts,
        objective=objective,
        direction=direction,
        best=None
        if best is None
        else {"trial": best.number, "value": best.value, "origin": best.origin},
        **_cost(records, store.plan),
    )
    return out


_STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")


def _cost(records: list[Any], plan: Any) -> dict[str, Any]:
    """The sweep's cost in the labelled units every view uses (results.headline)."""
    from scaleout.results.headline import sweep_cost

    c = sweep_cost(records, plan or {})
    return {
        "trial_equivalents": c.trial_equivalents,
        "target_gpu_hours": c.target_gpu_hours,
        "target_gpu_hours_basis": c.basis,
    }


def list_workspace(root: Any) -> list[dict[str, Any]]:
    from scaleout.sweep.workspace import Sweep, SweepStore, list_sweeps

    return [sweep_line(SweepStore(Sweep(root, name))) for name in list_sweeps(root)]


def run(args: argparse.Namespace) -> int:
    from scaleout.sweep.workspace import workspace_root

    root = workspace_root(args.workspace)
    lines = list_workspace(root)
    if args.json:
        print_json(lines)
        return 0
    from rich.table import Table

    from scaleout.cli.render import make_console
    from scaleout.results.format import fmt_gpu_hours, fmt_metric, fmt_trial

    console = make_console()
    if not lines:
        console.print(f"no sweeps in {root} yet (scaleout sweep --gpus N --space FILE starts one)")
        return 0
    t = Table(title=f"sweeps in {root}", title_justify="left")
    t.add_column("sweep", no_wrap=True)
    t.add_column("state", no_wrap=True)
    t.add_column("trials", justify="right", no_wrap=True)
    t.add_column("best", justify="right", no_wrap=True)
    t.add_column("trial-eq.", justify="right", no_wrap=True)
    t.add_column("GPU-h@target", justify="right", no_wrap=True)
    t.add_column("GPUs", justify="right")
    t.add_column("created", no_wrap=True)
    for s in lines:
        created = (
            datetime.fromtimestamp(s["created"]).strftime("%Y-%m-%d %H:%M")
            if s.get("created")
            else "-"
        )
        if s["state"] == "unreadable":
            t.add_row(
                s["sweep"], "[red]unreadable[/]", "-", s["reason"][:60], "-", "-", "-", created
            )
            continue
        n = s["counts"]
        trials = f"{s['started']}/{s['budget']}" + (
            f" ({n['running']} running)" if n["running"] else ""
        )
        best = s["best"]
        best_text = (
            "-"
            if best is None
            else f"{s['objective']} {fmt_metric(best['value'])} {fmt_trial(best['trial'])}"
        )
        t.add_row(
            s["sweep"],
            s["state"],
            trials,
            best_text,
            f"{s['trial_equivalents']:.1f}",
            "-"
            if s["target_gpu_hours"] is None
            else fmt_gpu_hours(s["target_gpu_hours"])
            + (" est." if s["target_gpu_hours_basis"] == "estimated" else ""),
            str(s.get("gpus") or "-"),
            created,
        )
    console.print(t)
    return 0
