"""status, leaderboard and ui against a sweep the session ran for real."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
    doc = json.loads(r.stdout)
    assert (doc["sweep"], doc["objective"], doc["direction"]) == (name, "NDS", "maximize")
    assert doc["headline"]["reference_seed_NDS"] is not None  # tiny states no score of its own
    assert doc["headline"]["reference_NDS"] is None and doc["headline"]["recovered_share"] is None
    rows = doc["trials"]
    assert [row["rank"] for row in rows] == [1, 2, 3]
    values = [row["objective"] for row in rows]
    assert values == sorted(values, reverse=True)
    assert {row["origin"] for row in rows} == {"reference", "sqrt", "linear"}
    r = scaleout("leaderboard", name, "--workspace", str(ws), "--format", "csv", "--top", "2")
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(table) == 2 and {"NDS", "lr", "target_gpu_hours", "mlflow_run_id"} <= set(table[0])
    assert table[0]["trial"] == rows[0]["trial"] and table[0]["compute_unit_here"] == "CPU-hours"
    r = scaleout("leaderboard", name, "--workspace", str(ws))
    assert "NDS" in r.stdout and rows[0]["trial"] in r.stdout
    assert "reference recipe at 16 GPUs: NDS" in r.stdout


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


def moved_workspace(ws: Path, tmp_path: Path) -> Path:
    """The session's workspace as if it had been made in `tmp_path/made` and then moved to
    `tmp_path/moved` with mv: every path its records hold (sweep.json, the study's attrs)
    names a folder that is gone."""
    made, moved = tmp_path / "made", tmp_path / "moved"
    shutil.copytree(ws, made)
    for meta_path in made.glob("*/sweep.json"):
        meta = json.loads(meta_path.read_text())
        meta.update(
            storage=f"sqlite:///{meta_path.parent / 'study.db'}",
            mlflow_uri=f"sqlite:///{made / 'mlflow.db'}",
        )
        meta_path.write_text(json.dumps(meta))
        with sqlite3.connect(meta_path.parent / "study.db") as db:
            for table in ("trial_user_attributes", "study_user_attributes"):
                db.execute(
                    f"UPDATE {table} SET value_json = replace(value_json, ?, ?)",
                    (json.dumps(str(ws))[1:-1], json.dumps(str(made))[1:-1]),
                )
    os.rename(made, moved)
    return moved


def test_a_moved_workspace_still_answers(finished_sweep, tmp_path):
    from scaleout.results import load_sweep

    ws, name = finished_sweep
    moved = moved_workspace(ws, tmp_path)
    r = scaleout("status", name, "--workspace", str(moved), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["complete"] == 3
    r = scaleout("leaderboard", name, "--workspace", str(moved), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert [row["rank"] for row in json.loads(r.stdout)["trials"]] == [1, 2, 3]
    df = load_sweep(name, moved)
    assert len(df) == 3 and df["mATE"].notna().all()
    # The trial folders are read where they are now, not where the study recorded them.
    assert all(Path(d).is_relative_to(moved / name) and Path(d).is_dir() for d in df["work_dir"])
    assert not (tmp_path / "made").exists()  # no reader recreated the old folder


def test_a_garbage_study_is_named_in_one_line(finished_sweep, tmp_path):
    ws, name = finished_sweep
    broken = tmp_path / "ws" / name
    broken.mkdir(parents=True)
    shutil.copy(ws / name / "plan.json", broken / "plan.json")
    meta = json.loads((ws / name / "sweep.json").read_text())
    meta["storage"] = f"sqlite:///{broken / 'study.db'}"
    (broken / "sweep.json").write_text(json.dumps(meta))
    (broken / "study.db").write_bytes(os.urandom(4096))
    for cmd in ("status", "leaderboard"):
        r = scaleout(cmd, name, "--workspace", str(tmp_path / "ws"))
        assert r.returncode in (2, 3), (cmd, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert str(broken / "study.db") in r.stderr


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
