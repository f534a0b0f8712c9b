"""Sweeps on disk: one folder per sweep under the workspace, and the one-controller lock.

<workspace>/                       (--workspace, $SCALEOUT_WORKSPACE, ./scaleout-workspace)
  mlflow.db, mlartifacts/          the default MLflow store, shared by the workspace's sweeps
  <sweep>/
    sweep.json                     what the sweep was started with (space hash, gpus, trainer ...)
    space.yaml, plan.json          the space file as given, and the plan derived from it
    study.db                       the Optuna study: the single source of truth
    controller.lock                pid and host of the controller that holds the sweep
    trials/t000/ ...               each trial's work dir (kept across attempts: checkpoints)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaleout.core.errors import StateError, UsageError

DEFAULT_WORKSPACE = "scaleout-workspace"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def workspace_root(flag: str | None = None) -> Path:
    return Path(flag or os.environ.get("SCALEOUT_WORKSPACE") or DEFAULT_WORKSPACE).resolve()


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UsageError(
            f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 64, "
            "starting with a letter or digit)"
        )
    return name


def default_name(space_file: str | Path, gpus: int) -> str:
    return f"{Path(space_file).stem}-{gpus}g"


def space_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Sweep:
    root: Path
    name: str

    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def study_url(self) -> str:
        return f"sqlite:///{self.dir / 'study.db'}"

    @property
    def meta_path(self) -> Path:
        return self.dir / "sweep.json"

    def trial_dir(self, number: int) -> Path:
        return self.dir / "trials" / f"t{number:03d}"

    def exists(self) -> bool:
        return self.meta_path.exists()

    def read_meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path.read_text())
        except FileNotFoundError:
            raise StateError(
                f"no sweep named {self.name!r} in {self.root}", hint=_list_hint(self.root)
            ) from None

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.meta_path, json.dumps(meta, indent=2, sort_keys=True))


def list_sweeps(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/sweep.json"))


def _list_hint(root: Path) -> str:
    names = list_sweeps(root)
    if not names:
        return f"the workspace {root} holds no sweeps yet (set --workspace or SCALEOUT_WORKSPACE)"
    return "sweeps here: " + ", ".join(names)


def find_sweep(root: Path, name: str) -> Sweep:
    sweep = Sweep(root, name)
    if not sweep.exists():
        raise UsageError(f"no sweep named {name!r} in {root}", hint=_list_hint(root))
    return sweep


class ControllerLock:
    """An exclusive flock on <sweep>/controller.lock, held for the controller's lifetime.

    The kernel drops the lock when the process dies (kill -9 included), so a stale lock file
    never blocks a resume; its content only names the holder for the refusal message.
    """

    def __init__(self, sweep: Sweep) -> None:
        self.path = sweep.dir / "controller.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateError(
                f"another controller is running this sweep ({holder})",
                hint="wait for it, or stop it (Ctrl-C) before resuming here",
            ) from None
        os.ftruncate(fd, 0)
        os.write(
            fd,
            f"pid {os.getpid()} on host {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(),
        )
        self._fd = fd

    def holder(self) -> str | None:
        """Who holds the lock now (a running controller), or None. Takes nothing."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        return None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ControllerLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
