"""`scaleout ui`'s lifecycle against the real `mlflow server`: a busy port is refused before
anything starts, the links come last and only once the server answers, and SIGTERM/SIGINT end
every process it started, quietly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from scaleout.cli import main
from scaleout.cli.commands import ui

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def listening():
    """A socket listening on a free 127.0.0.1 port, held by this test's process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_port_owner_names_the_listening_process(listening):
    owner = ui.port_owner(listening)
    assert owner is not None and owner.pid == os.getpid()
    assert "python" in owner.command or "pytest" in owner.command


def test_a_free_port_has_no_owner_and_port_0_takes_one():
    port = ui.claim_port("127.0.0.1", 0, "--port")
    assert port > 0 and ui.port_owner(port) is None
    assert ui.claim_port("127.0.0.1", port, "--port") == port


def test_a_busy_port_is_refused_before_anything_starts(listening, tmp_path, capsys):
    (tmp_path / "mlflow.db").touch()
    code = main(["ui", "--workspace", str(tmp_path), "--port", str(listening)])
    out, err = capsys.readouterr()
    assert code == 2
    busy = f"--port {listening}: 127.0.0.1:{listening} is already in use by pid {os.getpid()}"
    assert busy in err
    assert f"kill {os.getpid()}" in err and "--port 0" in err
    assert "http://" not in out and not (tmp_path / "mlflow-ui.log").exists()


def test_a_busy_optuna_port_is_refused_too(listening, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(ui, "optuna_storage", lambda root, name: ("s", "sqlite:///x.db"))
    (tmp_path / "mlflow.db").touch()
    argv = ["ui", "--workspace", str(tmp_path), "--port", "0", "--optuna"]
    assert main([*argv, "--optuna-port", str(listening)]) == 2
    assert f"--optuna-port {listening}" in capsys.readouterr().err


def test_port_flags_say_their_defaults():
    from scaleout.cli.main import build_parser

    parser = build_parser()
    text = parser._subparsers._group_actions[0].choices["ui"].format_help()  # type: ignore[union-attr]
    assert "default: 5000; 0: a free one" in text and "default: 8080" in text


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def _session_members(sids: set[int]) -> list[str]:
    """Live processes (not zombies) in any of the sessions `sids`."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) in sids and fields[0] != "Z":
                out.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
    return out


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_links_come_last_and_a_signal_ends_every_process(sig, tmp_path):
    from mlflow.tracking import MlflowClient

    from scaleout.sweep.tracking import SWEEP_TAG

    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment(
        "s1", tags={SWEEP_TAG: "s1"}
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaleout", "ui", "--workspace", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # a terminal's Ctrl-C reaches the foreground group: this one
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "scaleout ui ended early:\n" + "".join(lines)
            lines.append(line)
            if "leaderboard:" in line:
                break
        port = int(re.search(r"MLflow UI: http://127\.0\.0\.1:(\d+)", "".join(lines)).group(1))  # type: ignore[union-attr]
        # Printed only once the server answers: the link works at once.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
            assert resp.status == 200
        assert "viewStateShareKey=leaderboard" in lines[-1] and lines[-1].strip().startswith("s1")
        assert not any("uvicorn" in line.lower() or "INFO" in line for line in lines)

        # While it runs, a second `ui` on its port is refused, naming the owner.
        again = ["ui", "--workspace", str(tmp_path), "--port", str(port)]
        second = subprocess.run(
            [sys.executable, "-m", "scaleout", *again],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert second.returncode == 2, second.stderr
        assert f"127.0.0.1:{port} is already in use by pid" in second.stderr
        assert "uvicorn" in second.stderr or "mlflow" in second.stderr
        assert "http://" not in second.stdout

        sessions = {os.getsid(p) for p in _children(proc.pid)}
        assert sessions and proc.pid not in sessions  # the servers lead sessions of their own
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
        rest = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert len(rest.splitlines()) <= 1, rest
    assert _session_members(sessions) == []
    assert _refused(port)


def test_without_the_ui_extra_it_says_how_to_install(monkeypatch, tmp_path, capsys):
    """The base install has MLflow's tracking client (mlflow-skinny) only."""
    import importlib.metadata

    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == "mlflow":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    (tmp_path / "mlflow.db").touch()
    assert main(["ui", "--workspace", str(tmp_path), "--port", "0"]) == 2
    assert "pip install 'scaleout[ui]'" in capsys.readouterr().err
