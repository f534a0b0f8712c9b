"""The end-of-sweep summary: counts, best trial, cost, top of the leaderboard."""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState

from scaleout.core.plan import Plan
from scaleout.results.leaderboard import leaderboard_rows, rich_table


def sweep_summary(study: Any, plan: Plan, name: str, reason: str) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    rows = leaderboard_rows(trials, plan.objective, plan.direction)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = done[0] if done else None
    by_origin = {r["origin"]: r["objective"] for r in done if r["origin"] != "sampled"}
    return {
        "sweep": name,
        "stop_reason": reason,
        "objective": plan.objective,
        "direction": plan.direction,
        "budget": plan.trials,
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "best_value": best["objective"] if best else None,
        "best_trial": best["trial"] if best else None,
        "best_params": (
            {k: best[k] for k in ("lr", "warmup_iters", "min_lr_ratio")} if best else None
        ),
        "seed_values": by_origin,
        "gpu_hours": sum(r["gpu_hours"] or 0.0 for r in rows),
        "leaderboard": rows,
    }


def print_summary(summary: dict[str, Any], console: Any) -> None:
    console.print(
        f"[bold]sweep {summary['sweep']}[/] ({summary['stop_reason']}): "
        f"{summary['complete']} complete, {summary['pruned']} pruned, "
        f"{summary['failed']} failed, {summary['running']} still running; "
        f"{summary['gpu_hours']:.2f} GPU-hours"
    )
    if summary["best_value"] is not None:
        p = summary["best_params"]
        console.print(
            f"best {summary['objective']} {summary['best_value']:.4f}: "
            f"t{summary['best_trial']:03d} lr {p['lr']:.2e}, warmup "
            f"{p['warmup_iters']}, min_lr_ratio {p['min_lr_ratio']:.1e}"
        )
        for origin, value in summary["seed_values"].items():
            console.print(f"  {origin:<10} seed: {summary['objective']} {value:.4f}")
    console.print(rich_table(summary["leaderboard"], summary["objective"], limit=10))
