"""The `scaleout` command line. Errors the user can act on print one message, no traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from scaleout import __version__
from scaleout.core.errors import ScaleoutError

COMMANDS = ("plan", "sweep", "status", "leaderboard", "ui", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaleout",
        description="Sweep lr, warmup and min_lr for BEVFormer-family training at a new GPU "
        "count, with ranges derived from the sqrt and linear scaling rules.",
        epilog="Start here: scaleout plan --gpus 160 --space search_spaces/lr_scaling.yaml",
    )
    parser.add_argument("--version", action="version", version=f"scaleout {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"scaleout.cli.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except ScaleoutError as exc:
        print(f"scaleout: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("scaleout: interrupted", file=sys.stderr)
        return 130
