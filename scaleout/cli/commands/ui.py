"""`scaleout ui`: the MLflow UI (the leaderboard) on 127.0.0.1 for the workspace's store,
and with --optuna the optuna-dashboard for a sweep's study beside it.

Lifecycle: the ports are checked before anything starts; each server runs in a session (process
group) of its own, with its output in a log file, so its start-up lines and its traceback on
Ctrl-C never reach the terminal; the links are printed last, once the servers answer; SIGINT,
SIGTERM and SIGHUP end every process of those groups (uvicorn is MLflow's grandchild, so
stopping the direct child alone would leave it serving).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HELP = "serve the MLflow UI for the workspace's sweeps on 127.0.0.1 (--optuna: the study too)"
DESCRIPTION = """\
Serve the MLflow UI for the workspace's sweeps (the ui extra: pip install
'scaleout[ui]'). Each sweep's experiment has a 'leaderboard' view: the trial runs ranked
by the objective with the columns to rank by; the command prints its address for every
sweep once the server answers. Ctrl-C (or SIGTERM) stops it and every process it
started.

A port already in use is refused before anything starts (exit 2, naming the process
that holds it where this machine says); --port 0 takes a free port.

--optuna also serves the optuna-dashboard for one sweep's study (pip install
'scaleout[dashboard]'): give the sweep's name, or none when the workspace holds one sweep.

examples:
  scaleout ui
  scaleout ui --port 0
  scaleout ui lr_scaling-160g --optuna --optuna-port 8080
"""
# How long a server may take to answer after it starts (MLflow migrates a new store first).
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 10.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", help="the sweep whose study --optuna serves")
    p.add_argument(
        "--workspace",
        help="where sweeps live (default: $SCALEOUT_WORKSPACE or ./scaleout-workspace)",
    )
    p.add_argument(
        "--mlflow-uri", help="the tracking store to serve (default: the workspace's mlflow.db)"
    )
    p.add_argument(
        "--port",
        type=_port("--port"),
        default=5000,
        help="the MLflow UI's port (default: 5000; 0: a free one)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    p.add_argument(
        "--optuna",
        action="store_true",
        help="also serve optuna-dashboard for the sweep's study (default: off)",
    )
    p.add_argument(
        "--optuna-port",
        type=_port("--optuna-port"),
        default=8080,
        help="optuna-dashboard's port (default: 8080; 0: a free one)",
    )
    p.set_defaults(run=run)


def _port(flag: str):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a port number, got {text!r}") from None
        if not 0 <= value <= 65535:
            raise argparse.ArgumentTypeError(f"{flag} must be in 0..65535, got {value}")
        return value

    return parse


def mlflow_server_argv(uri: str, artifacts: str, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        artifacts,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def optuna_dashboard_argv(storage: str, host: str, port: int) -> list[str]:
    # optuna_dashboard.run_server is the package's public entry point (no __main__ module).
    code = (
        "import sys, optuna_dashboard; "
        "optuna_dashboard.run_server(sys.argv[1], host=sys.argv[2], port=int(sys.argv[3]))"
    )
    return [sys.executable, "-c", code, storage, host, str(port)]


def optuna_storage(root, name: str | None) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(sweep name, study storage URL) for --optuna; the extra must be installed."""
    import importlib.util

    from scaleout.core.errors import UsageError
    from scaleout.sweep.workspace import list_sweeps

    if importlib.util.find_spec("optuna_dashboard") is None:
        raise UsageError(
            "--optuna needs optuna-dashboard, which is not installed",
            hint="pip install 'scaleout[dashboard]'",
        )
    if name is None:
        names = list_sweeps(root)
        if len(names) != 1:
            raise UsageError(
                "--optuna serves one sweep's study: give its name "
                + (f"(sweeps here: {', '.join(names)})" if names else f"(none in {root} yet)")
            )
        name = names[0]
    from scaleout.sweep.workspace import SweepStore

    return name, SweepStore.open(name, root).storage_url


def require_server() -> None:
    """The MLflow server and UI come with the full `mlflow` package (the ui extra); the base
    install has the tracking client (mlflow-skinny) only, see pyproject.toml."""
    from importlib.metadata import PackageNotFoundError, version

    from scaleout.core.errors import UsageError

    try:
        version("mlflow")
    except PackageNotFoundError:
        raise UsageError(
            "scaleout ui needs the MLflow server and UI, which the base install leaves out "
            "(it has MLflow's tracking client only)",
            hint="pip install 'scaleout[ui]' (in a checkout: pip install -e '.[ui]')",
        ) from None


# -- ports ---------------------------------------------------------------------------------------
def claim_port(host: str, port: int, flag: str) -> int:
    """The port to serve on: `port` if nothing listens there (else UsageError naming who does),
    or a free one for 0. Checked with the options uvicorn binds with (SO_REUSEADDR), so a
    port that only has connections closing (TIME_WAIT) from an earlier server counts as free."""
    from scaleout.core.errors import UsageError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                owner = port_owner(port)
                who = f" by {owner}" if owner else " (by a process this user cannot see)"
                kill = f"stop it (kill {owner.pid}), or " if owner else ""
                raise UsageError(
                    f"{flag} {port}: {host}:{port} is already in use{who}",
                    hint=f"{kill}give {flag} 0 to take a free port, or another {flag}",
                ) from None
            raise UsageError(f"{flag} {port}: cannot listen on {host}:{port}: {exc}") from None
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PortOwner:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})"


def port_owner(port: int, proc: Path = Path("/proc")) -> PortOwner | None:
    """The process listening on TCP `port`, from Linux's /proc (None where it does not say:
    another OS, or another user's process)."""
    inodes = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 the socket's inode
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    if not inodes:
        return None
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in inodes:
                return PortOwner(int(pid_dir.name), _command(pid_dir))
    return None


def _command(pid_dir: Path) -> str:
    try:
        argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    return text if len(text) <= 120 else text[:117] + "..."


# -- servers -------------------------------------------------------------------------------------
@dataclass
class Server:
    """One server process, leader of its own session: stopping it stops its whole group."""

    what: str
    proc: subprocess.Popen  # type: ignore[type-arg]
    log: Path

    @classmethod
    def start(cls, what: str, argv: list[str], log: Path) -> Server:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(what, proc, log)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the group, SIGKILL what is left after `grace_s`, and reap the leader."""
        pgid = self.proc.pid
        if not _signal_group(pgid, signal.SIGTERM):
            self.proc.wait()
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(pgid):
            self.proc.poll()  # reap the leader as soon as it exits
            time.sleep(0.1)
        _signal_group(pgid, signal.SIGKILL)
        self.proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"    | {line}" for line in text[-lines:])


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any process (other than a zombie) is left in the process group."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            stat = (pid_dir / "stat").read_text()
        except OSError:
            continue
        # Fields after the command (which may hold spaces): state ppid pgrp ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_until_up(server: Server, url: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Return once `url` answers; StateError with the server's log tail if it exits first or
    does not answer in time."""
    from scaleout.core.errors import StateError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = server.proc.poll()
        if code is not None:
            raise StateError(
                f"{server.what} exited (status {code}) before it answered; its log "
                f"{server.log}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise StateError(
        f"{server.what} did not answer {url} within {timeout_s:.0f} s; its log "
        f"{server.log}:\n{server.log_tail()}"
    )


def experiment_urls(server: str) -> list[tuple[str, str]]:
    """(sweep, leaderboard URL) for each sweep experiment the running server holds, from its
    REST API (no mlflow import in this process)."""
    from scaleout.sweep.tracking import SWEEP_TAG, leaderboard_url

    req = urllib.request.Request(
        f"{server}/api/2.0/mlflow/experiments/search",
        data=json.dumps({"max_results": 1000}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            exps = json.loads(resp.read()).get("experiments", [])
    except (OSError, ValueError):
        return []
    out = []
    for e in exps:
        tags = {t["key"]: t.get("value") for t in e.get("tags", [])}
        if SWEEP_TAG in tags:
            out.append((e["name"], leaderboard_url(server, e["experiment_id"])))
    return sorted(out)


class _Stop(Exception):
    """Raised by the signal handler: a signal asked the UI to stop."""


def _stop_on(signum: int, frame: Any) -> None:
    raise _Stop(signum)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from scaleout.core.errors import UsageError
    from scaleout.sweep.tracking import default_artifact_root, default_tracking_uri
    from scaleout.sweep.workspace import workspace_root

    root = workspace_root(args.workspace)
    uri = default_tracking_uri(args.mlflow_uri, root)
    if uri.startswith("sqlite:///") and not (root / "mlflow.db").exists() and not args.mlflow_uri:
        raise UsageError(
            f"no MLflow store in {root} yet: run a sweep first, or give --workspace / --mlflow-uri"
        )
    require_server()
    study = optuna_storage(root, args.name) if args.optuna else None
    port = claim_port(args.host, args.port, "--port")
    optuna_port = claim_port(args.host, args.optuna_port, "--optuna-port") if study else None
    logs = root if root.is_dir() else Path(tempfile.mkdtemp(prefix="scaleout-ui-"))
    # MLflow's job runner serves GenAI features scaleout does not use, and triples start-up.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    host = f"[{args.host}]" if ":" in args.host else args.host
    server_url = f"http://{host}:{port}"

    servers: list[Server] = []
    previous = {
        s: signal.signal(s, _stop_on) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        print(
            f"starting the MLflow UI for {uri} (its log: {logs / 'mlflow-ui.log'}) ...", flush=True
        )
        artifacts = default_artifact_root(root)
        mlflow = Server.start(
            "the MLflow server",
            mlflow_server_argv(uri, artifacts, args.host, port),
            logs / "mlflow-ui.log",
        )
        servers.append(mlflow)
        dashboard = None
        if study is not None:
            name, storage = study
            dashboard = Server.start(
                "optuna-dashboard",
                optuna_dashboard_argv(storage, args.host, optuna_port),  # type: ignore[arg-type]
                logs / "optuna-dashboard.log",
            )
            servers.append(dashboard)
        wait_until_up(mlflow, f"{server_url}/health")
        if dashboard is not None:
            wait_until_up(dashboard, f"http://{host}:{optuna_port}/api/studies")
        # The links last, once the servers answer, so nothing pushes them off screen.
        print(f"MLflow UI: {server_url}  (Ctrl-C to stop)")
        if study is not None:
            print(f"optuna-dashboard for sweep {study[0]}: http://{host}:{optuna_port}")
        for name, url in experiment_urls(server_url):
            print(f"  {name} leaderboard: {url}")
        sys.stdout.flush()
        while True:
            for s in servers:
                code = s.proc.poll()
                if code is not None:
                    print(
                        f"scaleout: {s.what} exited (status {code}); its log {s.log}:\n"
                        f"{s.log_tail()}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
    except _Stop:
        return 0
    finally:
        # No second signal may cut the clean-up short: every group is stopped.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        for s in servers:
            s.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
