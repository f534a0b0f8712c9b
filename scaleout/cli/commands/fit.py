"""`scaleout fit`: lr_opt against the global batch from finished sweeps of one space file."""

from __future__ import annotations

import argparse
import sys

from scaleout.cli.commands.common import add_workspace_arg, positive_int, print_json

HELP = "fit lr_opt = lr_ref x k^alpha from sweeps of one space at two or more global batches"
DESCRIPTION = """\
From finished sweeps of the same space file at two or more global batches, take each one's
best lr with an uncertainty from its top trials, fit lr_opt = lr_ref x k^alpha by weighted
least squares in log-log (with a 95% interval on alpha), and the surge form of Li et al.
2024 where the optima rise and then fall; say which fits better, print the space-file rule
and, with --gpus, the lr it predicts at that target (docs/evidence.md).

examples:
  scaleout fit lr_scaling-16g lr_scaling-40g lr_scaling-80g --gpus 160
  scaleout fit lr_scaling-16g lr_scaling-80g --json --plot fit.png
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit", help=HELP, description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("sweeps", nargs="+", metavar="SWEEP", help="sweep names (scaleout list)")
    p.add_argument(
        "--gpus",
        type=positive_int("--gpus"),
        help="target GPU count to predict the lr at (default: no prediction)",
    )
    p.add_argument(
        "--samples-per-gpu",
        type=positive_int("--samples-per-gpu"),
        help="samples per GPU at the target (default: the sweeps' target)",
    )
    p.add_argument(
        "--top",
        type=positive_int("--top"),
        default=3,
        help="the best completed trials each sweep's optimum is taken from (default: 3)",
    )
    p.add_argument(
        "--plot", metavar="FILE", help="write the plot, png, svg or pdf (default: no plot)"
    )
    p.add_argument("--json", action="store_true", help="print the fit as JSON")
    p.add_argument("--mlflow-uri", help="MLflow store of the sweeps (default: as recorded)")
    add_workspace_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scaleout.core.errors import UsageError
    from scaleout.evidence.fitsweeps import fit_document
    from scaleout.results.frame import load_sweep

    if args.plot is not None:
        plot = Path(args.plot)
        if plot.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise UsageError(f"--plot {plot}: give a .png, .svg or .pdf file")
        if not plot.parent.is_dir():
            raise UsageError(f"--plot {plot}: the folder {plot.parent} does not exist")
    if args.top < 2:
        raise UsageError("--top: at least 2 trials per sweep give an uncertainty")
    frames = [load_sweep(n, args.workspace, mlflow_uri=args.mlflow_uri) for n in args.sweeps]
    doc, points = fit_document(
        frames, top=args.top, target_gpus=args.gpus, target_samples_per_gpu=args.samples_per_gpu
    )
    if args.plot is not None:
        from scaleout.evidence.fitplot import fit_figure, save_atomic

        save_atomic(fit_figure(doc, points), args.plot)
    if args.json:
        print_json(doc)
    else:
        _print(doc)
        if args.plot is not None:
            print(f"plot: {args.plot}")
    return 0


def _print(doc: dict) -> None:
    from scaleout.cli.render import fmt

    metric = doc["objective"]["metric"]
    print(f"lr_opt per sweep (geometric mean of the top {doc['top_trials']} trials by {metric}):")
    for s in doc["sweeps"]:
        lo, hi = s["lr_opt_interval"]
        print(
            f"  {s['sweep']}: global batch {s['global_batch']} (k {s['k']:g}): lr_opt "
            f"{fmt(s['lr_opt'])} [{fmt(lo)}, {fmt(hi)}], best trial t{s['trial_best']:03d} lr "
            f"{fmt(s['lr_best'])} {metric} {s['objective_best']:.4f}"
        )
    p = doc["power"]
    print(
        f"power (through the reference lr {fmt(doc['reference']['lr'])} at batch "
        f"{doc['reference']['global_batch']}): alpha {p['alpha']:.3f}, 95% interval "
        f"[{p['interval'][0]:.3f}, {p['interval'][1]:.3f}] (chi2 {p['chi2']:.2f}, dof {p['dof']})"
    )
    free = doc["power_free"]
    if free is not None:
        print(
            f"power, both free: alpha {free['alpha']:.3f} [{free['interval'][0]:.3f}, "
            f"{free['interval'][1]:.3f}], lr at k=1 {fmt(free['lr_at_k1'])}"
        )
    s = doc["surge"]
    if s["fitted"]:
        print(
            f"surge: lr_max {fmt(s['lr_max'])} at B_peak {s['b_peak']:.3g} (chi2 {s['chi2']:.2f})"
        )
    else:
        print(f"surge: not fitted: {s['why']}")
    print(f"fits better ({doc['better_by']}): {doc['better']}")
    print(f"rule for the space file: {doc['rule_yaml']}")
    t = doc.get("target")
    if t:
        pr = t["power"]
        print(
            f"predicted at {t['gpus']} GPUs (global batch {t['global_batch']}, k {t['k']:g}): lr "
            f"{fmt(pr['lr'])}, 95% interval [{fmt(pr['interval'][0])}, {fmt(pr['interval'][1])}]"
            f" ({t['basis']})"
        )
        if "surge" in t:
            print(f"  surge form: lr {fmt(t['surge']['lr'])}")
    sys.stdout.flush()
