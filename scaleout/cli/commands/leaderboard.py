"""`scaleout leaderboard NAME`: trials ranked by the objective."""

from __future__ import annotations

import argparse

HELP = "rank a sweep's trials by the objective (table, csv or json)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help=HELP, description=HELP + ".")
    p.add_argument("name", help="the sweep's name")
    p.add_argument(
        "--workspace",
        help="where sweeps live (default: $SCALEOUT_WORKSPACE, else ./scaleout-workspace)",
    )
    p.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (the terminal's width), csv or json (default: table)",
    )
    p.add_argument("--top", type=int, default=None, help="show only the best N (default: all)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from scaleout.results.leaderboard import leaderboard_rows, rich_table, to_csv, to_json
    from scaleout.sweep.workspace import SweepStore

    store = SweepStore.open(args.name, args.workspace)
    knobs = store.knobs
    rows = leaderboard_rows(store.records(), store.objective, store.direction, knobs=knobs)
    rows = rows[: args.top] if args.top else rows
    if args.format == "csv":
        print(to_csv(rows, knobs), end="")
    elif args.format == "json":
        print(to_json(rows, knobs))
    else:
        from scaleout.cli.render import make_console

        console = make_console()
        if not rows:
            console.print(f"sweep {store.name} has no trials yet")
        else:
            console.print(rich_table(rows, store.objective, knobs=knobs))
    return 0
