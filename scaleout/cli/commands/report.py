"""`scaleout report NAME`: a sweep as a self-contained HTML page and as Markdown."""

from __future__ import annotations

import argparse

HELP = "write a sweep's report: plan, leaderboard, plots, failures and cost (HTML + Markdown)"
DESCRIPTION = """\
Write report.html (one self-contained file, plots embedded) and report.md with its plots
as PNG files beside it. A sweep without a finished trial still gets a report (plan,
failures, cost) that says so.

examples:
  scaleout report lr_scaling-160g
  scaleout report lr_scaling-160g --out reports/160g
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="the sweep's name (scaleout list shows them)")
    p.add_argument("--out", metavar="DIR", help="where to write (default: <sweep folder>/report)")
    p.add_argument(
        "--workspace",
        help="where sweeps live (default: $SCALEOUT_WORKSPACE, else ./scaleout-workspace)",
    )
    p.add_argument(
        "--mlflow-uri",
        help="the MLflow store, if it moved since the sweep ran (default: the one the sweep "
        "recorded)",
    )
    p.add_argument(
        "--no-mlflow",
        action="store_true",
        help="report from the study alone: no per-epoch mAP, no MLflow-only metrics "
        "(default: the study and MLflow)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from scaleout.results.report import build_report

    uri = "" if args.no_mlflow else args.mlflow_uri
    rep = build_report(args.name, args.workspace, out=args.out, mlflow_uri=uri)
    if not rep.finished:
        print(f"sweep {args.name} has no finished trials yet: the report has no plots")
    print(f"report: {rep.html}")
    print(f"        {rep.markdown} ({len(rep.plots)} plots beside it)")
    return 0
