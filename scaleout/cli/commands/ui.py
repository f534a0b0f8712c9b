"""`scaleout ui`: the MLflow UI (the leaderboard) on 127.0.0.1 for the workspace's store,
and with --optuna the optuna-dashboard for a sweep's study beside it."""

from __future__ import annotations

import argparse

HELP = "serve the MLflow UI for the workspace's sweeps on 127.0.0.1 (--optuna: the study too)"
DESCRIPTION = """\
Serve the MLflow UI for the workspace's sweeps. Each sweep's experiment has a
'leaderboard' view: the trial runs ranked by the objective with the columns to rank by;
the command prints its address for every sweep. Ctrl-C stops it.

--optuna also serves the optuna-dashboard for one sweep's study (pip install
'scaleout[dashboard]'): give the sweep's name, or none when the workspace holds one sweep.

examples:
  scaleout ui
  scaleout ui lr_scaling-160g --optuna --optuna-port 8080
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", help="the sweep whose study --optuna serves")
    p.add_argument("--workspace", help="default: $SCALEOUT_WORKSPACE or ./scaleout-workspace")
    p.add_argument("--mlflow-uri", help="the tracking store (default: the workspace's)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    p.add_argument(
        "--optuna", action="store_true", help="also serve optuna-dashboard for the sweep's study"
    )
    p.add_argument("--optuna-port", type=int, default=8080, help="optuna-dashboard's port")
    p.set_defaults(run=run)


def mlflow_server_argv(uri: str, artifacts: str, host: str, port: int) -> list[str]:
    import sys

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
    import sys

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


def experiment_urls(uri: str, server: str) -> list[tuple[str, str]]:
    """(sweep, leaderboard URL) for each sweep experiment in the store."""
    from mlflow.tracking import MlflowClient

    from scaleout.sweep.tracking import SWEEP_TAG, leaderboard_url

    try:
        exps = MlflowClient(tracking_uri=uri).search_experiments()
    except Exception:
        return []
    return sorted(
        (e.name, leaderboard_url(server, e.experiment_id)) for e in exps if SWEEP_TAG in e.tags
    )


def run(args: argparse.Namespace) -> int:
    import os
    import signal
    import subprocess
    import sys

    from scaleout.core.errors import UsageError
    from scaleout.sweep.tracking import default_artifact_root, default_tracking_uri
    from scaleout.sweep.workspace import workspace_root

    root = workspace_root(args.workspace)
    uri = default_tracking_uri(args.mlflow_uri, root)
    if uri.startswith("sqlite:///") and not (root / "mlflow.db").exists() and not args.mlflow_uri:
        raise UsageError(
            f"no MLflow store in {root} yet: run a sweep first, or give --workspace / --mlflow-uri"
        )
    study = optuna_storage(root, args.name) if args.optuna else None
    # MLflow's job runner serves GenAI features scaleout does not use, and triples start-up.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    argv = mlflow_server_argv(uri, default_artifact_root(root), args.host, args.port)
    server = f"http://{args.host}:{args.port}"
    print(f"MLflow UI for {uri}: {server}  (Ctrl-C to stop)")
    for name, url in experiment_urls(uri, server):
        print(f"  {name} leaderboard: {url}")
    procs = []
    # `kill` stops the servers too: SystemExit unwinds through subprocess.call (which kills
    # MLflow) and the finally below (optuna-dashboard).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if study is not None:
            name, storage = study
            procs.append(
                subprocess.Popen(optuna_dashboard_argv(storage, args.host, args.optuna_port))
            )
            print(f"optuna-dashboard for sweep {name}: http://{args.host}:{args.optuna_port}")
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
