"""`scaleout report` against a sweep the session ran for real, and its bad inputs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from scaleout.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture
def scaleout(capsys):
    """The CLI in-process (a subprocess would pay ~5 s of imports per call)."""

    def run(*args: str) -> SimpleNamespace:
        code = main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def _make_unfinished_sweep():
    spec = importlib.util.spec_from_file_location(
        "_analysis_tests", Path(__file__).with_name("test_analysis.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_unfinished_sweep


def test_report_html_and_markdown(finished_sweep, tmp_path, scaleout):
    ws, name = finished_sweep
    out = tmp_path / "rep"
    r = scaleout("report", name, "--workspace", str(ws), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert str(out / "report.html") in r.stdout
    page = (out / "report.html").read_text()
    # Self-contained: every image is inline, nothing is fetched.
    imgs = re.findall(r"<img [^>]*src='([^']+)'", page)
    assert len(imgs) >= 5 and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert "http://" not in page and "https://" not in page
    for section in ("Plan", "Leaderboard", "Plots", "Best trial against the rules", "Failures"):
        assert f"<h2>{section}</h2>" in page
    assert "<h2>Cost</h2>" in page and "trial-equivalents (one full-length trial" in page
    assert "CPU-hours spent here" in page and "GPU-hours at 16 GPUs (not known" in page
    # tiny states no score of its own: the headline says what it cannot say.
    assert "<p class='headline'>" in page and "is not known, so the share" in page
    for t in ("t000", "t001", "t002"):
        assert t in page
    assert "sqrt rule" in page or "sqrt" in page
    md = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert "nds_vs_lr.png" in links and all((out / link).is_file() for link in links)
    assert "| rank | trial |" in md


def test_report_of_a_sweep_without_finished_trials(finished_sweep, tmp_path, scaleout):
    ws, done = finished_sweep
    _make_unfinished_sweep()(ws, done, tmp_path / "ws", "failing")
    out = tmp_path / "rep"
    r = scaleout("report", "failing", "--workspace", str(tmp_path / "ws"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "no finished trials yet" in r.stdout
    page = (out / "report.html").read_text()
    assert "<img" not in page and "No finished trials yet, so no plots." in page
    assert "CUDA out of memory" in page and "exit code 1" in page
    assert not list(out.glob("*.png"))


def test_report_bad_input(finished_sweep, tmp_path, scaleout):
    ws, name = finished_sweep
    r = scaleout("report", "nope", "--workspace", str(ws))
    assert r.returncode == 2
    assert "no sweep named 'nope'" in r.stderr and name in r.stderr
    gone = f"sqlite:///{tmp_path / 'gone.db'}"
    r = scaleout("report", name, "--workspace", str(ws), "--mlflow-uri", gone)
    assert r.returncode == 3 and "no MLflow store at" in r.stderr and "Traceback" not in r.stderr
    r = scaleout("report", name, "--workspace", str(ws), "--no-mlflow", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr


def test_report_says_the_headline_in_words(headline_sweep, tmp_path, scaleout):
    ws, name, _ = headline_sweep
    r = scaleout("report", name, "--workspace", str(ws), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "report.html").read_text()
    assert "The reference recipe scores NDS 0.500 at 8 GPUs" in page
    assert "of that drop" in page and "3.0 trial-equivalents" in page
    assert "GPU-hours at 16 GPUs (estimated from the plan&#x27;s cost basis)" in page
    assert (tmp_path / "nds_vs_gpus.png").is_file()
    assert "nds_vs_gpus.png" in (tmp_path / "report.md").read_text()
