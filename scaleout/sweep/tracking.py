"""MLflow tracking: one experiment per sweep, a parent run for the sweep, a child run per trial.

The tracker talks to MLflow through `MlflowClient` only (no global active run), so that a
resumed controller can continue runs by id. Every call is safe to repeat after a crash part
way through it: runs are found again by their tags and get the params they lack, each epoch is
one batch that ends with its EPOCH_KEY point (`last_epoch` reads it back), and a run is
finished once. So a resume never duplicates a run or a point.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from scaleout.core.errors import StateError, scrub
from scaleout.sweep.budget import mlflow_cost_names
from scaleout.sweep.faults import crash_point

SWEEP_TAG = "scaleout.sweep"
UID_TAG = "scaleout.sweep_uid"
KIND_TAG = "scaleout.kind"  # "sweep" on the parent run, "trial" on children
# The MLflow 3 UI opens an experiment as a GenAI one unless told otherwise, and shows no metric
# or param columns by default: a shared view (an experiment tag the UI reads) ranks the trials.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
LEADERBOARD_VIEW = "leaderboard"
LEADERBOARD_VIEW_TAG = f"mlflow.sharedViewState.{LEADERBOARD_VIEW}"
# The saved view's columns, in the order a user ranks by (issue 18): the objective, its % of
# the reference recipe at its own scale, the three knobs, the cost (the GPU-hours at the
# target under the name that says how they were found; trial-equivalents where they are not
# known), the origin and the state tag (a pruned trial reads PRUNED). MLflow's other columns
# are hidden, and each is just wide enough for its name, so that at 1366 px what a user ranks
# on is on screen.
LEADERBOARD_PARAMS = ("lr", "warmup_iters", "min_lr_ratio")
COST_METRICS = ("target_gpu_hours_est", "target_gpu_hours", "trial_equivalents")
# MLflow's own columns that stay (pinned left), narrower than its defaults: their grid ids.
RUN_NAME_COLUMN = "attributes.`Run Name`"
CREATED_COLUMN = "runDateAndNestInfo"
PINNED_WIDTHS = {RUN_NAME_COLUMN: 150, CREATED_COLUMN: 100}
# Columns whose values are wider than their names: COMPLETE, reference.
VALUE_WIDTHS = {"state": 92, "origin": 80}


def column_width(name: str) -> int:
    """Pixels for a column headed `name`: its name in MLflow's header font (~6.5 px a
    character) and the header's padding and sort icon, or what its widest value needs."""
    return VALUE_WIDTHS.get(name, max(72, round(6.5 * len(name)) + 18))


# Logged last with each epoch, value and step the epoch: the last epoch MLflow holds.
EPOCH_KEY = "scaleout.epoch"
# MLflow takes at most 1000 metrics per log_batch; an epoch within it is logged at once.
BATCH = 1000
_ENDED = ("FINISHED", "FAILED", "KILLED")


def default_tracking_uri(flag: str | None, workspace: Path) -> str:
    """--mlflow-uri, else MLFLOW_TRACKING_URI, else a SQLite store in the workspace."""
    if flag:
        return flag
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{workspace / 'mlflow.db'}"


def default_artifact_root(workspace: Path) -> str:
    return (workspace / "mlartifacts").as_uri()


def leaderboard_columns(objective: str = "NDS", cost_metric: str | None = None) -> list[str]:
    """The saved view's column ids, in order. `cost_metric`: the cost the sweep's trial runs
    log (`target_gpu_hours_est` on virtual GPUs, `target_gpu_hours` on real ones, or
    `trial_equivalents` where neither is known); None lists all three (MLflow draws only the
    ones some run logs)."""
    cost = [cost_metric] if cost_metric else list(COST_METRICS)
    return [
        f"metrics.`{objective}`",
        "metrics.`pct_of_reference`",
        *(f"params.`{p}`" for p in LEADERBOARD_PARAMS),
        *(f"metrics.`{m}`" for m in cost),
        "params.`origin`",
        "tags.`state`",
    ]


def leaderboard_view(objective: str = "NDS", cost_metric: str | None = None) -> str:
    """The experiment page's state for ranking trials: trial runs only, best first, with the
    columns a user ranks by in that order and wide enough to read their names (MLflow's
    shared-view JSON: search facets + UI state; `columnOrder` and `columnWidths` take the
    grid's column ids)."""
    import json

    cols = leaderboard_columns(objective, cost_metric)
    widths = {c: column_width(c.split("`")[1]) for c in cols}
    return json.dumps(
        {
            "searchFilter": f"tags.`{KIND_TAG}` = 'trial'",
            "orderByKey": f"metrics.`{objective}`",
            "orderByAsc": False,
            "startTime": "ALL",
            "lifecycleFilter": "Active",
            "modelVersionFilter": "All Runs",
            "datasetsFilter": [],
            "selectedColumns": cols,
            # MLflow's pinned columns first (narrower than its defaults), then the view's own.
            "columnOrder": [*PINNED_WIDTHS, *cols],
            "columnWidths": {**PINNED_WIDTHS, **widths},
            "runsExpanded": {},
            "runsPinned": [],
            "runsHidden": [],
        }
    )


def parent_run_metrics(headline: Mapping[str, Any]) -> dict[str, float]:
    """The sweep's headline figures (`results.headline.Headline.to_dict`) as its MLflow parent
    run logs them: `reference_NDS` (the reference recipe at its own scale), `reference_seed_NDS`
    (run unchanged at the target), `best_NDS`, `best_pct_of_reference`, `recovered_share`,
    `drop_share`, `trial_equivalents`, and the two cost figures under names that say which is
    which (`target_gpu_hours_est` or `target_gpu_hours`; `cpu_hours_here` or
    `gpu_hours_here`). A figure not known is left out."""
    m = headline["metric"]
    target, here = mlflow_cost_names(
        headline.get("target_gpu_hours_basis"), headline.get("compute_unit_here")
    )
    figures = {
        f"reference_{m}": headline.get(f"reference_{m}"),
        f"reference_seed_{m}": headline.get(f"reference_seed_{m}"),
        f"best_{m}": headline.get(f"best_{m}"),
        "best_pct_of_reference": headline.get("best_pct_of_reference"),
        "recovered_share": headline.get("recovered_share"),
        "drop_share": headline.get("drop_share"),
        "trial_equivalents": headline.get("trial_equivalents"),
        target: headline.get("target_gpu_hours"),
        here: headline.get("compute_hours_here"),
    }
    # To the digits that mean something: MLflow's tables show every digit logged.
    return {k: float(f"{v:.4g}") for k, v in _finite(figures).items()}


def leaderboard_url(server: str, experiment_id: str) -> str:
    """The MLflow UI page that opens on the leaderboard view of a sweep's experiment."""
    return (
        f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?viewStateShareKey={LEADERBOARD_VIEW}&workflowType=machine_learning"
    )


class Tracker(Protocol):
    def start_sweep(
        self, name: str, uid: str, params: Mapping[str, Any], artifacts: Mapping[str, str]
    ) -> str: ...

    def start_trial(
        self,
        parent_id: str,
        number: int,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> str: ...

    def log_epochs(self, run_id: str, epochs: Mapping[int, Mapping[str, float]]) -> None: ...

    def last_epoch(self, run_id: str) -> int: ...

    def finish_trial(
        self,
        run_id: str,
        status: str,
        final: Mapping[str, float],
        tags: Mapping[str, str],
        artifacts: Mapping[str, str],
    ) -> None: ...

    def finish_sweep(
        self, parent_id: str, summary: Mapping[str, Any], status: str = "FINISHED"
    ) -> None: ...


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)
    }


def mlflow_key(key: str) -> str:
    """MLflow keys allow alphanumerics, _ - . space / only."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in key)


class MlflowTracker:
    """The real tracker. `check()` fails fast (before any trial) when the store is unreachable."""

    def __init__(self, uri: str, artifact_root: str | None = None) -> None:
        self.uri = uri
        self.artifact_root = artifact_root
        self._client: Any = None
        self._experiment_id: str | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
            import logging

            from mlflow.tracking import MlflowClient

            # "Creating initial MLflow database tables..." is not news for a sweep's user.
            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def check(self) -> None:
        try:
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            raise StateError(
                scrub(
                    f"cannot reach the MLflow tracking store {self.uri}: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                    self.uri,
                ),
                hint="check --mlflow-uri / MLFLOW_TRACKING_URI",
            ) from None

    def experiment(self, name: str, uid: str) -> str:
        if self._experiment_id is not None:
            return self._experiment_id
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            exp_id = self.client.create_experiment(
                name,
                artifact_location=_artifact_location(self.artifact_root, name),
                tags={
                    UID_TAG: uid,
                    SWEEP_TAG: name,
                    EXPERIMENT_KIND_TAG: "custom_model_development",
                    LEADERBOARD_VIEW_TAG: leaderboard_view(),
                },
            )
            crash_point("after_experiment")
        else:
            if exp.tags.get(UID_TAG) not in (None, uid):
                raise StateError(
                    f"the MLflow experiment {name!r} belongs to another sweep of "
                    f"that name (uid {exp.tags.get(UID_TAG)})",
                    hint="choose another --name or another --mlflow-uri",
                )
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            exp_id = exp.experiment_id
        self._experiment_id = exp_id
        return exp_id

    def start_sweep(
        self, name: str, uid: str, params: Mapping[str, Any], artifacts: Mapping[str, str]
    ) -> str:
        exp_id = self.experiment(name, uid)
        found = self.client.search_runs(
            [exp_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'", max_results=1
        )
        if found:
            run = found[0]
            if run.info.status != "RUNNING":
                self.client.update_run(run.info.run_id, status="RUNNING")
        else:
            run = self.client.create_run(
                exp_id,
                run_name=f"sweep {name}",
                tags={KIND_TAG: "sweep", SWEEP_TAG: name, UID_TAG: uid},
            )
            crash_point("after_parent_run")
        run_id = run.info.run_id
        # What a run created just before a crash lacks (a run found again logs only these).
        self._log_params(run, {k: str(v)[:6000] for k, v in params.items()})
        crash_point("after_parent_params")
        if artifacts:
            have = {a.path for a in self.client.list_artifacts(run_id)}
            for path in artifacts.values():
                if Path(path).exists() and Path(path).name not in have:
                    self.client.log_artifact(run_id, path)
        return run_id

    def _log_params(self, run: Any, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        have = run.data.params
        todo = [Param(mlflow_key(k), v) for k, v in params.items() if mlflow_key(k) not in have]
        for i in range(0, len(todo), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run.info.run_id, params=todo[i : i + 100])

    def start_trial(
        self,
        parent_id: str,
        number: int,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> str:
        parent = self.client.get_run(parent_id)
        exp_id = parent.info.experiment_id
        # Idempotent: a controller that died after creating the run finds it again.
        found = self.client.search_runs(
            [exp_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and "
            f"tags.`scaleout.trial` = '{number}'",
            max_results=1,
        )
        if found:
            run = found[0]
        else:
            run = self.client.create_run(
                exp_id,
                run_name=run_name,
                tags={
                    "mlflow.parentRunId": parent_id,
                    KIND_TAG: "trial",
                    "scaleout.trial": str(number),
                    **tags,
                },
            )
            crash_point("after_trial_run")
        self._log_params(run, {k: str(v) for k, v in params.items()})
        return run.info.run_id

    def log_epochs(self, run_id: str, epochs: Mapping[int, Mapping[str, float]]) -> None:
        """One batch per epoch (a batch is one transaction in MLflow's store), oldest first,
        its EPOCH_KEY point last: `last_epoch` then says which epochs MLflow holds whole."""
        from mlflow.entities import Metric

        now = _now_ms()
        for epoch, metrics in sorted(epochs.items()):
            batch = [Metric(mlflow_key(k), v, now, int(epoch)) for k, v in _finite(metrics).items()]
            batch.append(Metric(EPOCH_KEY, float(epoch), now, int(epoch)))
            # An epoch of more than BATCH metrics takes several batches, the marker in the last.
            for i in range(0, len(batch), BATCH):
                self.client.log_batch(run_id, metrics=batch[i : i + BATCH])

    def last_epoch(self, run_id: str) -> int:
        """The last epoch MLflow holds for a trial's run (0 if none): a resume logs only the
        epochs after it."""
        history = self.client.get_metric_history(run_id, EPOCH_KEY)
        return max((int(m.step) for m in history), default=0)

    def finish_trial(
        self,
        run_id: str,
        status: str,
        final: Mapping[str, float],
        tags: Mapping[str, str],
        artifacts: Mapping[str, str],
    ) -> None:
        """Final metrics, tags and artifacts, then the run's end. A run already ended is left
        as it is, and a final metric a crashed call logged is not logged again."""
        from mlflow.entities import Metric, RunTag

        run = self.client.get_run(run_id)
        if run.info.status in _ENDED:
            return
        now = _now_ms()
        have = run.data.metrics
        self.client.log_batch(
            run_id,
            metrics=[
                Metric(mlflow_key(k), v, now, 0)
                for k, v in _finite(final).items()
                if mlflow_key(k) not in have
            ],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        crash_point("after_final_metrics")
        for name, path in artifacts.items():
            if Path(path).is_file():
                with contextlib.suppress(Exception):  # an artifact is worth less than the run
                    self.client.log_artifact(run_id, path, artifact_path=name)
        self.client.set_terminated(run_id, status=status)

    def finish_sweep(
        self, parent_id: str, summary: Mapping[str, Any], status: str = "FINISHED"
    ) -> None:
        from mlflow.entities import Metric, RunTag

        now = _now_ms()
        nums = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
        texts = {k: v for k, v in summary.items() if not isinstance(v, (int, float))}
        self.client.log_batch(
            parent_id,
            metrics=[Metric(mlflow_key(k), v, now, 0) for k, v in _finite(nums).items()],
            tags=[RunTag(f"scaleout.{k}", str(v)[:5000]) for k, v in texts.items()],
        )
        self.client.set_terminated(parent_id, status=status)

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, path, artifact_path=artifact_path)


def _artifact_location(root: str | None, name: str) -> str | None:
    if root is None:
        return None
    return f"{root.rstrip('/')}/{name}"


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


class NullTracker:
    """Tracks nothing (for unit tests of the loop and for --no-mlflow)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}

    def start_sweep(self, name, uid, params, artifacts) -> str:  # type: ignore[no-untyped-def]
        self.runs.setdefault("sweep", {"status": "RUNNING", "epochs": {}})
        return "sweep"

    def start_trial(self, parent_id, number, run_name, params, tags) -> str:  # type: ignore[no-untyped-def]
        run_id = f"trial-{number}"
        self.runs.setdefault(
            run_id, {"status": "RUNNING", "epochs": {}, "name": run_name, "params": dict(params)}
        )
        return run_id

    def log_epochs(self, run_id, epochs) -> None:  # type: ignore[no-untyped-def]
        run = self.runs.setdefault(run_id, {"status": "RUNNING", "epochs": {}})
        for epoch, metrics in epochs.items():
            run["epochs"].setdefault(epoch, []).append(dict(metrics))

    def last_epoch(self, run_id: str) -> int:
        return max(self.runs.get(run_id, {}).get("epochs") or [0])

    def finish_trial(self, run_id, status, final, tags, artifacts) -> None:  # type: ignore[no-untyped-def]
        run = self.runs.setdefault(run_id, {"epochs": {}})
        if run.get("status") in _ENDED:  # as MlflowTracker: a run is ended once
            return
        run["finished"] = run.get("finished", 0) + 1
        run.update(status=status, final=dict(final), tags=dict(tags))

    def finish_sweep(self, parent_id, summary, status="FINISHED") -> None:  # type: ignore[no-untyped-def]
        self.runs[parent_id].update(status=status, summary=dict(summary))
