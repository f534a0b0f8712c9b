"""The live view of a running sweep (rich): one row per running trial, totals, best so far.

On a terminal it redraws in place; elsewhere (CI, a log file) it prints one line per event.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from scaleout.results.format import fmt_duration
from scaleout.sweep.controller import Controller, Event
from scaleout.sweep.search import Attr, TrialState


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
        "gpu_hours": controller.gpu_hours_used(trials),
    }


class ProgressView:
    def __init__(self, controller: Controller, console: Console | None = None) -> None:
        self.c = controller
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self.t0 = time.time()

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

    def render(self) -> Group:
        plan = self.c.plan
        t = Table(title=None, expand=False)
        for col in (
            "trial",
            "origin",
            "lr",
            "warmup",
            "min_lr_ratio",
            "try",
            "epoch",
            plan.objective,
            "elapsed",
            "ETA",
        ):
            t.add_column(col, justify="left" if col in ("trial", "origin") else "right")
        now = self.c.clock.now()
        for act in sorted(self.c.active.values(), key=lambda a: a.number):
            p = act.params
            epochs = plan.scale.trial_epochs
            done = act.metrics.last_epoch
            elapsed = now - act.started
            eta = elapsed / done * (epochs - done) if done else None
            latest = act.metrics.latest(plan.objective)
            t.add_row(
                f"t{act.number:03d}",
                act.origin,
                f"{p['lr']:.2e}",
                str(p["warmup_iters"]),
                f"{p['min_lr_ratio']:.1e}",
                str(act.attempt),
                f"{done}/{epochs}",
                "-" if latest is None else f"{latest:.4f}",
                fmt_duration(elapsed),
                fmt_duration(eta),
            )
        tot = totals(self.c)
        best = tot["best"]
        best_text = (
            "-"
            if best is None
            else (f"{best.value:.4f} (t{best.number:03d}, lr {best.attrs[Attr.PARAMS]['lr']:.2e})")
        )
        line = Text(
            f"{tot['complete']} done, {tot['pruned']} pruned, {tot['failed']} failed, "
            f"{tot['running']} running of {tot['budget']} | best {plan.objective}: {best_text} | "
            f"{tot['gpu_hours']:.2f} GPU-h | {fmt_duration(time.time() - self.t0)}"
        )
        return Group(t, line)
