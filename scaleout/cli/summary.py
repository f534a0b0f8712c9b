"""The end-of-sweep summary: counts, the headline (the reference recipe's drop at the target,
the share the best trial recovered, the cost in labelled units), the best trial, the top of
the leaderboard."""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState

from scaleout.core.plan import Plan, plan_to_dict
from scaleout.results.format import fmt_trial
from scaleout.results.headline import headline
from scaleout.results.leaderboard import leaderboard_rows, rich_table
from scaleout.sweep.tracking import parent_run_metrics
from scaleout.sweep.workspace import TrialRecord, plan_knobs


def sweep_summary(study: Any, plan: Plan, name: str, reason: str) -> dict[str, Any]:
    """The summary `scaleout sweep` prints (and `--json` gives). Its numbers (counts, best,
    and the headline's figures under their MLflow names: `reference_NDS`, `best_NDS`,
    `recovered_share`, ...) are what the sweep's MLflow parent run logs."""
    trials = study.get_trials(deepcopy=False)
    plan_d = plan_to_dict(plan)
    knobs = plan_knobs(plan_d)
    records = [TrialRecord.from_trial(t, plan.objective) for t in trials]
    rows = leaderboard_rows(records, plan.objective, plan.direction, knobs=knobs, plan=plan_d)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = done[0] if done else None
    by_origin = {r["origin"]: r["objective"] for r in done if r["origin"] != "sampled"}
    head = headline(plan_d, records)
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
        "best_trial": best["number"] if best else None,
        "best_params": {k: best[k] for k in knobs} if best else None,
        "seed_values": by_origin,
        **parent_run_metrics(head.to_dict()),
        "headline_text": head.text(),
        "headline": head.to_dict(),
        "leaderboard": rows,
    }


def print_summary(summary: dict[str, Any], console: Any) -> None:
    console.print(
        f"[bold]sweep {summary['sweep']}[/] ({summary['stop_reason']}): "
        f"{summary['complete']} complete, {summary['pruned']} pruned, "
        f"{summary['failed']} failed, {summary['running']} still running"
    )
    # One line, however narrow the terminal (it wraps it): the line a user copies or greps.
    console.print(summary["headline"]["text"], highlight=False, soft_wrap=True)
    if summary["best_value"] is not None:
        p = summary["best_params"]
        console.print(
            f"best {summary['objective']} {summary['best_value']:.4f}: "
            f"{fmt_trial(summary['best_trial'])} lr {p['lr']:.2e}, warmup "
            f"{p['warmup_iters']}, min_lr_ratio {p['min_lr_ratio']:.1e}",
            highlight=False,
        )
        for origin, value in summary["seed_values"].items():
            console.print(f"  {origin:<10} seed: {summary['objective']} {value:.4f}")
    console.print(
        rich_table(summary["leaderboard"], summary["objective"], limit=10, width=console.width)
    )
