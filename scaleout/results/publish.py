"""The one writer of results: a sweep's plots, leaderboard and headline figures, logged to its
MLflow parent run.

Everything else in `scaleout.results` only reads. Publishing is safe to call again: it logs
the same artifact paths (overwriting them), the headline's metrics again at step 0 (MLflow
shows the latest) and sets the same experiment tags.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from scaleout.core.errors import StateError
from scaleout.results import queries
from scaleout.results.frame import epoch_frame, trial_frame, trial_runs
from scaleout.results.headline import headline
from scaleout.results.leaderboard import leaderboard_rows, to_csv
from scaleout.results.report import leaderboard_page
from scaleout.sweep.workspace import SweepStore

ARTIFACT_DIR = "analysis"


def publish(
    name: str, workspace: str | Path | None = None, *, mlflow_uri: str | None = None
) -> list[str]:
    """Log the plots (PNG) and leaderboard.csv/.html under `analysis/` on the sweep's parent
    run, the headline's figures as its metrics (`reference_NDS`, `best_NDS`,
    `recovered_share`, the labelled cost figures: `tracking.parent_run_metrics`), and the
    leaderboard view on its experiment. Returns the artifact paths logged.

    With no finished trial yet, only the leaderboard goes (no empty plots)."""
    from mlflow.entities import Metric, RunTag

    from scaleout.results import plots
    from scaleout.sweep.budget import mlflow_cost_names
    from scaleout.sweep.tracking import (
        EXPERIMENT_KIND_TAG,
        LEADERBOARD_VIEW_TAG,
        leaderboard_view,
        mlflow_key,
        parent_run_metrics,
    )

    store = SweepStore.open(name, workspace)
    uri = store.mlflow_uri(mlflow_uri)
    if uri is None:
        raise StateError("publish needs an MLflow store")
    runs = trial_runs(store, uri)
    records = store.records()
    df = trial_frame(store, records, runs)
    parent = store.study_attrs().get("mlflow_parent_run_id")
    if not parent:
        raise StateError(f"sweep {name!r} has no MLflow parent run recorded in its study")
    with tempfile.TemporaryDirectory(prefix="scaleout-publish-") as tmp:
        out = Path(tmp)
        rows = leaderboard_rows(
            records, store.objective, store.direction, knobs=store.knobs, plan=store.plan
        )
        (out / "leaderboard.csv").write_text(to_csv(rows, store.knobs))
        (out / "leaderboard.html").write_text(leaderboard_page(df))
        if not queries.finished(df).empty:
            epochs = epoch_frame(store, records, runs)
            for key, fig in plots.sweep_plots(df, epochs).items():
                plots.save(fig, out / f"{key}.png")
        runs.client.log_artifacts(parent, str(out), artifact_path=ARTIFACT_DIR)
        logged = sorted(f"{ARTIFACT_DIR}/{p.name}" for p in out.iterdir())
    head = headline(store.plan, records).to_dict()
    now = int(time.time() * 1000)
    figures = parent_run_metrics(head)
    tags = {"scaleout.headline_text": head["text"]}  # as the sweep's summary tags it
    if head["target_gpu_hours_basis"]:
        tags["scaleout.target_gpu_hours_basis"] = head["target_gpu_hours_basis"]
    runs.client.log_batch(
        parent,
        metrics=[Metric(mlflow_key(k), v, now, 0) for k, v in figures.items()],
        tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()],
    )
    # Trial runs finished before scaleout logged their % of the reference get it now.
    for _, r in df[df["pct_of_reference"].notna()].iterrows():
        run = runs.by_trial.get(int(r["trial"]))
        if run is not None and "pct_of_reference" not in run.data.metrics:
            runs.client.log_batch(
                run.info.run_id,
                metrics=[Metric("pct_of_reference", float(r["pct_of_reference"]), now, 0)],
            )
    # The view's cost column: the GPU-hours at the target where the trials log them.
    cost = "trial_equivalents"
    if head["target_gpu_hours_basis"] in ("estimated", "measured"):
        cost = mlflow_cost_names(head["target_gpu_hours_basis"], None)[0]
    exp_id = runs.client.get_run(parent).info.experiment_id
    runs.client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, "custom_model_development")
    runs.client.set_experiment_tag(
        exp_id, LEADERBOARD_VIEW_TAG, leaderboard_view(store.objective, cost)
    )
    return logged


def publish_after_sweep(opened: Any, console: Any) -> None:
    """`scaleout sweep`'s last step: publish, and only warn when that fails (the sweep's
    results are safe in the study and the runs either way). `opened`: the session's
    OpenSweep (its sweep and meta)."""
    try:
        logged = publish(
            opened.sweep.name, opened.sweep.root, mlflow_uri=opened.meta.get("mlflow_uri")
        )
        console.print(f"  plots and leaderboard logged to the sweep's MLflow run ({len(logged)})")
    except Exception as exc:
        console.print(
            f"[yellow]warning[/]: could not publish the plots and leaderboard to MLflow "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}); "
            f"`scaleout report {opened.sweep.name}` makes them locally"
        )
