"""CLI subcommands. Each module defines `add_parser(subparsers)` and `run(args) -> int`.

Modules here import only argparse-level things at import time; the heavy work is
imported inside `run`, so `scaleout --help` and `scaleout plan` stay fast.
"""
