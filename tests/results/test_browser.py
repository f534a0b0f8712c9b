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
    "--window-size=2200,900",  # wide enough that the grid renders every leaderboard column
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


@pytest.mark.slow
@pytest.mark.browser
def test_mlflow_leaderboard_in_chromium(finished_sweep):
    pytest.importorskip("selenium", reason="pip install selenium (tests/run.sh does)")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian chromium and chromium-driver (tests/run.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from scaleout.cli.commands.ui import mlflow_server_argv
    from scaleout.sweep.tracking import default_artifact_root, leaderboard_url

    ws, name = finished_sweep
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
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "sweep done" not in body  # the parent run is filtered out: trials only
        for column in ("NDS", "mAP", "gpu_hours", "wall_time_s", "lr", "warmup_iters", "origin"):
            assert column in body, column
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "mlflow_leaderboard.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
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
