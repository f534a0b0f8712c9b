"""The live view of a running sweep (rich): one row per running trial, totals, best so far
against the reference recipe, and the cost so far in labelled units.

    3 done, 1 pruned, 0 failed, 2 running of 10 | 4:12
    best NDS 0.352 (t007, lr 1.20e-02) = 92% of the 8-GPU 0.384, 77% of the drop recovered
    cost so far: 4.6 trial-eq | 0.15 GPU-h at 160 GPUs (est.) | 0.31 CPU-h here

On a terminal it redraws in place; elsewhere (CI, a log file) it prints one line per event.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from scaleout.core.plan import plan_to_dict
from scaleout.results.format import (
    fmt_duration,
    fmt_gpu_hours,
    fmt_lr,
    fmt_pct,
    fmt_score,
    fmt_share,
    fmt_trial,
    fmt_trial_equivalents,
)
from scaleout.results.headline import Cost, Headline, TrialCost, headline, sweep_basis, trial_cost
from scaleout.results.leaderboard import Column, fit_table
from scaleout.sweep.budget import ESTIMATED
from scaleout.sweep.controller import Controller, Event
from scaleout.sweep.search import Attr, TrialState, TrialView
from scaleout.sweep.workspace import TrialRecord


def _record(view: TrialView, objective: str) -> TrialRecord:
    """A stored trial as the results read it (the parts the headline uses)."""
    ua = view.attrs
    result = ua.get(Attr.RESULT) or {}
    state = view.state.name
    return TrialRecord(
        number=view.number,
        state=state,
        origin=ua.get(Attr.ORIGIN, "sampled"),
        value=view.value if state == "COMPLETE" else result.get(objective),
        params={**view.params, **(ua.get(Attr.PARAMS) or {})},
        result=result,
        attempts=int(ua.get(Attr.ATTEMPT, 0)),
        job={},
        work_dir=None,
        run_id=ua.get(Attr.RUN_ID),
        failure={},
    )


def live_headline(controller: Controller, plan: dict[str, Any] | None = None) -> Headline:
    """The headline so far: finished trials from the study, running ones from the
    controller (their epochs so far, their cost to now)."""
    plan = plan or plan_to_dict(controller.plan)
    records = [_record(v, controller.plan.objective) for v in controller.searcher.trials()]
    finished = [r for r in records if r.state not in ("RUNNING", "WAITING")]
    cost = Cost.of(
        (trial_cost(r, plan, sweep_basis(finished)) for r in finished),
        plan["cost"].get("gpu_hours_per_trial"),
    )
    now = controller.clock.now()
    pricing = controller.pricing
    for act in controller.active.values():
        target = act.target_gpu_hours(now, controller.plan.gpus)
        cost = cost.plus(
            TrialCost(
                trial_equivalents=pricing.trial_equivalents(act.epochs_run),
                target_gpu_hours=target,
                basis=pricing.basis if target is not None else None,
                compute_hours_here=act.here_hours(now),
                compute_unit_here=pricing.here_unit,
            )
        )
    return headline(plan, records, cost=cost)


def totals(controller: Controller) -> dict[str, Any]:
    trials = controller.searcher.trials()
    counts = {s: sum(1 for t in trials if t.state == s) for s in TrialState}
    best = None
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if done:
        pick = max if controller.plan.direction == "maximize" else min
        best = pick(done, key=lambda t: t.value)
    return {
        "complete": counts[TrialState.COMPLETE],
        "pruned": counts[TrialState.PRUNED],
        "failed": counts[TrialState.FAIL],
        "running": len(controller.active),
        "budget": controller.budget.trials,
        "best": best,
    }


def best_line(h: Headline, best: TrialView | None) -> str:
    """`best NDS 0.352 (t007, lr 1.20e-02) = 92% of the 8-GPU 0.384, 77% of the drop
    recovered`: the best so far against the reference recipe at its own scale."""
    if best is None or best.value is None:
        return f"best {h.metric}: - (no completed trial yet)"
    lr = (best.attrs.get(Attr.PARAMS) or {}).get("lr")
    text = f"best {h.metric} {fmt_score(best.value)} ({fmt_trial(best.number)}"
    text += f", lr {fmt_lr(lr)})" if lr is not None else ")"
    if h.reference is not None:
        at = f"{h.reference_gpus}-GPU" if h.reference_gpus else "reference's"
        text += f" = {fmt_pct(100.0 * best.value / h.reference)} of the {at} "
        text += fmt_score(h.reference)
    share = h.recovered_share
    if share is not None:
        text += f", {fmt_share(share)} of the drop recovered"
    return text


def cost_line(h: Headline) -> str:
    """`cost so far: 4.6 trial-eq | 0.15 GPU-h at 160 GPUs (est.) | 0.31 CPU-h here`."""
    c = h.cost
    parts = [f"cost so far: {fmt_trial_equivalents(c.trial_equivalents)} trial-eq"]
    if c.target_gpu_hours is not None:
        est = " (est.)" if c.basis == ESTIMATED else ""
        parts.append(f"{fmt_gpu_hours(c.target_gpu_hours)} GPU-h at {h.gpus} GPUs{est}")
    else:
        parts.append(f"GPU-h at {h.gpus} GPUs: no cost basis")
    if c.compute_hours_here is not None:
        unit = (c.compute_unit_here or "").replace("-hours", "-h")
        parts.append(f"{fmt_gpu_hours(c.compute_hours_here)} {unit} here")
    return " | ".join(parts)


class ProgressView:
    def __init__(self, controller: Controller, console: Console | None = None) -> None:
        self.c = controller
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self.t0 = time.time()
        self.plan = plan_to_dict(controller.plan)

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(
                self.render(), console=self.console, auto_refresh=False, transient=False
            )
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)
            self.live.__exit__(None, None, None)

    def event(self, e: Event) -> None:
        if e.kind == "epoch" and self.live is not None:
            return  # the table shows it
        style = {"completed": "green", "failed": "red", "pruned": "yellow"}.get(e.kind, "")
        first, *rest = e.message.split("\n")
        line = Text(f"t{e.number:03d} {e.kind:<10} {first}", style=style)
        self.console.print(line, highlight=False)
        if rest:
            self.console.print(Text("\n".join(f"    | {r}" for r in rest), style="dim"))

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)

    # The running trials' table: these stay readable at any width, the rest fit or drop.
    KEY_COLUMNS = ("trial", "lr", "warmup", "epoch", "objective")

    def render(self) -> Group:
        plan = self.c.plan
        cols = [
            Column("trial", "trial", "left"),
            Column("origin", "origin", "left"),
            Column("lr", "lr"),
            Column("warmup", "warmup"),
            Column("min_lr_ratio", "min_lr_ratio"),
            Column("try", "try"),
            Column("epoch", "epoch"),
            Column("objective", plan.objective),
            Column("elapsed", "elapsed"),
            Column("ETA", "ETA"),
        ]
        now = self.c.clock.now()
        cells = []
        for act in sorted(self.c.active.values(), key=lambda a: a.number):
            p = act.params
            epochs = int(p.get("epochs") or plan.scale.trial_epochs)  # its own length
            done = act.metrics.last_epoch
            elapsed = now - act.started
            eta = elapsed / done * (epochs - done) if done else None
            latest = act.metrics.latest(plan.objective)
            cells.append(
                [
                    fmt_trial(act.number),
                    act.origin,
                    f"{p['lr']:.2e}",
                    str(p["warmup_iters"]),
                    f"{p['min_lr_ratio']:.1e}",
                    str(act.attempt),
                    f"{done}/{epochs}",
                    "-" if latest is None else f"{latest:.4f}",
                    fmt_duration(elapsed),
                    fmt_duration(eta),
                ]
            )
        table = fit_table(
            cols,
            cells,
            width=self.console.width,
            keep=self.KEY_COLUMNS,
            priority=("origin", "elapsed", "ETA", "min_lr_ratio", "try"),
        )
        tot = totals(self.c)
        h = live_headline(self.c, self.plan)
        counts = Text(
            f"{tot['complete']} done, {tot['pruned']} pruned, {tot['failed']} failed, "
            f"{tot['running']} running of {tot['budget']} | "
            f"{fmt_duration(time.time() - self.t0)}"
        )
        return Group(table, counts, Text(best_line(h, tot["best"])), Text(cost_line(h)))
