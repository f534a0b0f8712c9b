"""When a plan's trials evaluate, and what the trainer's config says beside the reference.

A trainer's reference() may carry more than reference values: `evaluation` says when its
evaluation hook runs. The plan turns that into the epochs each trial reports its objective
at, which is all a pruner ever sees, and into a refusal when a trial would report nothing.
Pure; split from scaleout.core.plan, which re-exports `Evaluation` and `evaluation_epochs`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from scaleout.core.errors import SpaceError
from scaleout.core.space import reference_conflicts

if TYPE_CHECKING:
    from scaleout.core.plan import Plan


@dataclass(frozen=True)
class Evaluation:
    """When a trial evaluates. `interval` epochs apart (from `source`); `config_interval` is
    the trainer config's own where search.fixed.eval_interval replaces it; `epochs` the
    epochs a trial of the plan's length evaluates at (None when the interval counts
    iterations, or the trainer did not say when it evaluates)."""

    interval: int | None
    source: str | None
    config_interval: int | None = None
    config_source: str | None = None
    epochs: tuple[int, ...] | None = None
    by_epoch: bool = True


def evaluation_epochs(
    trial_epochs: int, interval: int, *, start: int | None = None, last_epoch: bool = False
) -> tuple[int, ...]:
    """The epochs (1-based) an evaluation hook runs at in a trial of `trial_epochs`.

    mmcv's EvalHook: every `interval` epochs, from `start` when given. mmengine's loop:
    every `interval` epochs from `start`, and at the last epoch as well (`last_epoch`).
    """
    if start is None:
        out = [e for e in range(1, trial_epochs + 1) if e % interval == 0]
    else:
        out = [e for e in range(max(1, start), trial_epochs + 1) if (e - start) % interval == 0]
    if last_epoch and trial_epochs >= (start or 1) and trial_epochs not in out:
        out.append(trial_epochs)
    return tuple(out)


def with_trainer(
    plan: Plan, trainer_values: dict[str, Any] | None, trainer: dict[str, Any] | None
) -> Plan:
    values = dict(trainer_values or {})
    conflicts = tuple(reference_conflicts(plan.space, values, plan.space_path))
    notes = list(plan.notes)
    for c in conflicts:
        notes.append(
            f"reference.{c['key']}: {c['used']!r} from the space file is used; the trainer "
            f"config says {c['overridden']!r} ({c['overridden_source']})"
        )
    evaluation = _evaluation(plan, values.get("evaluation"), notes)
    return replace(
        plan, trainer=trainer, conflicts=conflicts, evaluation=evaluation, notes=tuple(notes)
    )


def _evaluation(plan: Plan, told: Any, notes: list[str]) -> Evaluation | None:
    fixed = plan.fixed_settings.get("eval_interval")
    fixed_source = f"{plan.space_path}: search.fixed.eval_interval"
    if not isinstance(told, dict) or told.get("interval") is None:
        # The trainer does not say when it evaluates: only the space file's interval is known.
        return Evaluation(fixed, fixed_source) if fixed is not None else None
    config_interval, config_source = int(told["interval"]), str(told.get("source") or "")
    interval, source = (
        (fixed, fixed_source) if fixed is not None else (config_interval, config_source)
    )
    base = Evaluation(
        interval,
        source,
        config_interval=config_interval if fixed is not None else None,
        config_source=config_source if fixed is not None else None,
        by_epoch=bool(told.get("by_epoch", True)),
    )
    if fixed is not None and fixed != config_interval:
        notes.append(
            f"trials evaluate every {fixed} epoch(s) ({fixed_source}), not every "
            f"{config_interval} ({config_source})"
        )
    if not base.by_epoch:
        notes.append(
            f"evaluation counts iterations ({config_source}): the plan cannot say at which "
            "epochs trials report; the pruner sees whatever the logs give"
        )
        return base
    trial_epochs = plan.scale.trial_epochs
    start = told.get("start")
    epochs = evaluation_epochs(
        trial_epochs,
        interval,
        start=int(start) if start is not None else None,  # a trial keeps the config's start
        last_epoch=bool(told.get("last_epoch", False)),
    )
    if not epochs:
        shortened = "epochs" in plan.fixed_settings
        key = (
            "search.fixed.eval_interval"
            if fixed is not None
            else ("search.fixed.epochs" if shortened else "search.fixed")
        )
        raise SpaceError(
            plan.space_path,
            key,
            f"a trial of {trial_epochs} epochs never evaluates: {source} is {interval}, so no "
            f"trial would report {plan.objective}",
            hint=f"set search.fixed.eval_interval to {trial_epochs} or less (1: every epoch)",
        )
    pruner = plan.space.pruner.type
    shown = ", ".join(str(e) for e in epochs)
    if pruner != "none" and len(epochs) == 1:
        notes.append(
            f"each trial evaluates once, at epoch {epochs[0]} ({source} is {interval}): the "
            f"{pruner} pruner sees one {plan.objective} per trial and cannot stop one early; "
            "search.fixed.eval_interval: 1 gives it one per epoch"
        )
    elif pruner != "none" and interval > 1:
        notes.append(
            f"trials evaluate at epochs {shown} ({source} is {interval}): the {pruner} "
            "pruner can stop a trial only there"
        )
    return replace(base, epochs=epochs)


def evaluation_json(plan: Plan) -> dict[str, Any]:
    e = plan.evaluation
    if e is None:
        return {"interval": None, "source": None, "config_interval": None,
                "config_source": None, "epochs": None, "per_trial": None}  # fmt: skip
    return {
        "interval": e.interval,
        "source": e.source,
        "config_interval": e.config_interval,
        "config_source": e.config_source,
        "epochs": list(e.epochs) if e.epochs is not None else None,
        "per_trial": len(e.epochs) if e.epochs is not None else None,
    }
