"""`scaleout ui`: the MLflow UI (the leaderboard) on 127.0.0.1 for the workspace's store."""

from __future__ import annotations

import argparse

HELP = "serve the MLflow UI for the workspace's sweeps on 127.0.0.1"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help=HELP, description=HELP + ". Ctrl-C stops it.")
    p.add_argument("--workspace", help="default: $SCALEOUT_WORKSPACE or ./scaleout-workspace")
    p.add_argument("--mlflow-uri", help="the tracking store (default: the workspace's)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
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


def run(args: argparse.Namespace) -> int:
    import subprocess

    from scaleout.errors import UsageError
    from scaleout.tracking import default_artifact_root, default_tracking_uri
    from scaleout.workspace import workspace_root

    root = workspace_root(args.workspace)
    uri = default_tracking_uri(args.mlflow_uri, root)
    if uri.startswith("sqlite:///") and not (root / "mlflow.db").exists() and not args.mlflow_uri:
        raise UsageError(
            f"no MLflow store in {root} yet: run a sweep first, or give --workspace / --mlflow-uri"
        )
    argv = mlflow_server_argv(uri, default_artifact_root(root), args.host, args.port)
    print(f"MLflow UI for {uri}: http://{args.host}:{args.port}  (Ctrl-C to stop)")
    try:
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return 0
