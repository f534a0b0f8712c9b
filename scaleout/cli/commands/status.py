"""`scaleout status NAME`: where a sweep stands (works while its controller runs)."""

from __future__ import annotations

import argparse
import json
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


def sweep_status(sweep: Any) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    from scaleout.sweep.search import Attr
    from scaleout.sweep.workspace import ControllerLock

    meta = sweep.read_meta()
    plan = json.loads((sweep.dir / "plan.json").read_text())
    study = optuna.load_study(study_name=sweep.name, storage=meta["storage"])
    trials = study.get_trials(deepcopy=False)
    objective = plan["objective"]["metric"]
    running = []
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        job = json.loads(t.user_attrs.get(Attr.JOB) or "{}")
        iv = t.intermediate_values
        running.append(
            {
                "trial": t.number,
                "origin": t.user_attrs.get(Attr.ORIGIN),
                "attempt": t.user_attrs.get(Attr.ATTEMPT),
                "job_id": job.get("job_id"),
                "job": job.get("name"),
                "epoch": max(iv, default=0),
                objective: iv[max(iv)] if iv else None,
                "params": t.user_attrs.get(Attr.PARAMS),
            }
        )
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if done:
        pick = max if study.direction.name == "MAXIMIZE" else min
        b = pick(done, key=lambda t: t.value)
        best = {"trial": b.number, "value": b.value, "params": b.user_attrs.get(Attr.PARAMS)}
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    return {
        "sweep": sweep.name,
        "dir": str(sweep.dir),
        "space_file": meta["space_file"],
        "gpus": meta["gpus"],
        "trainer": meta["trainer"]["name"],
        "executor": meta["executor"],
        "budget": meta["trials"],
        "objective": objective,
        "counts": counts,
        "controller": ControllerLock(sweep).holder(),
        "running": running,
        "best": best,
        "mlflow_uri": meta["mlflow_uri"],
    }


def run(args: argparse.Namespace) -> int:
    from scaleout.core.errors import UsageError
    from scaleout.sweep.workspace import find_sweep, list_sweeps, workspace_root

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
    st = sweep_status(find_sweep(root, args.name))
    if args.json:
        print_json(st)
        return 0
    from rich.table import Table

    from scaleout.cli.render import make_console

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
            f"  best {st['objective']} {st['best']['value']:.4f}: t{st['best']['trial']:03d} "
            f"lr {p.get('lr', float('nan')):.2e} warmup {p.get('warmup_iters')}"
        )
    if st["running"]:
        t = Table()
        for col in ("trial", "origin", "try", "job", "epoch", st["objective"]):
            t.add_column(col)
        for r in st["running"]:
            v = r[st["objective"]]
            t.add_row(
                f"t{r['trial']:03d}",
                str(r["origin"]),
                str(r["attempt"]),
                str(r["job_id"]),
                str(r["epoch"]),
                "-" if v is None else f"{v:.4f}",
            )
        c.print(t)
    if n["running"] and not st["controller"]:
        c.print(f"  resume with: scaleout sweep --name {st['sweep']} --resume")
    return 0
