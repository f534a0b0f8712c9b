"""One pandas DataFrame per sweep: the plan, the trials and their jobs, and their MLflow metrics.

`load_sweep` gives one row per trial, `load_epochs` the per-epoch history in long form and
`load_sweeps` the rows of several sweeps (the same space at 8, 32, 80, 160 GPUs) in one frame.
The columns are documented in docs/analysis.md; a test keeps the two in step.

Analysis only reads: the study (the source of truth) through `leaderboard.trial_row`, and the
MLflow store the sweep recorded. `publish` is the one writer: it logs the plots and the
leaderboard to the sweep's parent run, and is safe to call again (it overwrites them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scaleout.core.errors import StateError
from scaleout.sweep.search import Attr
from scaleout.sweep.workspace import Sweep, find_sweep, workspace_root

# The nuScenes figures read from MLflow besides the objective (their last logged value).
MLFLOW_METRICS = ("NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
EPOCH_METRICS = ("NDS", "mAP")
PARAMS = ("lr", "warmup_iters", "min_lr_ratio")
FINISHED_STATES = ("COMPLETE", "PRUNED")
ARTIFACT_DIR = "analysis"


class NoFinishedTrials(StateError):
    """The sweep has no trial with a value yet: there is nothing to plot or rank."""


@dataclass
class SweepSource:
    """What a sweep's analysis reads: its folder, sweep.json, plan.json, study, MLflow store."""

    sweep: Sweep
    meta: dict[str, Any]
    plan: dict[str, Any]
    storage_url: str
    mlflow_uri: str | None

    @property
    def objective(self) -> str:
        return self.plan["objective"]["metric"]

    @property
    def direction(self) -> str:
        return self.plan["objective"]["direction"]

    def trials(self) -> list[Any]:
        import optuna

        study = optuna.load_study(study_name=self.sweep.name, storage=self.storage_url)
        return study.get_trials(deepcopy=False)

    def study_attrs(self) -> dict[str, Any]:
        import optuna

        return optuna.load_study(study_name=self.sweep.name, storage=self.storage_url).user_attrs

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.mlflow_uri)


def open_source(
    name: str, workspace: str | Path | None = None, *, mlflow_uri: str | None = None
) -> SweepSource:
    """Find the sweep (listing the ones that exist when it is not there) and its stores.

    A workspace moved as a whole still opens: a recorded SQLite file that is gone is looked
    for in the workspace itself. `mlflow_uri=""` loads without MLflow.
    """
    sweep = find_sweep(workspace_root(str(workspace) if workspace else None), name)
    meta = sweep.read_meta()
    plan = json.loads((sweep.dir / "plan.json").read_text())
    storage = _moved_sqlite(meta["storage"], sweep.dir / "study.db", "study database", name)
    uri: str | None
    if mlflow_uri == "":
        uri = None
    elif mlflow_uri:
        uri = mlflow_uri
        _check_sqlite_exists(uri, name, given=True)
    else:
        uri = _moved_sqlite(meta["mlflow_uri"], sweep.root / "mlflow.db", "MLflow store", name)
    return SweepSource(sweep, meta, plan, storage, uri)


def _moved_sqlite(url: str, fallback: Path, what: str, name: str) -> str:
    if not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists():
        return url
    if fallback.exists():
        return f"sqlite:///{fallback}"
    raise StateError(
        f"the {what} of sweep {name!r} is gone from {url} (moved or deleted?)",
        hint=(
            "pass mlflow_uri= (--mlflow-uri) where it lives now, or mlflow_uri='' to load "
            "without MLflow metrics"
            if what == "MLflow store"
            else "move the sweep's folder back together with its study.db"
        ),
    )


def _check_sqlite_exists(url: str, name: str, *, given: bool) -> None:
    # MlflowClient would silently create an empty store at a wrong path: refuse instead.
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise StateError(
            f"no MLflow store at {url} (asked for sweep {name!r})",
            hint="check the path; `scaleout status NAME --json` shows the store the sweep used",
        )


# -- the trial frame --------------------------------------------------------------------------
def load_sweep(
    name: str, workspace: str | Path | None = None, *, mlflow_uri: str | None = None
) -> pd.DataFrame:
    """One row per trial (waiting ones left out), best first as in `scaleout leaderboard`.

    `df.attrs` holds `plan` (plan.json), `meta` (sweep.json), `objective` and `direction`.
    """
    src = open_source(name, workspace, mlflow_uri=mlflow_uri)
    return _trial_frame(src, src.trials(), _mlflow_runs(src))


def load_sweeps(
    names: list[str], workspace: str | Path | None = None, *, mlflow_uri: str | None = None
) -> pd.DataFrame:
    """The rows of several sweeps in one frame (the `sweep`, `gpus` and `global_batch` columns
    tell them apart). `df.attrs["plans"]` maps each sweep to its plan."""
    if not names:
        raise StateError("load_sweeps needs at least one sweep name")
    frames = [load_sweep(n, workspace, mlflow_uri=mlflow_uri) for n in names]
    plans = {f.attrs["sweep"]: f.attrs["plan"] for f in frames}
    objective, direction = frames[0].attrs["objective"], frames[0].attrs["direction"]
    for f in frames:
        f.attrs = {}
    out = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    out.attrs = {"plans": plans, "objective": objective, "direction": direction}
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
    src = open_source(name, workspace, mlflow_uri=mlflow_uri)
    trials = [t for t in src.trials() if t.state.name != "WAITING"]
    runs = _mlflow_runs(src)
    rows: list[dict[str, Any]] = []
    client = src.client() if runs else None
    for t in trials:
        base = {
            "sweep": name,
            "trial": t.number,
            "state": t.state.name,
            "origin": t.user_attrs.get(Attr.ORIGIN, "sampled"),
        }
        run = runs.get(t.number)
        if client is not None and run is not None:
            for metric in metrics:
                for m in client.get_metric_history(run.info.run_id, metric):
                    if m.step >= 1:  # step 0 holds the final value, logged at the end
                        rows.append(
                            {**base, "epoch": int(m.step), "metric": metric, "value": m.value}
                        )
        elif src.objective in metrics:
            for epoch, value in sorted(t.intermediate_values.items()):
                rows.append({**base, "epoch": int(epoch), "metric": src.objective, "value": value})
    cols = ["sweep", "trial", "state", "origin", "epoch", "metric", "value"]
    df = pd.DataFrame(rows, columns=cols)
    df = df.drop_duplicates(["trial", "metric", "epoch"], keep="last")
    return df.sort_values(["trial", "metric", "epoch"], ignore_index=True)


def _mlflow_runs(src: SweepSource) -> dict[int, Any]:
    """The sweep's trial runs by trial number ({} when loading without MLflow)."""
    if src.mlflow_uri is None:
        return {}
    from scaleout.sweep.tracking import KIND_TAG, UID_TAG

    client = src.client()
    try:
        exp = client.get_experiment_by_name(src.sweep.name)
    except Exception as exc:
        raise StateError(
            f"cannot read the MLflow store {src.mlflow_uri}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}",
            hint="pass mlflow_uri= (--mlflow-uri) where the store is now",
        ) from None
    if exp is None or exp.tags.get(UID_TAG) not in (None, src.meta["uid"]):
        raise StateError(
            f"the MLflow store {src.mlflow_uri} holds no experiment of sweep {src.sweep.name!r}",
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
    return out


def _trial_frame(src: SweepSource, trials: list[Any], runs: dict[int, Any]) -> pd.DataFrame:
    from scaleout.results.leaderboard import leaderboard_rows

    plan, meta = src.plan, src.meta
    by_number = {t.number: t for t in trials}
    rules = plan["rules"]["lr"]
    ranges = plan["ranges"]
    rows = []
    for row in leaderboard_rows(trials, src.objective, src.direction):
        t = by_number[row["trial"]]
        ua = t.user_attrs
        job = json.loads(ua.get(Attr.JOB) or "{}")
        run = runs.get(t.number)
        latest = dict(run.data.metrics) if run is not None else {}
        iv = t.intermediate_values
        last_epoch = max(iv) if iv else None
        objective = row["objective"]
        if objective is None and last_epoch is not None:
            objective = iv[last_epoch]  # pruned: its last reported value
        failure = ua.get(Attr.FAILURE) or {}
        params = {p: row[p] if row[p] is not None else t.params.get(p) for p in PARAMS}
        out = {
            "sweep": src.sweep.name,
            "trial": t.number,
            "state": row["state"],
            "origin": row["origin"],
            "rank": row["rank"],
            "objective_metric": src.objective,
            "objective": objective,
        }
        for m in MLFLOW_METRICS:
            value = row.get(m) if m in ("NDS", "mAP") else None
            if value is None:
                value = latest.get(m)
            if value is None and m == src.objective:
                value = objective
            out[m] = value
        out.update(params)
        out.update(
            {
                "gpus": row["gpus"] if row["gpus"] is not None else meta["gpus"],
                "samples_per_gpu": row["samples_per_gpu"]
                if row["samples_per_gpu"] is not None
                else plan["target"]["samples_per_gpu"],
                "global_batch": row["global_batch"]
                if row["global_batch"] is not None
                else plan["target"]["global_batch"],
                "k": plan["scale"]["k"],
                "epochs": row["epochs"] if row["epochs"] is not None else last_epoch,
                "attempts": row["attempts"],
                "wall_time_s": row["wall_time_s"],
                "gpu_hours": row["gpu_hours"],
                "samples_per_s": row["samples_per_s"],
                "started": t.datetime_start,
                "finished": t.datetime_complete,
                "executor": job.get("executor") or meta.get("executor"),
                "job_id": job.get("job_id"),
                "job_name": job.get("name"),
                "work_dir": ua.get(Attr.WORK_DIR),
                "mlflow_run_id": row["mlflow_run_id"],
                "failure": failure.get("reason"),
                "lr_reference": rules.get("reference", plan["reference"]["lr"]),
                "lr_sqrt": rules.get("sqrt"),
                "lr_linear": rules.get("linear"),
            }
        )
        lr = params["lr"]
        out["lr_vs_sqrt"] = lr / out["lr_sqrt"] if lr and out["lr_sqrt"] else None
        out["lr_vs_linear"] = lr / out["lr_linear"] if lr and out["lr_linear"] else None
        out["in_range"] = all(
            params.get(p) is not None
            and ranges[p]["low"] * (1 - 1e-9) <= params[p] <= ranges[p]["high"] * (1 + 1e-9)
            for p in ranges
        )
        rows.append(out)
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("started", "finished"):
        df[col] = pd.to_datetime(df[col])
    numeric = (*MLFLOW_METRICS, "objective", *PARAMS, "wall_time_s", "gpu_hours", "samples_per_s")
    for col in (*numeric, "lr_vs_sqrt", "lr_vs_linear", "epochs"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["rank"] = df["rank"].astype("Int64")
    df["warmup_iters"] = df["warmup_iters"].round().astype("Int64")
    df.attrs = {
        "sweep": src.sweep.name,
        "plan": plan,
        "meta": meta,
        "objective": src.objective,
        "direction": src.direction,
    }
    return df


COLUMNS = (
    "sweep",
    "trial",
    "state",
    "origin",
    "rank",
    "objective_metric",
    "objective",
    *MLFLOW_METRICS,
    *PARAMS,
    "gpus",
    "samples_per_gpu",
    "global_batch",
    "k",
    "epochs",
    "attempts",
    "wall_time_s",
    "gpu_hours",
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


# -- questions a user asks of the frame ----------------------------------------------------------
def finished(df: pd.DataFrame) -> pd.DataFrame:
    """Trials with a value: completed ones and pruned ones (at their last reported epoch)."""
    return df[df["state"].isin(FINISHED_STATES) & df["objective"].notna()]


def require_finished(df: pd.DataFrame, what: str = "plot") -> pd.DataFrame:
    done = finished(df)
    if done.empty:
        name = df.attrs.get("sweep") or ", ".join(sorted(set(df.get("sweep", []))))
        counts = df["state"].value_counts().to_dict() if len(df) else {}
        have = ", ".join(f"{n} {s.lower()}" for s, n in counts.items()) or "no trials at all"
        raise NoFinishedTrials(
            f"sweep {name or '?'} has no finished trials yet ({have}): nothing to {what}",
            hint="wait for a trial to complete (`scaleout status NAME`)",
        )
    return done


def best_trial(df: pd.DataFrame) -> pd.Series | None:
    done = df[(df["state"] == "COMPLETE") & df["objective"].notna()]
    if done.empty:
        return None
    asc = df.attrs.get("direction", "maximize") != "maximize"
    return done.sort_values("objective", ascending=asc).iloc[0]


def best_vs_rules(df: pd.DataFrame) -> pd.DataFrame:
    """What the best trial changed against the seed trials (reference recipe, sqrt and linear
    rules): one row per parameter plus the objective; ratios best / seed."""
    best = best_trial(df)
    if best is None:
        raise NoFinishedTrials(
            f"sweep {df.attrs.get('sweep', '?')} has no completed trial yet: no best trial "
            "to compare with the rules"
        )
    plan = df.attrs["plan"]
    objective = df.attrs["objective"]
    seeds = {s["origin"]: s for s in plan["seed_trials"]}
    measured = {
        r["origin"]: r["objective"]
        for _, r in df[df["state"] == "COMPLETE"].iterrows()
        if r["origin"] in seeds
    }
    out: dict[str, dict[str, Any]] = {}
    label = f"best (t{int(best['trial']):03d}, {best['origin']})"
    for p in (*PARAMS, objective):
        row: dict[str, Any] = {label: best[p] if p in PARAMS else best["objective"]}
        for origin, seed in seeds.items():
            value = seed.get(p) if p in PARAMS else measured.get(origin)
            row[origin] = value
            ok = isinstance(value, (int, float)) and value and math.isfinite(value)
            row[f"best / {origin}"] = row[label] / value if ok else None
        out[p] = row
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "parameter"
    return frame


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """The columns a user ranks by, best first (the frame's own order)."""
    cols = [
        "rank",
        "trial",
        "state",
        "origin",
        df.attrs.get("objective", "NDS"),
        "mAP",
        "lr",
        "warmup_iters",
        "min_lr_ratio",
        "gpus",
        "global_batch",
        "attempts",
        "wall_time_s",
        "gpu_hours",
    ]
    return df[list(dict.fromkeys(cols))].reset_index(drop=True)


def cost(df: pd.DataFrame) -> dict[str, Any]:
    """GPU-hours spent by state, wall time of the sweep, and the plan's estimate."""
    plan = df.attrs["plan"]
    spent = df.groupby("state")["gpu_hours"].sum(min_count=1).dropna().to_dict()
    start, end = df["started"].min(), df["finished"].max()
    wall = (end - start).total_seconds() if pd.notna(start) and pd.notna(end) else None
    return {
        "gpu_hours": float(df["gpu_hours"].sum()),
        "gpu_hours_by_state": {k: float(v) for k, v in spent.items()},
        "trial_wall_time_s": float(df["wall_time_s"].sum()),
        "sweep_wall_time_s": wall,
        "planned_gpu_hours_per_trial": plan["cost"].get("gpu_hours_per_trial"),
        "planned_gpu_hours_total": plan["cost"].get("gpu_hours_total"),
        "trials": len(df),
        "budget": df.attrs["meta"].get("trials"),
    }


# -- publishing to MLflow --------------------------------------------------------------------
def publish(
    name: str, workspace: str | Path | None = None, *, mlflow_uri: str | None = None
) -> list[str]:
    """Log the plots (PNG) and leaderboard.csv/.html under `analysis/` on the sweep's parent
    run, and the leaderboard view on its experiment. Returns the artifact paths logged.

    With no finished trial yet, only the leaderboard goes (no empty plots)."""
    import tempfile

    from scaleout.results import plots
    from scaleout.results.leaderboard import leaderboard_rows, to_csv
    from scaleout.sweep.tracking import EXPERIMENT_KIND_TAG, LEADERBOARD_VIEW_TAG, leaderboard_view

    src = open_source(name, workspace, mlflow_uri=mlflow_uri)
    if src.mlflow_uri is None:
        raise StateError("publish needs an MLflow store")
    trials = src.trials()
    runs = _mlflow_runs(src)
    df = _trial_frame(src, trials, runs)
    parent = src.study_attrs().get("mlflow_parent_run_id")
    if not parent:
        raise StateError(f"sweep {name!r} has no MLflow parent run recorded in its study")
    client = src.client()
    with tempfile.TemporaryDirectory(prefix="scaleout-publish-") as tmp:
        out = Path(tmp)
        rows = leaderboard_rows(trials, src.objective, src.direction)
        (out / "leaderboard.csv").write_text(to_csv(rows))
        (out / "leaderboard.html").write_text(leaderboard_html(df))
        if not finished(df).empty:
            epochs = load_epochs(name, workspace, mlflow_uri=src.mlflow_uri)
            for key, fig in plots.sweep_plots(df, epochs).items():
                plots.save(fig, out / f"{key}.png")
        client.log_artifacts(parent, str(out), artifact_path=ARTIFACT_DIR)
        logged = sorted(f"{ARTIFACT_DIR}/{p.name}" for p in out.iterdir())
    exp_id = client.get_run(parent).info.experiment_id
    client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, "custom_model_development")
    client.set_experiment_tag(exp_id, LEADERBOARD_VIEW_TAG, leaderboard_view(src.objective))
    return logged


def publish_after_sweep(opened: Any, console: Any) -> None:
    """`scaleout sweep`'s last step: publish, and only warn when that fails (the sweep's
    results are safe in the study and the runs either way)."""
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


def leaderboard_html(df: pd.DataFrame) -> str:
    """A standalone HTML page of the leaderboard (the one logged to MLflow)."""
    from scaleout.results.report import html_table

    title = f"Leaderboard: sweep {df.attrs.get('sweep', '')}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{TABLE_CSS}</style></head><body><h1>{title}</h1>"
        f"{html_table(leaderboard(df))}</body></html>"
    )


TABLE_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td.text{text-align:left}"
)
