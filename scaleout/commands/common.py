"""Pieces shared by several subcommands: the trainer/space options and reference resolution."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from scaleout.errors import UsageError


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


def add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gpus",
        type=positive_int("--gpus"),
        required=True,
        help="target GPU count (data-parallel), e.g. 160",
    )
    p.add_argument(
        "--space",
        required=True,
        metavar="FILE",
        help="search-space YAML, e.g. search_spaces/lr_scaling.yaml",
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
        help="minibev, mmengine, bevformer (mmcv 1.x), easycv, petr or command",
    )
    g.add_argument("--preset", default=None, help="minibev preset: tiny, small (default), base")
    g.add_argument("--config", default=None, help="the trainer's config file (relative to --repo)")
    g.add_argument("--repo", default=None, help="the trainer's repository checkout")
    g.add_argument("--profile", default=None, help="a command-trainer profile YAML")


def trainer_choice(args: argparse.Namespace, space: Any) -> dict[str, Any]:
    """The trainer the user asked for: flags over the space file's trainer: section."""
    spec = space.trainer
    return {
        "name": args.trainer or spec.name,
        "preset": args.preset or spec.preset,
        "config": args.config or spec.config,
        "repo": args.repo or spec.repo,
        "profile": args.profile or spec.profile,
        "options": dict(spec.options),
    }


def build_trainer(choice: dict[str, Any]):
    from scaleout.trainers import get_trainer

    return get_trainer(
        choice["name"],
        config=choice["config"],
        repo=choice["repo"],
        preset=choice["preset"],
        profile=choice["profile"],
        **choice["options"],
    )


def load_plan(args: argparse.Namespace, *, need_trainer: bool = False):
    """Space file + reference (space over trainer config) + target -> (plan, trainer or None).

    The trainer's config is read only when the space file leaves reference values out
    (or when the caller needs the trainer anyway), so a complete space file plans without it.
    """
    from scaleout.plan import make_plan
    from scaleout.rules import Reference
    from scaleout.space import load_space, resolve_reference

    space = load_space(args.space)
    given = space.reference.model_dump(exclude_none=True)
    trainer = None
    trainer_values: dict[str, Any] = {}
    if need_trainer or any(n not in given for n in Reference.required_names()):
        trainer = build_trainer(trainer_choice(args, space))
        trainer_values = trainer.reference()
    reference, sources = resolve_reference(space, trainer_values, args.space)
    plan = make_plan(
        space,
        reference,
        args.gpus,
        samples_per_gpu=args.samples_per_gpu,
        reference_sources=sources,
        space_path=Path(args.space),
    )
    return plan, trainer


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)
