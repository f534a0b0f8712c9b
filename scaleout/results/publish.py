"""The one writer of results: a sweep's plots and leaderboard, logged to its MLflow parent run.

Everything else in `scaleout.results` only reads. Publishing is safe to call again: it logs
the same artifact paths (overwriting them) and sets the same experiment tags.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from scaleout.core.errors import StateError
from scaleout.results import queries
from scaleout.results.frame import epoch_frame, trial_frame, trial_runs
from scaleout.results.leaderboard import leaderboard_rows, to_csv
from scaleout.results.report import leaderboard_page
from scaleout.sweep.workspace import SweepStore

ARTIFACT_DIR = "analysis"


def publish(
    name: str, workspace: str | Path | None = None, *, mlflow_uri: str | None = None
) -> list[str]:
    """Log the plots (PNG) and leaderboard.csv/.html under `analysis/` on the sweep's parent
    run, and the leaderboard view on its experiment. Returns the artifact paths logged.

    With no finished trial yet, only the leaderboard goes (no empty plots)."""
    from scaleout.results import plots
    from scaleout.sweep.tracking import EXPERIMENT_KIND_TAG, LEADERBOARD_VIEW_TAG, leaderboard_view

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
        rows = leaderboard_rows(records, store.objective, store.direction, knobs=store.knobs)
        (out / "leaderboard.csv").write_text(to_csv(rows, store.knobs))
        (out / "leaderboard.html").write_text(leaderboard_page(df))
        if not queries.finished(df).empty:
            epochs = epoch_frame(store, records, runs)
            for key, fig in plots.sweep_plots(df, epochs).items():
                plots.save(fig, out / f"{key}.png")
        runs.client.log_artifacts(parent, str(out), artifact_path=ARTIFACT_DIR)
        logged = sorted(f"{ARTIFACT_DIR}/{p.name}" for p in out.iterdir())
    exp_id = runs.client.get_run(parent).info.experiment_id
    runs.client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, "custom_model_development")
    runs.client.set_experiment_tag(exp_id, LEADERBOARD_VIEW_TAG, leaderboard_view(store.objective))
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
