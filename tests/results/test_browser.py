"""The MLflow leaderboard in a real browser (Debian chromium + selenium), and ui --optuna."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,900",  # a laptop's screen: the view's columns must fit it
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_json(url: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return json.loads(resp.read())
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} never answered")


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _add_pruned_run(ws: Path, name: str) -> None:
    """A pruned trial's run as the controller ends one (its MLflow status and tags), so the
    view shows how a pruned trial reads next to completed ones."""
    from scaleout.sweep.controller import _MLFLOW_STATUS
    from scaleout.sweep.search import TrialState
    from scaleout.sweep.tracking import MlflowTracker
    from scaleout.sweep.workspace import SweepStore

    store = SweepStore.open(name, ws)
    tracker = MlflowTracker(store.mlflow_uri())
    parent = store.study_attrs()["mlflow_parent_run_id"]
    params = {"lr": 0.05, "warmup_iters": 3, "min_lr_ratio": 2e-4, "origin": "sampled"}
    run = tracker.start_trial(parent, 99, "t099 lr=5.0e-02 wu=3", params, {"origin": "sampled"})
    tracker.log_epochs(run, {1: {"NDS": 0.004}})
    tracker.finish_trial(
        run,
        _MLFLOW_STATUS[TrialState.PRUNED],
        {"trial_equivalents": 0.3333, "pct_of_reference": 0.8},
        {"state": "PRUNED", "reason": "pruned at epoch 1 by the median pruner"},
        {},
    )


@pytest.mark.slow
@pytest.mark.browser
def test_mlflow_leaderboard_in_chromium(headline_sweep, tmp_path):
    pytest.importorskip("selenium", reason="pip install selenium (tests/run.sh does)")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian chromium and chromium-driver (tests/run.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from scaleout.cli.commands.ui import mlflow_server_argv
    from scaleout.sweep.tracking import default_artifact_root, leaderboard_url

    made, name, _ = headline_sweep
    ws = tmp_path / "ws"  # a copy: the pruned run added here stays out of the session's sweep
    shutil.copytree(made, ws, ignore=shutil.ignore_patterns("trials"))
    _add_pruned_run(ws, name)
    port = _free_port()
    server = f"http://127.0.0.1:{port}"
    argv = mlflow_server_argv(
        f"sqlite:///{ws / 'mlflow.db'}", default_artifact_root(ws), "127.0.0.1", port
    )
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # as `scaleout ui`
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
    )
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    driver = None
    try:
        exp = _wait_json(f"{server}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}")
        url = leaderboard_url(server, exp["experiment"]["experiment_id"])
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            opts.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        driver.set_page_load_timeout(60)
        driver.get(url)
        wait = WebDriverWait(driver, 60, poll_frequency=0.5)
        # The trial runs, ranked, with the columns a user ranks by.
        wait.until(
            lambda d: all(
                f"t00{i} lr=" in d.find_element(By.TAG_NAME, "body").text for i in range(3)
            )
        )
        wait.until(
            lambda d: d.find_elements(
                By.XPATH, "//*[@role='columnheader' and normalize-space(.)='NDS']"
            )
        )
        # Close the assistant side panel, so the grid (and the shot) has the page's width.
        for button in driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):
            if button.is_displayed():
                button.click()
        time.sleep(1.5)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "mlflow_leaderboard.png"  # first: it shows what a failure says
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "sweep headline" not in body  # the parent run is filtered out: trials only
        headers = {
            h.text.strip(): h
            for h in driver.find_elements(By.XPATH, "//*[@role='columnheader']")
            if h.text.strip()
        }
        order = [
            "NDS",
            "pct_of_reference",
            "lr",
            "warmup_iters",
            "min_lr_ratio",
            "target_gpu_hours_est",
            "origin",
            "state",
        ]
        missing = [c for c in order if c not in headers]
        assert not missing, (missing, sorted(headers))
        xs = [headers[c].location["x"] for c in order]
        assert xs == sorted(xs), dict(zip(order, xs, strict=True))
        width = driver.execute_script("return window.innerWidth")
        for c in order:  # what a user ranks on is on screen without scrolling
            h = headers[c]
            assert h.location["x"] + h.size["width"] <= width, (c, h.location, width)
        for hidden in ("mAP", "wall_time_s", "gpus", "cpu_hours_here", "trial_equivalents"):
            assert hidden not in headers, hidden
        # A pruned trial reads as pruned: its state says so and its run is not a failure.
        assert "PRUNED" in body and "t099 lr=" in body
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{ws / 'mlflow.db'}")
        (pruned,) = client.search_runs(
            [exp["experiment"]["experiment_id"]], "tags.`state` = 'PRUNED'"
        )
        assert pruned.info.status == "FINISHED"
    finally:
        if driver is not None:
            driver.quit()
        _stop(proc)
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
def test_ui_optuna_serves_the_study(finished_sweep):
    pytest.importorskip("optuna_dashboard", reason="pip install 'scaleout[dashboard]'")
    ws, name = finished_sweep
    port, optuna_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scaleout",
            "ui",
            name,
            "--optuna",
            "--workspace",
            str(ws),
            "--port",
            str(port),
            "--optuna-port",
            str(optuna_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        # The links come last, once both servers answer (scaleout/cli/commands/ui.py).
        while not any("leaderboard:" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "scaleout ui ended early:\n" + "".join(lines)
            lines.append(line)
        studies = _wait_json(f"http://127.0.0.1:{optuna_port}/api/studies", timeout=10)
        assert [s["study_name"] for s in studies["study_summaries"]] == [name]
    finally:
        _stop(proc)
    out = "".join(lines)
    assert "viewStateShareKey=leaderboard" in out and f"optuna-dashboard for sweep {name}" in out


def test_ui_optuna_without_the_extra_says_how_to_install(monkeypatch, tmp_path):
    import importlib.util

    from scaleout.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "optuna_dashboard" else real(n, *a)
    )
    (tmp_path / "mlflow.db").touch()
    with pytest.raises(Exception, match=r"pip install 'scaleout\[dashboard\]'"):
        from scaleout.cli.commands import ui

        ui.optuna_storage(tmp_path, None)
    assert main(["ui", "--optuna", "--workspace", str(tmp_path)]) == 2
