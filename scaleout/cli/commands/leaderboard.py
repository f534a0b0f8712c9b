"""`scaleout leaderboard NAME`: trials ranked by the objective."""

from __future__ import annotations

import argparse

HELP = "rank a sweep's trials by the objective (table, csv or json)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help=HELP, description=HELP + ".")
    p.add_argument("name", help="the sweep's name")
    p.add_argument("--workspace", help="default: $SCALEOUT_WORKSPACE or ./scaleout-workspace")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--top", type=int, default=None, help="show only the best N")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    import optuna

    from scaleout.results.leaderboard import leaderboard_rows, rich_table, to_csv, to_json
    from scaleout.sweep.workspace import find_sweep, workspace_root

    sweep = find_sweep(workspace_root(args.workspace), args.name)
    meta = sweep.read_meta()
    plan = json.loads((sweep.dir / "plan.json").read_text())
    study = optuna.load_study(study_name=sweep.name, storage=meta["storage"])
    objective, direction = plan["objective"]["metric"], plan["objective"]["direction"]
    rows = leaderboard_rows(study.get_trials(deepcopy=False), objective, direction)
    rows = rows[: args.top] if args.top else rows
    if args.format == "csv":
        print(to_csv(rows), end="")
    elif args.format == "json":
        print(to_json(rows))
    else:
        from scaleout.cli.render import make_console

        console = make_console()
        if not rows:
            console.print(f"sweep {sweep.name} has no trials yet")
        else:
            console.print(rich_table(rows, objective))
    return 0
