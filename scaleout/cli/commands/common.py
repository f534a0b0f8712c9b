"""Pieces shared by several subcommands: the trainer/space options and reference resolution."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def positive_int(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{flag} must be positive, got {value}")
        return value

    return parse


def nonnegative_int(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{flag} must be 0 or more, got {value}")
        return value

    return parse


def add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gpus",
        type=positive_int("--gpus"),
        required=True,
        help="target GPU count (data-parallel), e.g. 160 (required)",
    )
    p.add_argument(
        "--space",
        required=True,
        metavar="FILE",
        help="search-space YAML, e.g. search_spaces/lr_scaling.yaml (required)",
    )
    p.add_argument(
        "--samples-per-gpu",
        type=positive_int("--samples-per-gpu"),
        default=None,
        help="samples per GPU at the target (default: the space's target, else the reference's)",
    )


def add_trainer_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trainer (default: the space file's trainer: section, else minibev)")
    g.add_argument(
        "--trainer",
        default=None,
        help="minibev, mmengine, bevformer (mmcv 1.x), easycv, petr or command (default: the "
        "space file's trainer.name, else minibev)",
    )
    g.add_argument(
        "--preset",
        default=None,
        help="minibev preset: tiny (a plumbing check in seconds), small, base (default: the "
        "space file's trainer.preset, else small)",
    )
    g.add_argument(
        "--config",
        default=None,
        help="the trainer's config file, relative to --repo (default: the space file's "
        "trainer.config; minibev: the preset's)",
    )
    g.add_argument(
        "--repo",
        default=None,
        help="the trainer's repository checkout (default: the space file's trainer.repo, "
        "else the folder above --config that holds tools/train.py)",
    )
    g.add_argument(
        "--profile",
        default=None,
        help="a command-trainer profile: a YAML file or a shipped name (default: the space "
        "file's trainer.profile)",
    )
    g.add_argument(
        "--reference-gpus",
        type=positive_int("--reference-gpus"),
        default=None,
        help="the GPU count the trainer's config was tuned at, when neither the "
        "config nor the space file says (BEVFormer's recipe: 8; default: the space file's "
        "reference.gpus, else the config's)",
    )


def trainer_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": args.trainer,
        "preset": args.preset,
        "config": args.config,
        "repo": args.repo,
        "profile": args.profile,
        "reference_gpus": args.reference_gpus,
    }


def load_plan(args: argparse.Namespace):
    """The plan for the command's --space/--gpus/--trainer flags (see session.build_plan)."""
    from scaleout.sweep.session import build_plan

    plan, _, _ = build_plan(
        args.space,
        args.gpus,
        samples_per_gpu=args.samples_per_gpu,
        trainer_flags=trainer_flags(args),
    )
    return plan


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


WORKSPACE_HELP = "where sweeps live (default: $SCALEOUT_WORKSPACE, else ./scaleout-workspace)"


def add_workspace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", metavar="DIR", help=WORKSPACE_HELP)


def sweep_trainer(meta: dict[str, Any]) -> Any:
    """The trainer adapter a saved sweep runs with (sweep.json's `trainer`), as the controller
    builds it: it reads the trials' own logs and spells their values in the trainer's keys."""
    from scaleout.sweep.session import trainer_from_choice

    return trainer_from_choice(meta["trainer"])
