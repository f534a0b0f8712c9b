"""status, leaderboard and ui against a sweep the session ran for real."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.slow


def scaleout(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaleout", *args], capture_output=True, text=True, timeout=timeout
    )


def test_leaderboard_formats(finished_sweep):
    ws, name = finished_sweep
    r = scaleout("leaderboard", name, "--workspace", str(ws), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["rank"] for row in rows] == [1, 2, 3]
    values = [row["objective"] for row in rows]
    assert values == sorted(values, reverse=True)
    assert {row["origin"] for row in rows} == {"reference", "sqrt", "linear"}
    r = scaleout("leaderboard", name, "--workspace", str(ws), "--format", "csv", "--top", "2")
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(table) == 2 and {"NDS", "lr", "gpu_hours", "mlflow_run_id"} <= set(table[0])
    r = scaleout("leaderboard", name, "--workspace", str(ws))
    assert "NDS" in r.stdout and "t00" in r.stdout


def test_status(finished_sweep):
    ws, name = finished_sweep
    r = scaleout("status", name, "--workspace", str(ws), "--json")
    st = json.loads(r.stdout)
    assert st["counts"]["complete"] == 3 and st["controller"] is None
    assert st["best"]["trial"] in (0, 1, 2)
    r = scaleout("status", "--list", "--workspace", str(ws))
    assert r.stdout.split() == [name]


def test_unknown_sweep_lists_known_ones(finished_sweep):
    ws, name = finished_sweep
    for cmd in ("status", "leaderboard"):
        r = scaleout(cmd, "nope", "--workspace", str(ws))
        assert r.returncode == 2
        assert "no sweep named 'nope'" in r.stderr and f"sweeps here: {name}" in r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_workspace_store(finished_sweep):
    ws, name = finished_sweep
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaleout", "ui", "--workspace", str(ws), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline:
            try:
                url = (
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
                    f"?experiment_name={name}"
                )
                with urllib.request.urlopen(url, timeout=5) as resp:
                    body = json.loads(resp.read())
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the MLflow server never answered"
        assert body["experiment"]["name"] == name
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
