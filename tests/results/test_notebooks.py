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


def all_text(nb) -> str:
    """Every output's text: streams (print, tqdm without widgets) and text/plain reprs."""
    out = []
    for c in nb.cells:
        if c.cell_type == "code":
            for o in c.outputs:
                out.append(o.get("text", "") + o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


def find_workspace_cell(name: str):
    """The notebook's find_workspace, run from its own cell (no kernel)."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    code = next(
        "".join(c["source"]) for c in nb["cells"] if "def find_workspace" in "".join(c["source"])
    )
    code = code[: code.index("ROOT = ")]  # the definition, not its use
    import scaleout

    scope: dict = {"Path": Path, "scaleout": scaleout}  # the parameters cell imports them
    exec(compile(code, name, "exec"), scope)
    return scope["find_workspace"]


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


@pytest.mark.parametrize("name", ["sweep_analysis.ipynb", "scaling_study.ipynb"])
def test_the_workspace_is_found_above_the_notebooks_folder(name, tmp_path, monkeypatch):
    """`jupyter execute notebooks/X.ipynb` from the repo root starts the kernel in notebooks/:
    the README's ./scaleout-workspace is one folder up."""
    find_workspace = find_workspace_cell(name)
    (tmp_path / "scaleout-workspace").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert find_workspace(None) == tmp_path / "scaleout-workspace"
    assert find_workspace(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
    monkeypatch.chdir(tmp_path / "scaleout-workspace")  # nothing below: the repo root's
    (tmp_path / "scaleout-workspace").rename(tmp_path / "moved")
    assert find_workspace(None) == NOTEBOOKS.parent / "scaleout-workspace"


@pytest.mark.slow
def test_sweep_analysis_from_the_repo_root_finds_the_readmes_workspace(
    finished_sweep, tmp_path, monkeypatch
):
    """As `jupyter execute notebooks/sweep_analysis.ipynb` runs it from a checkout whose
    README command made ./scaleout-workspace, without SCALEOUT_WORKSPACE."""
    import shutil

    ws, name = finished_sweep
    repo = tmp_path / "checkout"
    shutil.copytree(ws, repo / "scaleout-workspace")
    (repo / "notebooks").mkdir()
    monkeypatch.delenv("SCALEOUT_WORKSPACE", raising=False)
    nb = execute("sweep_analysis.ipynb", {"SCALEOUT_SWEEP": name}, repo / "notebooks")
    assert f"workspace: {repo / 'scaleout-workspace'}" in all_text(nb)
    assert len(outputs(nb, "image/png")) >= 6


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
    # The sweep it ran showed its progress (a tqdm bar: widgets, or text without ipywidgets).
    text = all_text(nb)
    assert "ci-8g: tiny at 8 GPUs" in text and "1/1" in text, text
    html = "".join(o["data"]["text/html"] for o in outputs(nb, "text/html"))
    assert "tuned_lr" in html and "ci-8g" in html and name in html
