"""`scaleout probe`: the gradient noise scale B_simple of the reference recipe -> probe.json."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from scaleout.cli.commands.common import add_trainer_args, positive_int, print_json, trainer_flags
from scaleout.executors import EXECUTOR_NAMES

HELP = "measure the reference recipe's gradient noise scale (B_simple) into probe.json"
DESCRIPTION = """\
Run the reference recipe for about a thousand iterations through the trainer adapter and the
executor a sweep uses (or read a run you have: --from-run DIR), estimate the gradient noise
scale B_simple from the two squared gradient norms its logs carry (McCandlish et al. 2018,
the two-batch estimator of appendix A.1), and write it with its 95% band, the iterations it
covers and this command to probe.json. The `noise` lr rule reads it:

  search:
    lr:
      rules: [sqrt, linear, {rule: noise, probe: probe.json}]

minibev logs the statistics itself; mmcv and mmengine trainers log them with scaleout's
hook (docs/evidence.md): without it the probe prints the config lines that enable it.

examples:
  scaleout probe --space search_spaces/lr_scaling.yaml --gpus 8
  scaleout probe --space search_spaces/lr_scaling.yaml --preset tiny --iters 60 --json
  scaleout probe --space search_spaces/bevformer_base.yaml --from-run work_dirs/bevformer_base
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe", help=HELP, description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--space", required=True, metavar="FILE", help="search-space YAML (required)")
    p.add_argument(
        "--iters",
        type=positive_int("--iters"),
        metavar="N",
        help="iterations to cover (default: 1200 for a run; a --from-run reads all)",
    )
    p.add_argument(
        "--gpus",
        type=positive_int("--gpus"),
        help="data-parallel GPUs the recipe runs at (default: the reference's)",
    )
    p.add_argument(
        "--from-run",
        metavar="DIR",
        help="read this run's logs (the trainer's work dir) instead of running the recipe "
        "(default: run it)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        default="probe.json",
        help="where to write the result (default: probe.json)",
    )
    p.add_argument(
        "--work-dir",
        metavar="DIR",
        help="the probe run's work dir, a new folder (default: "
        "<workspace>/probes/<space>-<gpus>g-<time>)",
    )
    p.add_argument("--workspace", help="where sweeps live (default: $SCALEOUT_WORKSPACE or "
                   "./scaleout-workspace); probe runs go under its probes/")  # fmt: skip
    p.add_argument(
        "--executor",
        default="local",
        choices=EXECUTOR_NAMES,
        help="where the probe runs (default: local; see docs/clusters.md)",
    )
    p.add_argument("--json", action="store_true", help="print probe.json to stdout as well")
    add_trainer_args(p)
    p.set_defaults(run=run)


def command_line(args: argparse.Namespace) -> str:
    """The command as it ran, from its parsed flags (what probe.json records)."""
    words = ["scaleout", "probe", "--space", args.space]
    for flag, value in (
        ("--iters", args.iters), ("--gpus", args.gpus), ("--from-run", args.from_run),
        ("--out", args.out), ("--work-dir", args.work_dir), ("--trainer", args.trainer),
        ("--preset", args.preset), ("--config", args.config), ("--repo", args.repo),
        ("--profile", args.profile), ("--reference-gpus", args.reference_gpus),
    ):  # fmt: skip
        if value is not None:
            words += [flag, str(value)]
    if args.executor != "local":
        words += ["--executor", args.executor]
    return shlex.join(words)


def _check_out(path: Path) -> None:
    from scaleout.core.errors import UsageError

    if path.is_dir():
        raise UsageError(f"--out {path}: is a directory; give the file to write, e.g. probe.json")
    if not path.parent.is_dir():
        raise UsageError(f"--out {path}: the folder {path.parent} does not exist")


def run(args: argparse.Namespace) -> int:
    from scaleout.core.errors import UsageError
    from scaleout.core.files import write_atomic
    from scaleout.evidence import noise, probe
    from scaleout.sweep.session import build_plan
    from scaleout.sweep.workspace import workspace_root

    flags = {k: v for k, v in trainer_flags(args).items() if v is not None}
    out = Path(args.out)
    _check_out(out)
    gpus = args.gpus
    if gpus is None:  # the reference's GPU count, read from the space file or the trainer
        gpus = probe.default_gpus(args.space, flags)
    plan, trainer, choice = build_plan(
        args.space, gpus, trainer_flags=flags, need_trainer=True, strict=args.from_run is None
    )
    if args.from_run is not None:
        result = probe.read_run(trainer, Path(args.from_run), args.iters)
        iters = args.iters
    else:
        iters = args.iters or probe.DEFAULT_ITERS
        if args.work_dir is not None:
            work = Path(args.work_dir).resolve()  # the trainer runs in it: no relative paths
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            work = (
                workspace_root(args.workspace)
                / "probes"
                / f"{Path(args.space).stem}-{gpus}g-{stamp}"
            )
        if work.exists() and any(work.iterdir()):
            raise UsageError(
                f"--work-dir {work}: not empty; a probe runs in a new folder",
                hint=f"read that run with --from-run {work}",
            )
        from scaleout.executors import make_executor

        executor = make_executor(args.executor, {}, 1)
        print(
            f"probe: the reference recipe at {gpus} GPUs (global batch "
            f"{plan.scale.target_global_batch}) for up to {iters} iterations in {work}",
            file=sys.stderr,
        )
        result = probe.run_probe(plan, trainer, executor, work, iters)
    probe.require_stats(result, trainer)
    ns = noise.estimate(result.stats, source=str(result.work_dir))
    doc = probe.probe_document(ns, result, plan, choice, command_line(args), iters)
    import json

    write_atomic(out, json.dumps(doc, indent=2) + "\n")
    if args.json:
        print_json(doc)
    else:
        _print(doc, out)
    return 0


def _print(doc: dict, out: Path) -> None:
    lo, hi = doc["band"]
    it = doc["iterations"]
    print(
        f"B_simple = {doc['b_simple']:.3g} samples (95% band {lo:.3g}-{hi:.3g}; measured over "
        f"iterations {it['first']}-{it['last']}, {doc['points']} points, B_small "
        f"{doc['batch_small']:g}, B_big {doc['batch_big']:g})"
    )
    ema = doc.get("b_simple_ema")
    if ema:
        print(f"  EMA at the last point (beta {doc['ema_beta']:g}): {ema:.3g} samples")
    for block in doc["blocks"]:
        shown = f"{block['b_simple']:.3g}" if block["b_simple"] else "n/a"
        print(f"  iterations {block['first_iter']}-{block['last_iter']}: {shown}")
    print(f"  band: {doc['band_method']}")
    print(f"wrote {out}; use it: search.lr.rules: [sqrt, linear, {{rule: noise, probe: {out}}}]")
