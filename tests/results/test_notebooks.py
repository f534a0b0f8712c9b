"""The notebooks run top to bottom (nbclient) against sweeps the tests create, and are
committed without outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def execute(name: str, env: dict[str, str], cwd: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment: the parameters cell reads it
    try:
        client = nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        )
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs(nb, kind: str) -> list:
    return [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})
    ]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and "os.environ.get" in "".join(params[0]["source"])


@pytest.mark.slow
def test_sweep_analysis_runs_on_the_test_sweep(finished_sweep, tmp_path):
    ws, name = finished_sweep
    nb = execute(
        "sweep_analysis.ipynb", {"SCALEOUT_SWEEP": name, "SCALEOUT_WORKSPACE": str(ws)}, tmp_path
    )
    assert len(outputs(nb, "image/png")) >= 6  # lr, warmup, min_lr, curves, Pareto, importance
    text = "".join(o["data"]["text/plain"] for o in outputs(nb, "text/plain"))
    assert f"sweep {name}: 3 trials at 16 GPUs" in "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "best" in text or "best /" in "".join(
        o["data"].get("text/html", "") for o in outputs(nb, "text/html")
    )


@pytest.mark.slow
def test_scaling_study_runs_and_reuses_sweeps(finished_sweep, tmp_path):
    """The session's 16-GPU sweep is reused; the notebook runs the 8-GPU one itself (one trial:
    at the reference's global batch the rules all give the reference lr)."""
    import shutil

    ws, name = finished_sweep
    mine = tmp_path / "ws"
    shutil.copytree(ws, mine, ignore=shutil.ignore_patterns("trials"))
    env = {
        "SCALEOUT_WORKSPACE": str(mine),
        "SCALEOUT_PRESET": "tiny",
        "SCALEOUT_GPUS": "8",
        "SCALEOUT_TRIALS": "1",
        "SCALEOUT_SCALING_PREFIX": "ci",
        "SCALEOUT_SWEEPS": name,
    }
    nb = execute("scaling_study.ipynb", env, tmp_path)
    assert (mine / "ci-8g" / "sweep.json").exists()
    assert len(outputs(nb, "image/png")) == 1
    html = "".join(o["data"]["text/html"] for o in outputs(nb, "text/html"))
    assert "tuned_lr" in html and "ci-8g" in html and name in html
