"""The frame, its queries and publish against a sweep the session ran for real, and their bad
inputs."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import pytest

from scaleout.core.errors import StateError, UsageError
from scaleout.results import frame, queries
from scaleout.results.publish import publish
from scaleout.sweep.workspace import SweepStore

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"


def make_unfinished_sweep(ws: Path, done_name: str, dst_ws: Path, name: str) -> None:
    """A sweep in `dst_ws` with the plan of `done_name` whose only trial failed: no finished
    trial. (Its own workspace: the session's stays as test_cli_results expects it.)"""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from scaleout.sweep.tracking import MlflowTracker

    src = ws / done_name
    dst = dst_ws / name
    dst.mkdir(parents=True)
    for f in ("plan.json", "space.yaml"):
        shutil.copy(src / f, dst / f)
    meta = json.loads((src / "sweep.json").read_text())
    meta.update(
        name=name,
        uid=uuid.uuid4().hex,
        storage=f"sqlite:///{dst / 'study.db'}",
        mlflow_uri=f"sqlite:///{dst_ws / 'mlflow.db'}",
    )
    study = optuna.create_study(storage=meta["storage"], study_name=name, direction="maximize")
    parent = MlflowTracker(meta["mlflow_uri"]).start_sweep(name, meta["uid"], {}, {})
    study.set_user_attr("mlflow_parent_run_id", parent)
    study.add_trial(
        create_trial(
            state=TrialState.FAIL,
            params={"lr": 3e-3},
            distributions={"lr": FloatDistribution(1e-3, 1e-2, log=True)},
            user_attrs={
                "origin": "reference",
                "attempt": 2,
                "failure": {
                    "reason": "exit code 1",
                    "log_tail": "RuntimeError: CUDA out of memory",
                },
                "job": json.dumps(
                    {"executor": "local", "job_id": "4242", "name": f"{name}-t000-a2"}
                ),
            },
        )
    )
    (dst / "sweep.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def unfinished(finished_sweep, tmp_path_factory):
    ws, done = finished_sweep
    dst = tmp_path_factory.mktemp("unfinished")
    make_unfinished_sweep(ws, done, dst, "failing")
    return dst, "failing"


def test_one_row_per_trial_with_the_plan_and_mlflow_joined(finished_sweep):
    ws, name = finished_sweep
    df = frame.load_sweep(name, ws)
    assert list(df.columns) == list(frame.COLUMNS)
    assert len(df) == 3 and set(df["state"]) == {"COMPLETE"}
    assert list(df["rank"]) == [1, 2, 3]
    assert df["objective"].is_monotonic_decreasing
    assert set(df["origin"]) == {"reference", "sqrt", "linear"}
    plan = df.attrs["plan"]
    assert df["lr_sqrt"].iloc[0] == pytest.approx(plan["rules"]["lr"]["sqrt"])
    ref = df[df["origin"] == "reference"].iloc[0]
    assert ref["lr"] == pytest.approx(plan["reference"]["lr"]) and not ref["in_range"]
    sqrt = df[df["origin"] == "sqrt"].iloc[0]
    assert sqrt["lr_vs_sqrt"] == pytest.approx(1.0)
    # Study and MLflow agree; MLflow adds the TP errors the study does not keep.
    assert df["mATE"].notna().all() and df["job_id"].notna().all()
    assert (df["gpus"] == 16).all() and (df["global_batch"] == 16).all()
    assert df["mlflow_run_id"].str.len().gt(0).all()


def test_every_column_is_documented():
    text = DOCS.read_text()
    documented = set(re.findall(r"^\| `([A-Za-z_]+)` \|", text, flags=re.M))
    missing = set(frame.COLUMNS) - documented
    assert not missing, f"docs/analysis.md does not document {sorted(missing)}"
    assert {"trial", "epoch", "metric", "value"} <= documented


def test_epochs_long_form(finished_sweep):
    ws, name = finished_sweep
    ep = frame.load_epochs(name, ws)
    assert list(ep.columns) == ["sweep", "trial", "state", "origin", "epoch", "metric", "value"]
    assert set(ep["metric"]) == {"NDS", "mAP"}
    assert ep["epoch"].min() == 1  # the final value at step 0 is not an epoch
    per_trial = ep[ep["metric"] == "NDS"].groupby("trial")["epoch"].max()
    assert (per_trial == 3).all()
    # Without MLflow: the objective from the study's intermediate values, same numbers.
    bare = frame.load_epochs(name, ws, mlflow_uri="")
    assert set(bare["metric"]) == {"NDS"}
    merged = bare.merge(ep[ep["metric"] == "NDS"], on=["trial", "epoch"])
    assert len(merged) == len(bare)
    assert merged["value_x"].to_numpy() == pytest.approx(merged["value_y"].to_numpy())


def test_across_sweeps_and_best_vs_rules(finished_sweep, unfinished):
    ws, name = finished_sweep
    both = frame.load_sweeps([name, name], ws)
    assert list(both["sweep"]) == [name] * 6 and set(both.attrs["plans"]) == {name}
    with pytest.raises(UsageError, match="no sweep named 'failing'"):
        frame.load_sweeps([name, unfinished[1]], ws)
    df = frame.load_sweep(name, ws)
    table = queries.best_vs_rules(df)
    assert list(table.index) == ["lr", "warmup_iters", "min_lr_ratio", "NDS"]
    best = queries.best_trial(df)
    assert table.iloc[0, 0] == pytest.approx(best["lr"])
    assert table.loc["lr", "best / sqrt"] == pytest.approx(best["lr_vs_sqrt"])
    c = queries.cost(df)
    assert c["trial_equivalents"] == pytest.approx(3.0) and c["sweep_wall_time_s"] > 0
    # tiny has no cost basis: on virtual GPUs the GPU-hours at the target are not known.
    assert c["target_gpu_hours"] is None and c["compute_unit_here"] == "CPU-hours"


def test_unknown_sweep_lists_the_ones_that_exist(finished_sweep):
    ws, name = finished_sweep
    with pytest.raises(UsageError, match="no sweep named 'nope'") as e:
        frame.load_sweep("nope", ws)
    assert name in str(e.value)


def test_no_finished_trials_says_so(unfinished):
    ws, name = unfinished
    df = frame.load_sweep(name, ws)
    assert list(df["state"]) == ["FAIL"] and df["failure"].iloc[0] == "exit code 1"
    assert df["attempts"].iloc[0] == 2 and df["job_id"].iloc[0] == "4242"
    with pytest.raises(queries.NoFinishedTrials, match=r"no finished trials yet \(1 fail\)"):
        queries.require_finished(df)
    with pytest.raises(queries.NoFinishedTrials, match="no completed trial"):
        queries.best_vs_rules(df)


def test_moved_workspace_still_opens_and_a_lost_store_is_named(finished_sweep, tmp_path):
    ws, name = finished_sweep
    moved = tmp_path / "moved"
    shutil.copytree(ws, moved, ignore=shutil.ignore_patterns("trials"))
    meta_path = moved / name / "sweep.json"
    meta = json.loads(meta_path.read_text())  # as if moved from a folder that is gone now
    meta.update(mlflow_uri="sqlite:////gone/mlflow.db", storage=f"sqlite:////gone/{name}/study.db")
    meta_path.write_text(json.dumps(meta))
    df = frame.load_sweep(name, moved)
    assert len(df) == 3 and df["mATE"].notna().all()
    (moved / "mlflow.db").unlink()
    with pytest.raises(StateError, match="MLflow store of sweep 'done' is gone") as e:
        frame.load_sweep(name, moved)
    assert "mlflow_uri" in str(e.value)
    assert len(frame.load_sweep(name, moved, mlflow_uri="")) == 3
    with pytest.raises(StateError, match="no MLflow store at"):
        frame.load_sweep(name, moved, mlflow_uri=f"sqlite:///{tmp_path / 'nowhere.db'}")
    assert not (tmp_path / "nowhere.db").exists()
    other = f"sqlite:///{tmp_path / 'other.db'}"
    from scaleout.sweep.tracking import MlflowTracker

    MlflowTracker(other).check()  # an existing store that never saw this sweep
    with pytest.raises(StateError, match="holds no experiment of sweep 'done'"):
        frame.load_sweep(name, moved, mlflow_uri=other)


def test_the_sweep_published_its_plots_and_leaderboard(finished_sweep):
    from mlflow.tracking import MlflowClient

    from scaleout.sweep.tracking import LEADERBOARD_VIEW_TAG

    ws, name = finished_sweep
    store = SweepStore.open(name, ws)
    client = MlflowClient(store.mlflow_uri())
    parent = store.study_attrs()["mlflow_parent_run_id"]
    logged = {a.path for a in client.list_artifacts(parent, "analysis")}
    expected = {f"analysis/{p}.png" for p in ("nds_vs_lr", "learning_curves", "pareto_front")}
    assert expected | {"analysis/leaderboard.csv", "analysis/leaderboard.html"} <= logged
    exp = client.get_experiment_by_name(name)
    view = json.loads(exp.tags[LEADERBOARD_VIEW_TAG])
    assert "metrics.`NDS`" in view["selectedColumns"] and view["orderByKey"] == "metrics.`NDS`"
    # No cost basis (tiny): the view's cost is the trial-equivalents the trial runs log.
    assert "metrics.`trial_equivalents`" in view["selectedColumns"]
    parent_metrics = client.get_run(parent).data.metrics
    assert parent_metrics["trial_equivalents"] == pytest.approx(3.0)
    assert "reference_NDS" not in parent_metrics  # tiny states no score of its own
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_publish_without_finished_trials_logs_only_the_leaderboard(unfinished):
    ws, name = unfinished
    assert publish(name, ws) == ["analysis/leaderboard.csv", "analysis/leaderboard.html"]
