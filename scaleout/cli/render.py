"""Human-readable rendering (rich) of plans. JSON output lives next to the data (plan_to_dict)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from scaleout.core.knobs import KNOBS
from scaleout.core.plan import Plan


def make_console(*, stderr: bool = False) -> Console:
    """A console for CLI output: the terminal's width on a terminal; 140 columns when piped
    (rich's default of 80 squashes the tables into ellipses)."""
    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=140)


def fmt(value: float | int | None, kind: str = "g") -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or kind == "int":
        return f"{int(value):,}"
    if kind == "lr":
        return f"{value:.3e}"
    if kind == "h":
        return f"{value:,.2f}"
    return f"{value:.4g}"


def _kind(name: str) -> str:
    """How a knob's values print: whole numbers, or three significant digits."""
    k = KNOBS.get(name)
    if k is None or k.display:
        return "g"
    return "int" if k.integer else "lr"


def print_plan(plan: Plan, console: Console | None = None) -> None:
    console = console or make_console()
    ref, sc = plan.reference, plan.scale
    console.print(
        f"[bold]Plan[/] for [bold]{plan.gpus} GPUs x {plan.samples_per_gpu}[/] "
        f"(global batch {sc.target_global_batch}) from {plan.space_path}"
    )

    t = Table(title="Scale", title_justify="left")
    t.add_column("")
    t.add_column("reference", justify="right")
    t.add_column("target", justify="right")
    t.add_row(
        "GPUs x samples/GPU",
        f"{ref.gpus} x {ref.samples_per_gpu}",
        f"{plan.gpus} x {plan.samples_per_gpu}",
    )
    t.add_row("global batch", fmt(sc.reference_global_batch), fmt(sc.target_global_batch))
    t.add_row(
        "iterations / epoch", fmt(sc.reference_iters_per_epoch), fmt(sc.target_iters_per_epoch)
    )
    t.add_row(
        f"iterations ({sc.epochs} epochs)"
        if sc.trial_epochs == sc.epochs
        else f"iterations ({sc.epochs} / {sc.trial_epochs} epochs)",
        fmt(sc.reference_total_iters),
        fmt(sc.target_total_iters),
    )
    t.add_row("k (batch ratio)", "1", f"{sc.k:g}")
    console.print(t)

    t = Table(title="Rules", title_justify="left")
    t.add_column("parameter")
    t.add_column("rule")
    t.add_column("prediction", justify="right")
    for name, kp in plan.knobs.items():
        for label, v in kp.predictions.items():
            t.add_row(name, label, fmt(v, _kind(name)))
    console.print(t)

    t = Table(title="Search", title_justify="left")
    t.add_column("parameter")
    t.add_column("low", justify="right")
    t.add_column("high", justify="right")
    t.add_column("scale")
    for name, rng in plan.ranges.items():
        kind = _kind(name)
        t.add_row(name, fmt(rng.low, kind), fmt(rng.high, kind), "log" if rng.log else "linear")
    for name, value in plan.fixed.items():
        t.add_row(name, str(value), "", "fixed")
    for name, rule in plan.follows.items():
        t.add_row(name, f"follows {rule.label}", "", "per trial")
    console.print(t)
    for name, kp in plan.knobs.items():
        if kp.cap is not None and kp.range is not None:
            console.print(
                f"  {name} is capped per trial so lr x ratio <= {kp.cap:.3g} (the reference floor)"
            )

    t = Table(title="Seed trials (run first)", title_justify="left")
    t.add_column("origin")
    for name in plan.knobs:
        t.add_column(name, justify="right")
    for s in plan.seeds:
        t.add_row(s.origin, *(fmt(s.values[name], _kind(name)) for name in plan.knobs))
    console.print(t)

    c = plan.cost
    unit = "trial-equivalents" if plan.counts_cost else "trials"
    console.print(
        f"[bold]Budget[/]: {plan.trials} {unit}, objective {plan.objective} "
        f"({plan.direction}), sampler {plan.space.sampler.type}, "
        f"pruner {plan.space.pruner.type}"
    )
    # Where epochs vary, the figures are per trial-equivalent: a trial of the plan's length.
    unit_trial = "trial-equivalent" if plan.counts_cost else "trial"
    per = f"{unit_trial} ({sc.trial_epochs} epochs)" if plan.counts_cost else unit_trial
    line = f"[bold]Cost[/]: {c.iters_per_trial:,} iterations per {per}"
    if c.gpu_hours_per_trial is not None:
        line += (
            f"; {fmt(c.gpu_hours_per_trial, 'h')} GPU-hours and "
            f"{fmt(c.wall_time_h_per_trial, 'h')} h wall per {unit_trial} at {plan.gpus} GPUs; "
            f"{fmt(c.gpu_hours_per_trial * plan.trials, 'h')} GPU-hours for the budget "
            f"({c.basis})"
        )
    else:
        line += " (give reference.wall_time_h or sample_time_s for GPU-hours)"
    if plan.counts_cost:
        top = plan.max_trial_epochs / max(1, sc.trial_epochs)
        line += f"; a trial of {plan.max_trial_epochs} epochs costs {top:.3g}"
    console.print(line)
    if plan.reference_sources:
        t = Table(title="Reference recipe (where each value came from)", title_justify="left")
        t.add_column("key")
        t.add_column("value", justify="right")
        t.add_column("source")
        for name, source in plan.reference_sources.items():
            if name.startswith("metric."):
                value = ref.metric[name.removeprefix("metric.")]
            else:
                value = getattr(ref, name)
            t.add_row(name, f"{value:.6g}", source)
        console.print(t)
    for note in plan.notes:
        console.print(f"[dim]note: {note}[/]")
