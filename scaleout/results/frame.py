"""One pandas DataFrame per sweep: the plan, the trials and their jobs, and their MLflow metrics.

`load_sweep` gives one row per trial, `load_epochs` the per-epoch history in long form and
`load_sweeps` the rows of several sweeps (the same space at 8, 32, 80, 160 GPUs) in one frame.
The columns are documented in docs/analysis.md; a test keeps the two in step.

This is the read model and nothing else: the sweep's files come through `SweepStore` (the one
reader), the metrics from the MLflow store the sweep recorded. Questions asked of a frame live
in `queries`, drawing in `plots`, and the one writer is `publish`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scaleout.core.errors import StateError
from scaleout.results.headline import headline, pct_of_reference, sweep_basis, trial_cost
from scaleout.sweep.workspace import CORE_KNOBS, SweepStore, TrialRecord, best_first

# The nuScenes figures read from MLflow besides the objective (their last logged value).
MLFLOW_METRICS = ("NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
EPOCH_METRICS = ("NDS", "mAP")
EPOCH_COLUMNS = ("sweep", "trial", "state", "origin", "epoch", "metric", "value")
_HEAD = (
    "sweep",
    "trial",
    "state",
    "origin",
    "rank",
    "objective_metric",
    "objective",
    "pct_of_reference",
)
_TAIL = (
    "gpus",
    "samples_per_gpu",
    "global_batch",
    "k",
    "epochs",
    "attempts",
    "wall_time_s",
    "trial_equivalents",
    "target_gpu_hours",
    "target_gpu_hours_basis",
    "compute_hours_here",
    "compute_unit_here",
    "samples_per_s",
    "started",
    "finished",
    "executor",
    "job_id",
    "job_name",
    "work_dir",
    "mlflow_run_id",
    "failure",
    "lr_reference",
    "lr_sqrt",
    "lr_linear",
    "lr_vs_sqrt",
    "lr_vs_linear",
    "in_range",
)


def columns(knobs: Sequence[str] = CORE_KNOBS) -> tuple[str, ...]:
    """The trial frame's columns for a plan's knobs (they follow the metrics)."""
    return (*_HEAD, *MLFLOW_METRICS, *knobs, *_TAIL)


# The documented columns: every sweep's frame has these (and a column per further knob).
COLUMNS = columns()


@dataclass(frozen=True)
class TrialRuns:
    """The sweep's trial runs in MLflow by trial number; none (and no client) without MLflow."""

    client: Any = None
    by_trial: dict[int, Any] = field(default_factory=dict)


def load_sweep(
    name: str, workspace: str | Path | None = None, *, mlflow_uri: str | None = None
) -> pd.DataFrame:
    """One row per trial (waiting ones left out), best first as in `scaleout leaderboard`.

    `df.attrs` holds `plan` (plan.json), `meta` (sweep.json), `sweep`, `objective`,
    `direction`, `knobs` (the settings the plan searches or fixes, one column each) and
    `headline` (the drop at the target, the share recovered, the cost: docs/analysis.md).
    """
    store = SweepStore.open(name, workspace)
    runs = trial_runs(store, store.mlflow_uri(mlflow_uri))
    return trial_frame(store, store.records(), runs)


def load_sweeps(
    names: list[str], workspace: str | Path | None = None, *, mlflow_uri: str | None = None
) -> pd.DataFrame:
    """The rows of several sweeps in one frame (the `sweep`, `gpus` and `global_batch` columns
    tell them apart). `df.attrs["plans"]` maps each sweep to its plan."""
    if not names:
        raise StateError("load_sweeps needs at least one sweep name")
    frames = [load_sweep(n, workspace, mlflow_uri=mlflow_uri) for n in names]
    plans = {f.attrs["sweep"]: f.attrs["plan"] for f in frames}
    knobs = tuple(dict.fromkeys(k for f in frames for k in f.attrs["knobs"]))
    objective, direction = frames[0].attrs["objective"], frames[0].attrs["direction"]
    for f in frames:
        f.attrs = {}
    out = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    out.attrs = {"plans": plans, "objective": objective, "direction": direction, "knobs": knobs}
    return out


def load_epochs(
    name: str,
    workspace: str | Path | None = None,
    *,
    metrics: tuple[str, ...] = EPOCH_METRICS,
    mlflow_uri: str | None = None,
) -> pd.DataFrame:
    """Per-epoch metrics, long form: sweep, trial, state, origin, epoch, metric, value.

    From the trial runs' MLflow history (step = epoch); without MLflow, the objective's
    intermediate values from the study.
    """
    store = SweepStore.open(name, workspace)
    runs = trial_runs(store, store.mlflow_uri(mlflow_uri))
    return epoch_frame(store, store.records(), runs, metrics)


def trial_runs(store: SweepStore, uri: str | None) -> TrialRuns:
    """The trial runs of the sweep in the store at `uri` (None: read without MLflow)."""
    if uri is None:
        return TrialRuns()
    from mlflow.tracking import MlflowClient

    from scaleout.sweep.tracking import KIND_TAG, UID_TAG

    client = MlflowClient(tracking_uri=uri)
    try:
        exp = client.get_experiment_by_name(store.name)
    except Exception as exc:
        raise StateError(
            f"cannot read the MLflow store {uri}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}",
            hint="pass mlflow_uri= (--mlflow-uri) where the store is now",
        ) from None
    if exp is None or exp.tags.get(UID_TAG) not in (None, store.meta["uid"]):
        raise StateError(
            f"the MLflow store {uri} holds no experiment of sweep {store.name!r}",
            hint="the store moved? pass mlflow_uri= (--mlflow-uri) where it lives now",
        )
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'trial'", max_results=5000
    )
    out: dict[int, Any] = {}
    for r in sorted(runs, key=lambda r: r.info.start_time or 0):
        number = r.data.tags.get("scaleout.trial")
        if number is not None and number.isdigit():
            out[int(number)] = r
    return TrialRuns(client, out)


def epoch_frame(
    store: SweepStore,
    records: list[TrialRecord],
    runs: TrialRuns,
    metrics: tuple[str, ...] = EPOCH_METRICS,
) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for r in records:
        base = {"sweep": store.name, "trial": r.number, "state": r.state, "origin": r.origin}
        run = runs.by_trial.get(r.number)
        if run is not None:
            for metric in metrics:
                for m in runs.client.get_metric_history(run.info.run_id, metric):
                    if m.step >= 1:  # step 0 holds the final value, logged at the end
                        rows.append(
                            {**base, "epoch": int(m.step), "metric": metric, "value": m.value}
                        )
        elif runs.client is None and store.objective in metrics:
            for epoch, value in sorted(r.intermediate.items()):
                rows.append(
                    {**base, "epoch": int(epoch), "metric": store.objective, "value": value}
                )
    df = pd.DataFrame(rows, columns=list(EPOCH_COLUMNS))
    df = df.drop_duplicates(["trial", "metric", "epoch"], keep="last")
    return df.sort_values(["trial", "metric", "epoch"], ignore_index=True)


def trial_frame(store: SweepStore, records: list[TrialRecord], runs: TrialRuns) -> pd.DataFrame:
    plan, meta, knobs = store.plan, store.meta, store.knobs
    basis = sweep_basis(records)
    rows = [
        _row(store, rank, r, runs.by_trial.get(r.number), knobs, basis)
        for rank, r in best_first(records, store.direction)
    ]
    df = pd.DataFrame(rows, columns=list(columns(knobs)))
    for col in ("started", "finished"):
        df[col] = pd.to_datetime(df[col])
    numeric = (*MLFLOW_METRICS, "objective", "pct_of_reference", *CORE_KNOBS, "wall_time_s")
    numeric += ("trial_equivalents", "target_gpu_hours", "compute_hours_here")
    for col in (*numeric, "samples_per_s", "lr_vs_sqrt", "lr_vs_linear", "epochs"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["rank"] = df["rank"].astype("Int64")
    ranges = plan.get("ranges") or {}
    for k in knobs:
        if k == "warmup_iters" or (ranges.get(k) or {}).get("type") == "int":
            df[k] = pd.to_numeric(df[k], errors="coerce").round().astype("Int64")
        elif k not in CORE_KNOBS:
            df[k] = df[k].infer_objects()  # a fixed knob may be text or a flag
    df.attrs = {
        "sweep": store.name,
        "plan": plan,
        "meta": meta,
        "objective": store.objective,
        "direction": store.direction,
        "knobs": knobs,
        "headline": headline(plan, records).to_dict(),
    }
    return df


def _row(
    store: SweepStore,
    rank: int | None,
    r: TrialRecord,
    run: Any,
    knobs: Sequence[str],
    basis: str | None = None,
) -> dict[str, Any]:
    plan, meta = store.plan, store.meta
    rules = plan["rules"]["lr"]
    target = plan["target"]
    latest = dict(run.data.metrics) if run is not None else {}
    last_epoch = max(r.intermediate) if r.intermediate else None
    objective = r.value
    if objective is None and last_epoch is not None:
        objective = r.intermediate[last_epoch]  # pruned: its last reported value
    out: dict[str, Any] = {
        "sweep": store.name,
        "trial": r.number,
        "state": r.state,
        "origin": r.origin,
        "rank": rank,
        "objective_metric": store.objective,
        "objective": objective,
        "pct_of_reference": pct_of_reference(objective, plan, store.objective),
    }
    for m in MLFLOW_METRICS:
        value = r.result.get(m) if m in EPOCH_METRICS else None
        if value is None:
            value = latest.get(m)
        if value is None and m == store.objective:
            value = objective
        out[m] = value
    out.update({k: r.params.get(k) for k in knobs})
    p = r.params
    cost = trial_cost(r, plan, basis)
    out.update(
        {
            "gpus": p.get("gpus", meta["gpus"]),
            "samples_per_gpu": p.get("samples_per_gpu", target["samples_per_gpu"]),
            "global_batch": p.get("global_batch", target["global_batch"]),
            "k": plan["scale"]["k"],
            "epochs": r.result.get("epochs", last_epoch),
            "attempts": r.attempts,
            "wall_time_s": r.result.get("wall_time_s"),
            "trial_equivalents": cost.trial_equivalents,
            "target_gpu_hours": cost.target_gpu_hours,
            "target_gpu_hours_basis": cost.basis,
            "compute_hours_here": cost.compute_hours_here,
            "compute_unit_here": cost.compute_unit_here,
            "samples_per_s": r.result.get("samples_per_s"),
            "started": r.started,
            "finished": r.finished,
            "executor": r.job.get("executor") or meta.get("executor"),
            "job_id": r.job.get("job_id"),
            "job_name": r.job.get("name"),
            "work_dir": str(r.work_dir) if r.work_dir is not None else None,
            "mlflow_run_id": r.run_id,
            "failure": r.failure.get("reason"),
            "lr_reference": rules.get("reference", plan["reference"]["lr"]),
            "lr_sqrt": rules.get("sqrt"),
            "lr_linear": rules.get("linear"),
        }
    )
    lr = out.get("lr")
    out["lr_vs_sqrt"] = lr / out["lr_sqrt"] if lr and out["lr_sqrt"] else None
    out["lr_vs_linear"] = lr / out["lr_linear"] if lr and out["lr_linear"] else None
    out["in_range"] = all(
        p.get(k) is not None and rng["low"] * (1 - 1e-9) <= p[k] <= rng["high"] * (1 + 1e-9)
        for k, rng in (plan.get("ranges") or {}).items()
    )
    return out
