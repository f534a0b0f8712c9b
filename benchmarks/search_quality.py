"""Search quality: how many trial-equivalents each method needs to a recipe near the best.

Every method runs through scaleout's real controller, searcher, samplers and pruners against
the tabulated minibev blackbox (benchmarks/blackbox.py) on simulated time
(benchmarks/replay.py), over `--reps` repetitions (sampler seed and seed-noise draw vary
together). The budget is `--budget` trial-equivalents: one full-length 160-GPU trial = 1, a
pruned trial costs the share of its epochs it ran; trials still running when the budget is
spent count what they ran and are stopped.

    python benchmarks/search_quality.py [--reps 20] [--budget 16] [--json] [--table PATH]

For each method: trial-equivalents until a trial's recipe is within 1% (also 2% and 5%) of the
table's best final NDS (the recipe's seed-averaged value, so noise cannot reach the target by
luck), as the median and IQR over repetitions ("not reached" counts as infinite and is
reported); the best recipe found after 4, 8 and 16 trial-equivalents; and the share of the
drop recovered, (best - reference recipe at 160) / (reference at 8 GPUs - reference recipe at
160).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))

from blackbox import TABLE, Blackbox
from replay import ReplayWorld, replay_controller

from scaleout.core.plan import Plan, make_plan
from scaleout.core.space import load_space, parse_space
from scaleout.sweep.session import build_plan

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "search_spaces" / "lr_scaling.yaml"
GPUS = 160
# What users type without the rules (the "hand-typed wide range").
WIDE = {
    "lr": {"range": [1e-4, 1e-1]},
    "warmup_iters": {"range": [1, 48]},
    "min_lr_ratio": {"range": [1e-5, 1e-1]},
}
MARKS = (4, 8, 16)
WITHIN = (0.01, 0.02, 0.05)  # shares of the table's best final NDS a method must come within


@dataclass(frozen=True)
class Method:
    name: str
    what: str
    overrides: dict[str, Any]
    base: str = "shipped"  # shipped: the space file + overrides; wide: the wide ranges
    path: str | None = None  # the space file (`--space NAME=FILE`); default lr_scaling.yaml


def methods() -> list[Method]:
    no_seeds = {"seeds": []}
    return [
        Method("scaleout", "the shipped lr_scaling.yaml (rules, seeds, TPE, its pruner)", {}),
        Method(
            "random-wide",
            "random sampling over a hand-typed wide range",
            {"sampler": {"type": "random"}, "pruner": {"type": "none"}, **no_seeds},
            "wide",
        ),
        Method(
            "tpe-wide",
            "TPE over the wide range, no seeds",
            {"pruner": {"type": "none"}, **no_seeds},
            "wide",
        ),
        Method(
            "grid-sqrt",
            "a 3 x 3 x 2 grid around the sqrt rule (the published practice)",
            {
                "sampler": {"type": "grid", "options": {"points": 3}},
                "pruner": {"type": "none"},
                **no_seeds,
            },
            "grid",
        ),
        Method("scaleout-noseeds", "shipped, without the seed trials", no_seeds),
        Method("scaleout-gp", "shipped with the GP sampler", {"sampler": {"type": "gp"}}),
        Method("scaleout-asha", "shipped with ASHA", {"pruner": {"type": "asha"}}),
        Method("scaleout-hyperband", "shipped with Hyperband", {"pruner": {"type": "hyperband"}}),
        Method("scaleout-nopruner", "shipped without a pruner", {"pruner": {"type": "none"}}),
    ]


def candidates() -> list[Method]:
    """Changes to the shipped defaults, each alone, measured to choose them (`--candidates`)."""
    median = {"type": "median", "options": {"n_startup_trials": 4, "n_warmup_steps": 2}}

    def pruner(**opts: int) -> dict[str, Any]:
        return {"pruner": {**median, "options": {**median["options"], **opts}}}

    return [
        Method(
            "c-warmup6", "median pruner, n_warmup_steps 6 (shipped 2)", pruner(n_warmup_steps=6)
        ),
        Method("c-warmup12", "median pruner, n_warmup_steps 12", pruner(n_warmup_steps=12)),
        Method(
            "c-startup2",
            "median pruner, n_startup_trials 2 (shipped 4)",
            pruner(n_startup_trials=2),
        ),
        Method(
            "c-seeds-ref-sqrt", "seeds reference and sqrt only", {"seeds": ["reference", "sqrt"]}
        ),
        Method(
            "c-widen1",
            "lr range exactly sqrt..linear (widen 1.0)",
            {"search": {"lr": {"widen": 1.0}}},
        ),
        Method("c-widen2", "lr range widened x2 each side", {"search": {"lr": {"widen": 2.0}}}),
        Method(
            "c-tpe-multivariate",
            "TPE with multivariate=True",
            {"sampler": {"type": "tpe", "options": {"multivariate": True}}},
        ),
    ]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def space_method(spec: str) -> Method:
    """`--space NAME=FILE`: a space file of the user's, run as it is (its own rules, seeds,
    sampler and pruner) on the same table; the budget is the benchmark's."""
    name, sep, path = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"wants NAME=FILE, got {spec!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path}: no such space file")
    return Method(name, f"the space file {path}", {}, path=str(Path(path).resolve()))


def method_plan(method: Method, reference_plan: Plan, seed: int) -> Plan:
    source = Path(method.path) if method.path else SHIPPED
    data = load_space(source).model_dump(exclude_none=True, by_alias=True)
    if method.base == "wide":
        data["search"] = _merge(data["search"], WIDE)
    if method.base == "grid":
        sq = reference_plan.knobs["lr"].predictions["sqrt"]
        data["search"] = _merge(
            data["search"],
            {
                "lr": {"range": [sq / 2, sq * 2]},
                "warmup_iters": {"range": [5, 48]},
                "min_lr_ratio": {"range": [1e-5, 1e-3]},
            },
        )
    data = _merge(data, {k: v for k, v in method.overrides.items() if k != "pruner"})
    if "pruner" in method.overrides:  # a pruner's options are its own: replace, not merge
        data["pruner"] = method.overrides["pruner"]
    data["budget"] = {"trials": 1000}  # the benchmark stops on trial-equivalents instead
    data.setdefault("sampler", {})["seed"] = seed
    if method.base == "grid":
        # 3 lr x 3 warmup x 2 min_lr_ratio points.
        data["sampler"]["options"] = {"points": 3, "values": {"min_lr_ratio": [1e-5, 1e-3]}}
    space = parse_space(data, source)
    plan = make_plan(
        space,
        reference_plan.reference,
        GPUS,
        reference_sources=reference_plan.reference_sources,
        space_path=source,
    )
    return plan


def run_once(bb: Blackbox, plan: Plan, rep: int, budget: float, parallel: int) -> dict[str, Any]:
    """One repetition: returns the trajectory of (trial-equivalents, best true NDS so far)."""
    world = ReplayWorld(bb, slots=parallel, gpus=GPUS, epoch_s=60.0, seed=rep)
    c = replay_controller(world, plan, Path(tempfile.mkdtemp(prefix="sq-")), 60.0)
    trajectory: list[tuple[float, float]] = []
    best = -math.inf
    seen: set[str] = set()

    def after_step() -> None:
        nonlocal best
        for name, job in world.jobs.items():
            if name in seen:
                continue
            done = world.epochs_done(job)
            if done >= world.epochs or job.cancelled_at is not None:
                seen.add(name)
                if done >= world.epochs:
                    p = world.params[job.work_dir]
                    true = bb.curve(p["lr"], p["warmup_iters"], p["min_lr_ratio"]).final_nds
                    best = max(best, true)
            spent = world.epochs_run() / world.epochs
            trajectory.append((spent, best))
        if world.epochs_run() / world.epochs >= budget:
            c.stop_requested = True

    c.run_with(after_step)
    c.cancel_all()
    return {"trajectory": trajectory, "trials": len(world.jobs)}


def _at(trajectory: list[tuple[float, float]], spent: float) -> float:
    best = -math.inf
    for s, b in trajectory:
        if s > spent + 1e-9:
            break
        best = b
    return best


def _reached(trajectory: list[tuple[float, float]], target: float) -> float:
    for s, b in trajectory:
        if b >= target:
            return s
    return math.inf


def _quantile(values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation between order statistics; "not reached"
    (infinite) values sort last, so a median past them is infinite too."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if not math.isfinite(v[hi]):
        return math.inf
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    return (_quantile(values, 0.25), _quantile(values, 0.5), _quantile(values, 0.75))


_STATE: dict[str, Any] = {}


def _init(table: str, partial: bool) -> None:
    """Per worker process: the table and the reference plan, loaded once."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    _STATE["bb"] = Blackbox.load(Path(table), partial=partial)
    _STATE["plan"] = build_plan(SHIPPED, GPUS)[0]


def _one(method: Method, rep: int, budget: float, parallel: int) -> dict:
    plan = method_plan(method, _STATE["plan"], rep)
    return run_once(_STATE["bb"], plan, rep, budget, parallel)


def _band(runs: list[dict[str, Any]], budget: float, step: float = 0.25) -> dict[str, list]:
    """Best-so-far against trial-equivalents: quartiles over repetitions on a grid of `step`."""
    xs = [round(i * step, 6) for i in range(int(budget / step) + 1)]
    bands: dict[str, list] = {"trial_equivalents": xs, "q1": [], "median": [], "q3": []}
    for x in xs:
        vals = [_at(r["trajectory"], x) for r in runs]
        vals = [v if math.isfinite(v) else math.nan for v in vals]
        finite = sorted(v for v in vals if v == v)
        if len(finite) < len(vals) / 2:  # most repetitions have no finished trial yet
            bands["q1"].append(None), bands["median"].append(None), bands["q3"].append(None)
            continue
        padded = [-math.inf] * (len(vals) - len(finite)) + finite
        q = [_quantile_low(padded, f) for f in (0.25, 0.5, 0.75)]
        for key, v in zip(("q1", "median", "q3"), q, strict=True):
            bands[key].append(v if math.isfinite(v) else None)
    return bands


def _quantile_low(v: list[float], q: float) -> float:
    pos = q * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if not math.isfinite(v[lo]):
        return v[lo] if not math.isfinite(v[hi]) else v[hi]
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def plot(out: dict[str, Any], path: Path) -> None:
    """Median best-so-far NDS with its IQR band per method, the table's best and the 1% line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, row in out["methods"].items():
        b = row["best_so_far"]
        xs = [x for x, m in zip(b["trial_equivalents"], b["median"], strict=True) if m is not None]
        med = [m for m in b["median"] if m is not None]
        lo = [q for q, m in zip(b["q1"], b["median"], strict=True) if m is not None]
        hi = [q for q, m in zip(b["q3"], b["median"], strict=True) if m is not None]
        (line,) = ax.plot(xs, med, label=name, lw=1.6)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.12)
    ax.axhline(out["table_best_final_NDS"], color="k", lw=0.8, ls="--", label="table best")
    ax.axhline(out["target_NDS"], color="k", lw=0.8, ls=":", label="within 1% of best")
    if out.get("reference_NDS_at_8"):
        ax.axhline(out["reference_NDS_at_8"], color="grey", lw=0.8, label="8-GPU reference")
    ax.set_xlabel("trial-equivalents spent (one full 160-GPU trial = 1)")
    ax.set_ylabel("best final NDS so far (seed-averaged recipe)")
    ax.set_title(f"minibev small at 160 GPUs: median and IQR over {out['reps']} repetitions")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--budget", type=float, default=16.0, help="trial-equivalents (default 16)")
    ap.add_argument("--parallel", type=int, default=2, help="trials at once (default 2)")
    ap.add_argument("--table", default=str(TABLE))
    ap.add_argument("--partial", action="store_true", help="accept an unfinished table")
    ap.add_argument("--only", nargs="*", help="method names to run (default: all)")
    ap.add_argument(
        "--candidates",
        action="store_true",
        help="also run candidate changes to the shipped defaults (c-*), each alone",
    )
    ap.add_argument(
        "--space",
        action="append",
        default=[],
        type=space_method,
        metavar="NAME=FILE",
        help="also run this space file as it is, as method NAME (repeatable)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--jobs", type=int, default=2, help="repetitions run at once (processes)")
    ap.add_argument("--plot", type=Path, help="write the best-so-far plot (PNG) here")
    args = ap.parse_args(argv)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    bb = Blackbox.load(Path(args.table), partial=args.partial)
    reference_plan, _, _ = build_plan(SHIPPED, GPUS)
    best_point = bb.best_final()
    best_table = best_point["NDS"]
    target = 0.99 * best_table
    ref = reference_plan.reference
    ref8 = ref.metric.get("NDS")
    ref160 = bb.curve(ref.lr, ref.warmup_iters, ref.min_lr_ratio).final_nds
    pool = methods() + (candidates() if args.candidates else []) + args.space
    chosen = [m for m in pool if not args.only or m.name in args.only]
    out: dict[str, Any] = {
        "budget_trial_equivalents": args.budget,
        "reps": args.reps,
        "parallel": args.parallel,
        "table_best_final_NDS": best_table,
        "table_best_point": best_point,
        "target_NDS": target,
        "reference_NDS_at_8": ref8,
        "reference_recipe_NDS_at_160": ref160,
        "methods": {},
    }
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        args.jobs, initializer=_init, initargs=(args.table, args.partial)
    ) as ex:
        futures = {
            m.name: [
                ex.submit(_one, m, rep, args.budget, args.parallel) for rep in range(args.reps)
            ]
            for m in chosen
        }
        t0 = time.perf_counter()
        for m in chosen:
            runs = [f.result() for f in futures[m.name]]
            _summarise(m, runs, args, out, target, ref8, ref160, t0)
            t0 = time.perf_counter()
    if args.plot:
        plot(out, args.plot)
    if args.json:
        print(json.dumps(_clean(out), indent=1))
    return 0


def _clean(x: Any) -> Any:
    """Strict JSON: "not reached" (infinite) and missing (NaN) become null; 4 significant
    digits are plenty for NDS and trial-equivalents."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float):
        return float(f"{x:.4g}") if math.isfinite(x) else None
    return x


def _summarise(
    m: Method,
    runs: list[dict[str, Any]],
    args: argparse.Namespace,
    out: dict[str, Any],
    target: float,
    ref8: float | None,
    ref160: float,
    t0: float,
) -> None:
    reach = [_reached(r["trajectory"], target) for r in runs]
    q1, med, q3 = _quantiles(reach)
    row: dict[str, Any] = {
        "what": m.what,
        "to_within_1pct": {"q1": q1, "median": med, "q3": q3},
        "not_reached": sum(1 for x in reach if not math.isfinite(x)),
        "to_within": {},
        "seconds": time.perf_counter() - t0,
        "trials_median": statistics.median(r["trials"] for r in runs),
    }
    for share in WITHIN:
        goal = out["table_best_final_NDS"] * (1 - share)
        reached = [_reached(r["trajectory"], goal) for r in runs]
        a, b, c = _quantiles(reached)
        row["to_within"][f"{share:.0%}"] = {
            "q1": a,
            "median": b,
            "q3": c,
            "not_reached": sum(1 for x in reached if not math.isfinite(x)),
        }
    for mark in MARKS:
        vals = [_at(r["trajectory"], mark) for r in runs]
        vals = [v for v in vals if math.isfinite(v)]
        row[f"best_after_{mark}"] = statistics.median(vals) if vals else None
    final = [_at(r["trajectory"], args.budget) for r in runs]
    final = [v for v in final if math.isfinite(v)]
    if final and ref8 is not None and ref8 > ref160:
        row["recovered_share"] = (statistics.median(final) - ref160) / (ref8 - ref160)
    row["best_so_far"] = _band(runs, args.budget)
    out["methods"][m.name] = row
    if not args.json:
        print(_line(m.name, row), flush=True)


def _line(name: str, row: dict[str, Any]) -> str:
    r = row["to_within_1pct"]

    def f(x: float) -> str:
        return "never" if not math.isfinite(x) else f"{x:.1f}"

    marks = " ".join(
        f"@{m}={row[f'best_after_{m}']:.3f}" if row[f"best_after_{m}"] is not None else f"@{m}=-"
        for m in MARKS
    )
    share = row.get("recovered_share")
    others = " ".join(
        f"{k}: {f(v['median'])} ({v['not_reached']} never)"
        for k, v in row["to_within"].items()
        if k != "1%"
    )
    return (
        f"{name:20s} median {f(r['median'])} TE (IQR {f(r['q1'])}-{f(r['q3'])}), "
        f"not reached {row['not_reached']}; {others}; best {marks}; "
        f"recovered {'-' if share is None else f'{share:.0%}'} [{row['seconds']:.0f} s]"
    )


if __name__ == "__main__":
    raise SystemExit(main())
