"""Sweeps on disk: one folder per sweep under the workspace, the one-controller lock, and
`SweepStore`, the one reader of a saved sweep.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from scaleout.core.errors import (
    SECRET,
    ScaleoutError,
    StateError,
    UsageError,
    has_secret,
    redact_url,
)
from scaleout.core.files import write_atomic

DEFAULT_WORKSPACE = "scaleout-workspace"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def workspace_root(flag: str | None = None) -> Path:
    return Path(flag or os.environ.get("SCALEOUT_WORKSPACE") or DEFAULT_WORKSPACE).resolve()


def check_workspace(root: Path) -> Path:
    """Refuse a workspace that is not a folder (a file named by --workspace)."""
    if root.exists() and not root.is_dir():
        raise UsageError(
            f"--workspace {root}: not a directory",
            hint="--workspace (or $SCALEOUT_WORKSPACE) names the folder sweeps live in",
        )
    return root


def unwritable(where: Path, exc: OSError) -> StateError:
    """The error for a workspace or sweep folder that cannot be written (read-only, no
    permission): it names the folder, never with a traceback."""
    return StateError(
        f"cannot write to {where}: {exc.strerror or exc}",
        hint="the workspace must be writable (--workspace, $SCALEOUT_WORKSPACE); "
        "`scaleout status` and `leaderboard` only read it",
    )


def unmask(stored: str, *given: str | None, flag: str, env: str) -> str:
    """The URL to use for a store whose URL sweep.json keeps with its password masked
    (`redact_url`): the first of `given` (the flag, then the environment variable) that is
    the same URL with its password. A URL without a mask is returned as it is."""
    if f":{SECRET}@" not in stored:
        return stored
    for url in given:
        if url and has_secret(url) and redact_url(url) == stored:
            return url
    raise UsageError(
        f"{stored}: the sweep's store was recorded without its password",
        hint=f"give {flag} with the password again, or set ${env} to the whole URL",
    )


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UsageError(
            f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 64, "
            "starting with a letter or digit)"
        )
    return name


def default_name(space_file: str | Path, gpus: int) -> str:
    return f"{Path(space_file).stem}-{gpus}g"


def trial_dir(sweep_dir: Path, number: int) -> Path:
    """A trial's work dir, kept across its attempts (its checkpoints live there)."""
    return Path(sweep_dir) / "trials" / f"t{number:03d}"


def space_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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

    def exists(self) -> bool:
        return self.meta_path.exists()

    def read_meta(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.meta_path.read_text())
        except FileNotFoundError:
            raise UsageError(
                f"no sweep named {self.name!r} in {self.root}", hint=_missing_hint(self)
            ) from None
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else f"not JSON ({exc})"
            raise StateError(f"cannot read {self.meta_path}: {why}") from None
        if not isinstance(meta, dict):
            raise StateError(f"cannot read {self.meta_path}: not a JSON object")
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Write sweep.json; the stores' URLs without their passwords (docs/sweep.md)."""
        stored = dict(meta)
        for key in ("storage", "mlflow_uri"):
            if isinstance(stored.get(key), str):
                stored[key] = redact_url(stored[key])
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.meta_path, json.dumps(stored, indent=2, sort_keys=True))


def list_sweeps(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/sweep.json"))


def _missing_hint(sweep: Sweep) -> str:
    if sweep.dir.is_dir():
        # A sweep whose first command died before writing sweep.json (its last write).
        return (
            f"{sweep.dir} holds a sweep that was never completely created: run the command "
            "that started it again (same --space, --gpus and --name) to finish creating it"
        )
    return _list_hint(sweep.root)


def _list_hint(root: Path) -> str:
    names = list_sweeps(root)
    if not names:
        return f"the workspace {root} holds no sweeps yet (set --workspace or SCALEOUT_WORKSPACE)"
    return "sweeps here: " + ", ".join(names)


def find_sweep(root: Path, name: str) -> Sweep:
    check_workspace(root)
    sweep = Sweep(root, name)
    if not sweep.exists():
        raise UsageError(f"no sweep named {name!r} in {root}", hint=_missing_hint(sweep))
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise unwritable(self.path.parent, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise _held(holder) from None
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
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        return None

    def refuse_if_held(self) -> None:
        """Refuse at once when another controller holds the lock (takes nothing)."""
        holder = self.holder()
        if holder is not None:
            raise _held(holder)

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


def _held(holder: str) -> StateError:
    return StateError(
        f"another controller is running this sweep ({holder})",
        hint="wait for it, or stop it (Ctrl-C) before resuming here",
    )


# -- reading a saved sweep -----------------------------------------------------------------------
# The three settings every view of a trial shows, in this order, whatever else the plan names.
CORE_KNOBS = ("lr", "warmup_iters", "min_lr_ratio")
# What a plan may fix that describes a trial's scale, not its recipe: these have columns of
# their own (`epochs` trained, `gpus` ...), so they are not knobs.
SCALE_KEYS = frozenset({"gpus", "samples_per_gpu", "global_batch", "epochs"})
STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING")  # Optuna's TrialState order
_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "FAIL": 3, "WAITING": 4}


def plan_knobs(plan: Mapping[str, Any]) -> tuple[str, ...]:
    """The settings a sweep searches or fixes, from its plan.json ("ranges", "seed_trials",
    "fixed"): the core three first, then the others in the order the plan names them."""
    names = dict.fromkeys(CORE_KNOBS)
    names.update(dict.fromkeys(plan.get("ranges") or {}))
    for seed in plan.get("seed_trials") or []:
        names.update(dict.fromkeys(k for k in seed if k != "origin"))
    names.update(dict.fromkeys(plan.get("fixed") or {}))
    return tuple(n for n in names if n not in SCALE_KEYS)


@dataclass(frozen=True)
class TrialRecord:
    """One trial's stored facts, decoded from the study (its user attrs hold them, see
    `search.Attr`). `value` is the objective: final for completed trials, else the result's."""

    number: int
    state: str
    origin: str
    value: float | None
    params: dict[str, Any]
    result: dict[str, Any]
    attempts: int
    job: dict[str, Any]
    work_dir: Path | None
    run_id: str | None
    failure: dict[str, Any]
    intermediate: dict[int, float] = field(default_factory=dict)
    started: datetime | None = None
    finished: datetime | None = None

    @classmethod
    def from_trial(cls, t: Any, objective: str, *, home: Path | None = None) -> TrialRecord:
        """From an Optuna FrozenTrial. `home`: the sweep's folder now, where a work dir the
        trial recorded inside the sweep's folder is looked for after a move."""
        from scaleout.sweep.search import Attr

        ua = t.user_attrs
        params = ua.get(Attr.PARAMS) or {}
        result = ua.get(Attr.RESULT) or {}
        state = t.state.name
        work_dir = Path(ua[Attr.WORK_DIR]) if ua.get(Attr.WORK_DIR) else None
        if work_dir is not None and home is not None:
            work_dir = _first_existing(_now_at(work_dir, home), work_dir) or work_dir
        return cls(
            number=t.number,
            state=state,
            origin=ua.get(Attr.ORIGIN, "sampled"),
            value=t.value if state == "COMPLETE" else result.get(objective),
            # Before the controller records what a trial runs with, the sampled values.
            params={**t.params, **params},
            result=result,
            attempts=ua.get(Attr.ATTEMPT, 1 if ua.get(Attr.JOB) else 0),
            job=json.loads(ua.get(Attr.JOB) or "{}"),
            work_dir=work_dir,
            run_id=ua.get(Attr.RUN_ID),
            failure=ua.get(Attr.FAILURE) or {},
            intermediate=dict(t.intermediate_values),
            started=t.datetime_start,
            finished=t.datetime_complete,
        )


def best_first(
    records: Iterable[TrialRecord], direction: str
) -> list[tuple[int | None, TrialRecord]]:
    """The one order every view of a sweep shows: completed trials best first, then pruned
    ones (by their last reported value), running, failed and waiting ones. Ranks (1-based)
    count completed trials only; the others get None."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(r: TrialRecord) -> tuple[int, float, int]:
        v = r.value
        finite = isinstance(v, (int, float)) and v == v and abs(v) != float("inf")
        return (_ORDER.get(r.state, 5), sign * v if finite else float("inf"), r.number)

    out: list[tuple[int | None, TrialRecord]] = []
    rank = 0
    for r in sorted(records, key=key):
        if r.state == "COMPLETE":
            rank += 1
        out.append((rank if r.state == "COMPLETE" else None, r))
    return out


class SweepStore:
    """The one reader of a saved sweep: sweep.json, plan.json, the study and the trial folders.

    It never writes: the study is opened read-only (SQLite) and never created, so a reader
    cannot leave an empty database behind a wrong path. Stores recorded inside the sweep's own
    folder (the default study.db) or the workspace (the default mlflow.db), and the trials'
    folders, are looked for where the sweep is now: a workspace moved as a whole (mv) reads as
    before. Errors name the file and why, in one line.
    """

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self._study: Any = None

    @classmethod
    def open(cls, name: str, workspace: str | Path | None = None) -> SweepStore:
        """The sweep `name` in `workspace` (default: $SCALEOUT_WORKSPACE, else
        ./scaleout-workspace); a name that is not there lists the ones that are."""
        return cls(find_sweep(workspace_root(str(workspace) if workspace else None), name))

    @property
    def name(self) -> str:
        return self.sweep.name

    @property
    def dir(self) -> Path:
        return self.sweep.dir

    @cached_property
    def meta(self) -> dict[str, Any]:
        return self.sweep.read_meta()

    @cached_property
    def plan(self) -> dict[str, Any]:
        path = self.dir / "plan.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read the plan {path}: {type(exc).__name__}") from None

    @property
    def objective(self) -> str:
        return self.plan["objective"]["metric"]

    @property
    def direction(self) -> str:
        return self.plan["objective"]["direction"]

    @cached_property
    def knobs(self) -> tuple[str, ...]:
        return plan_knobs(self.plan)

    @cached_property
    def storage_url(self) -> str:
        """The study's SQLAlchemy URL, where the study is now."""
        url = unmask(
            self.meta["storage"],
            os.environ.get("SCALEOUT_STORAGE"),
            flag="--storage",
            env="SCALEOUT_STORAGE",
        )
        recorded = _sqlite_file(url)
        if recorded is None:
            return url
        found = _first_existing(_now_at(recorded, self.dir), recorded)
        if found is None:
            raise StateError(
                f"the study database of sweep {self.name!r} is gone from {recorded} "
                "(moved or deleted?)",
                hint="move the sweep's folder back together with its study.db",
            )
        return f"sqlite:///{found}"

    def mlflow_uri(self, override: str | None = None) -> str | None:
        """The tracking store to read: `override` (--mlflow-uri) if given, None for "" (read
        without MLflow), else the recorded one, where it is now."""
        if override == "":
            return None
        if override:
            path = _sqlite_file(override)
            # MlflowClient would silently create an empty store at a wrong path: refuse.
            if path is not None and not path.exists():
                raise StateError(
                    f"no MLflow store at {override} (asked for sweep {self.name!r})",
                    hint="check the path; `scaleout status NAME --json` shows the store the "
                    "sweep used",
                )
            return override
        url = unmask(
            self.meta["mlflow_uri"],
            os.environ.get("MLFLOW_TRACKING_URI"),
            flag="--mlflow-uri",
            env="MLFLOW_TRACKING_URI",
        )
        recorded = _sqlite_file(url)
        if recorded is None:
            return url
        found = _first_existing(self._in_workspace_now(recorded), recorded)
        if found is None:
            raise StateError(
                f"the MLflow store of sweep {self.name!r} is gone from {url} (moved or deleted?)",
                hint="pass mlflow_uri= (--mlflow-uri) where it lives now, or mlflow_uri='' "
                "(--no-mlflow) to load without MLflow metrics",
            )
        return f"sqlite:///{found}"

    def _in_workspace_now(self, recorded: Path) -> Path:
        # The workspace the sweep was made in is the parent of the folder its study was in;
        # when the study does not say (not SQLite), the default store's name does.
        study = _sqlite_file(self.meta["storage"])
        old_dir = _folder_named(study, self.name) if study is not None else None
        if old_dir is not None and recorded.is_relative_to(old_dir.parent):
            return self.sweep.root / recorded.relative_to(old_dir.parent)
        return self.sweep.root / recorded.name if recorded.name == "mlflow.db" else recorded

    def study(self) -> Any:
        """The Optuna study, loaded once; read it, never write it (the controller owns it)."""
        if self._study is None:
            self._study = self._guard(self._load)
        return self._study

    def _load(self) -> Any:
        import optuna

        return optuna.load_study(study_name=self.name, storage=_read_only(self.storage_url))

    def _guard(self, read: Any) -> Any:
        where = _where(self.storage_url)
        try:
            return read()
        except ScaleoutError:
            raise
        except KeyError:
            raise StateError(f"the study database {where} holds no study {self.name!r}") from None
        except Exception as exc:  # sqlalchemy raises many kinds; the user needs the file and why
            raise StateError(f"cannot read the study database {where}: {_reason(exc)}") from None

    def records(self, *, include_waiting: bool = False) -> list[TrialRecord]:
        """Every trial's stored facts, by trial number (waiting ones only when asked)."""
        trials = self._guard(lambda: self.study().get_trials(deepcopy=False))
        return [
            TrialRecord.from_trial(t, self.objective, home=self.dir)
            for t in trials
            if include_waiting or t.state.name != "WAITING"
        ]

    def study_attrs(self) -> dict[str, Any]:
        return self._guard(lambda: dict(self.study().user_attrs))

    def controller(self) -> str | None:
        """Who runs the sweep now (pid and host), or None."""
        return ControllerLock(self.sweep).holder()


def _sqlite_file(url: str) -> Path | None:
    """The file of a `sqlite:///` URL (None for other stores and in-memory ones)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _folder_named(path: Path, name: str) -> Path | None:
    return next((p for p in path.parents if p.name == name), None)


def _now_at(recorded: Path, home: Path) -> Path:
    """Where a path recorded inside a folder named like `home` lies now that the folder is
    `home` (/old/ws/s1/study.db -> <home>/study.db for home /new/ws/s1); others unchanged."""
    old = _folder_named(recorded, home.name)
    return recorded if old is None else home / recorded.relative_to(old)


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def _read_only(url: str) -> Any:
    """Optuna storage that cannot write: SQLite opened with mode=ro (the URI is given to
    sqlite3 itself, so no character in the path can turn it back into a writable open), and
    no table creation for any backend."""
    import optuna

    path = _sqlite_file(url)
    if path is None:
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"pool_pre_ping": True}, skip_table_creation=True
        )
    import sqlite3
    from urllib.parse import quote

    uri = f"file:{quote(str(path))}?mode=ro"
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs={
            "creator": lambda: sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        },
        skip_table_creation=True,
    )


def _where(url: str) -> str:
    path = _sqlite_file(url)
    if path is not None:
        return str(path)
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _reason(exc: BaseException) -> str:
    """The innermost cause's first line: Optuna wraps the database's own words."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{text} ({type(exc).__name__})" if text else type(exc).__name__
