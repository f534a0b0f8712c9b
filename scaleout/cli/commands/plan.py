"""`scaleout plan`: show the ranges, seed trials and cost the scaling rules give."""

from __future__ import annotations

import argparse

from scaleout.cli.commands.common import add_target_args, add_trainer_args, load_plan, print_json

HELP = "derive the search ranges for a target GPU count (no trial is run)"
DESCRIPTION = """\
Derive, from the reference recipe and the scaling rules, the coupled ranges for lr,
warmup and min_lr_ratio at the target GPU count (and, where the space names them, the
co-scaled weight_decay, beta1, beta2, epochs and samples_per_gpu), the seed trials
(reference, sqrt, linear) and the cost per trial. Reference values missing from the space
file are read from the trainer's config; the output says which value came from where.

example:
  scaleout plan --gpus 160 --space search_spaces/bevformer_base.yaml
  scaleout plan --gpus 160 --space search_spaces/lr_scaling.yaml --json
  scaleout plan --gpus 160 --space search_spaces/bevformer_base_coscaled.yaml
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_args(p)
    add_trainer_args(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print the plan as JSON (schema scaleout.plan/1, docs/plan.md; default: tables)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    plan = load_plan(args)
    if args.json:
        from scaleout.core.plan import plan_to_dict

        print_json(plan_to_dict(plan))
    else:
        from scaleout.cli.render import print_plan

        print_plan(plan)
    return 0
