"""`scaleout leaderboard NAME`: trials ranked by the objective."""

from __future__ import annotations

import argparse

HELP = "rank a sweep's trials by the objective (table, csv or json)"
DESCRIPTION = """\
Rank a sweep's trials by the objective, completed trials first. The table keeps rank, trial,
state, the objective, lr and warmup readable at any terminal width and leaves out what does
not fit (its caption says what); csv and json carry every column. The json is an object: the
sweep's metadata (objective, direction, plan digest, the reference recipe and its own scores),
its headline (the drop at the target, the share recovered, the cost) and the rows under
"trials".

examples:
  scaleout leaderboard lr_scaling-160g
  scaleout leaderboard lr_scaling-160g --state pruned --sort trial_equivalents
  scaleout leaderboard lr_scaling-160g --format json --top 3
"""


# results.leaderboard.STATE_FILTERS, spelled out so that building the parser imports nothing.
STATES = ("all", "complete", "pruned", "running", "failed")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    p.add_argument(
        "--sort",
        metavar="COLUMN",
        help="order by this column instead of the objective's rank, best first for scores "
        "(NDS, mAP, pct_of_reference), lowest first otherwise (e.g. trial_equivalents, lr); "
        "default: the objective's rank",
    )
    p.add_argument(
        "--state",
        choices=STATES,
        default="all",
        help="show only trials in this state (default: all)",
    )
    p.add_argument("--top", type=int, default=None, help="show only the first N (default: all)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from scaleout.results.headline import headline
    from scaleout.results.leaderboard import (
        leaderboard_rows,
        metadata,
        rich_table,
        select,
        to_csv,
        to_json,
    )
    from scaleout.sweep.workspace import SweepStore

    store = SweepStore.open(args.name, args.workspace)
    knobs, plan = store.knobs, store.plan
    records = store.records()
    rows = leaderboard_rows(records, store.objective, store.direction, knobs=knobs, plan=plan)
    rows = select(
        rows,
        state=args.state,
        sort=args.sort,
        objective=store.objective,
        direction=store.direction,
        knobs=knobs,
    )
    rows = rows[: args.top] if args.top else rows
    if args.format == "csv":
        print(to_csv(rows, knobs), end="")
        return 0
    head = headline(plan, records)
    if args.format == "json":
        print(to_json(rows, knobs, meta=metadata(store.name, plan, head)))
        return 0
    from scaleout.cli.render import make_console

    console = make_console()
    if not records:
        console.print(f"sweep {store.name} has no trials yet")
        return 0
    console.print(head.text(), highlight=False, soft_wrap=True)
    if not rows:
        console.print(f"no {args.state} trials in sweep {store.name}")
    else:
        console.print(rich_table(rows, store.objective, knobs=knobs, width=console.width))
    return 0
