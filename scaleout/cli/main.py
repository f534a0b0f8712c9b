"""The `scaleout` command line. Errors the user can act on print one message, no traceback."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import TextIO

from scaleout import __version__
from scaleout.core.errors import ScaleoutError

COMMANDS = (
    "plan",
    "sweep",
    "status",
    "list",
    "best",
    "leaderboard",
    "cancel",
    "report",
    "ui",
    "probe",
    "fit",
)
LOG_LEVELS = ("warning", "info", "debug")
LOG_HELP = "what scaleout logs to stderr (default: warning); debug shows every Slurm and Ray call"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaleout",
        description="Sweep lr, warmup and min_lr for BEVFormer-family training at a new GPU "
        "count, with ranges derived from the sqrt and linear scaling rules.",
        epilog="Start here: scaleout plan --gpus 160 --space search_spaces/lr_scaling.yaml",
    )
    parser.add_argument("--version", action="version", version=f"scaleout {__version__}")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="warning", help=LOG_HELP)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"scaleout.cli.commands.{name}").add_parser(sub)
    # Also after the command (`scaleout sweep ... --log-level debug`), where people type it;
    # SUPPRESS keeps the global value when the command's copy is not given.
    for command in sub.choices.values():
        command.add_argument(
            "--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS, help=LOG_HELP
        )
    return parser


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time: the live progress view (rich) and test
    capture replace it, and a handler holding the old stream would write past them."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(level: str) -> None:
    """The `scaleout` loggers to stderr at `level` (one handler, however often it is called);
    other libraries' loggers are left as they are."""
    logger = logging.getLogger("scaleout")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
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
