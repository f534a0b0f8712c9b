"""A saved sweep made by hand (no training): its folder, plan, study and trials, so the reader
and the frame can be tested in milliseconds. The real sweep is `finished_sweep` (tests/)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "core" / "golden" / "plan_lr_scaling_160g.json"


def _trial(number: int, state: str, origin: str, lr: float, **extra: Any) -> dict[str, Any]:
    return {"number": number, "state": state, "origin": origin, "lr": lr, **extra}


# On virtual GPUs (the golden plan: 24-epoch trials at 160 GPUs, 0.032 GPU-hours each by its
# cost basis): each epoch costs 1/24 trial-equivalent, 0.032/24 GPU-hours at the target
# (estimated) and, here, 150 s of one CPU process.
TRIALS = [
    _trial(0, "COMPLETE", "reference", 2e-3, value=0.30, epochs=24),
    _trial(1, "COMPLETE", "sampled", 9e-3, value=0.35, epochs=24),
    _trial(2, "PRUNED", "sampled", 3e-2, intermediate={1: 0.10, 2: 0.12}, epochs=2),
    _trial(
        3, "FAIL", "sampled", 4e-2, failure={"reason": "exit code 1", "log_tail": "OOM"}, epochs=1
    ),
    _trial(4, "RUNNING", "sampled", 1e-2, intermediate={1: 0.20}),
    _trial(5, "WAITING", "sampled", 1e-2),
]
PER_TRIAL_GPU_HOURS = 0.032
EPOCH_S = 150.0


def cost_result(epochs: int) -> dict[str, Any]:
    """What the controller stores of a trial's cost on virtual GPUs after `epochs` epochs."""
    share = epochs / 24
    return {
        "epochs": float(epochs),
        "wall_time_s": EPOCH_S * epochs,
        "gpu_hours": PER_TRIAL_GPU_HOURS * share,
        "gpu_hours_basis": "estimated",
        "compute_hours_here": EPOCH_S * epochs / 3600,
        "compute_unit_here": "CPU-hours",
        "trial_equivalents": share,
    }


def save_sweep(
    root: Path,
    name: str = "hand",
    *,
    ranges: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
    mlflow_uri: str | None = None,
) -> Path:
    """Write <root>/<name>/ as a sweep would: sweep.json, plan.json, study.db, trial folders.
    `ranges`/`fixed` add knobs to the plan (the trials run with them)."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    d = root / name
    d.mkdir(parents=True)
    plan = json.loads(GOLDEN.read_text())
    plan["ranges"].update(ranges or {})
    plan["fixed"].update(fixed or {})
    (d / "plan.json").write_text(json.dumps(plan))
    storage = f"sqlite:///{d / 'study.db'}"
    meta = {
        "name": name,
        "uid": uuid.uuid4().hex,
        "space_file": "lr_scaling.yaml",
        "gpus": 160,
        "samples_per_gpu": 1,
        "trials": 8,
        "trainer": {"name": "minibev", "preset": "tiny"},
        "executor": "local",
        "storage": storage,
        "mlflow_uri": mlflow_uri or f"sqlite:///{root / 'mlflow.db'}",
    }
    (d / "sweep.json").write_text(json.dumps(meta))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    extra = {k: (r["low"] + r["high"]) / 2 for k, r in (ranges or {}).items()}
    for t in TRIALS:
        work = d / "trials" / f"t{t['number']:03d}"
        work.mkdir(parents=True)
        params = {"lr": t["lr"], "warmup_iters": 24, "min_lr_ratio": 1e-4, **extra}
        attrs: dict[str, Any] = {"origin": t["origin"]}
        if t["state"] != "WAITING":
            attrs.update(
                params={**(fixed or {}), **params, "gpus": 160, "global_batch": 160},
                work_dir=str(work),
                attempt=1,
                job=json.dumps({"executor": "local", "job_id": str(100 + t["number"])}),
                mlflow_run_id=f"run{t['number']}",
            )
        if "epochs" in t:
            attrs["result"] = cost_result(t["epochs"])
        if "value" in t:
            attrs["result"].update(NDS=t["value"], mAP=t["value"] / 2)
        if "failure" in t:
            attrs["failure"] = t["failure"]
        study.add_trial(
            create_trial(
                state=TrialState[t["state"]],
                value=t.get("value"),
                params={"lr": t["lr"]},
                distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True)},
                user_attrs=attrs,
                intermediate_values=t.get("intermediate") or {},
            )
        )
    return d


@pytest.fixture
def saved_sweep(tmp_path):
    """A factory: saved_sweep(**kwargs) -> the sweep's folder under tmp_path/ws."""
    return lambda **kw: save_sweep(tmp_path / "ws", **kw)


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def headline_sweep(tmp_path_factory, sweep_runner):
    """A real 3-trial minibev (tiny) sweep at 16 virtual GPUs whose space file states what the
    reference recipe scores at its own scale and a cost basis, so every figure of the headline
    is known: (workspace, name, the sweep's stdout). The reference score is made up (tiny is
    not calibrated): the test checks the figures' plumbing and wording, not their values."""
    root = tmp_path_factory.mktemp("headline")
    space = (REPO / "search_spaces" / "lr_scaling.yaml").read_text()
    space = space.replace("  preset: small", "  preset: tiny")
    space += "reference:\n  metric: {NDS: 0.5, mAP: 0.3}\n  sample_time_s: 0.003\n"
    (root / "headline.yaml").write_text(space)
    ws, name = root / "ws", "headline"
    r = sweep_runner(root / "headline.yaml", ws, name, "--trials", "3", timeout=400)
    return ws, name, r.stdout
