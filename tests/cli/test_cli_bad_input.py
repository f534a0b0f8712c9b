"""Bad input refused in one line: exit 2 (3 for the sweep's state, docs/sweep.md), a message
that names the file, key or flag, no traceback, and nothing written.

One row per case of issue 12's table: what crashed with a traceback, what left half a sweep
behind, what was accepted silently, and what said something misleading. Each row builds its
own files under tmp_path and gives the argv; the test snapshots every file under tmp_path
before and after the command.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from scaleout.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "search_spaces" / "lr_scaling.yaml"


@dataclass(frozen=True)
class Case:
    setup: Callable[[Path], list[str]]  # files under tmp_path -> the argv
    code: int
    says: tuple[str, ...]  # each must be in stderr
    never: tuple[str, ...] = ()  # none may be


def space(tmp: Path, data: dict | None = None, *, name: str = "s.yaml", text: str | None = None):
    path = tmp / name
    path.write_text(text if text is not None else yaml.safe_dump(data or {}))
    return path


def sweep(tmp: Path, space_file: Path | str, *extra: str, gpus: int = 16) -> list[str]:
    return [
        "sweep", "--gpus", str(gpus), "--space", str(space_file), "--preset", "tiny",
        "--workspace", str(tmp / "ws"), *extra,
    ]  # fmt: skip


def _binary(tmp: Path) -> list[str]:
    path = tmp / "space.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 8)
    return sweep(tmp, path)


def _workspace_file(tmp: Path) -> list[str]:
    (tmp / "ws").write_text("not a folder")
    return sweep(tmp, SPACE)


def _garbage_study(tmp: Path, command: str) -> list[str]:
    d = tmp / "ws" / "g"
    d.mkdir(parents=True)
    (d / "study.db").write_bytes(os.urandom(4096))
    meta = {"name": "g", "storage": f"sqlite:///{d / 'study.db'}", "mlflow_uri": ""}
    (d / "sweep.json").write_text(json.dumps(meta))
    (d / "plan.json").write_text(json.dumps({"objective": {"metric": "NDS"}}))
    return [command, "g", "--workspace", str(tmp / "ws")]


def _garbage_meta(tmp: Path) -> list[str]:
    d = tmp / "ws" / "g"
    d.mkdir(parents=True)
    (d / "sweep.json").write_text("{not json")
    return ["status", "g", "--workspace", str(tmp / "ws")]


def _space_dir(tmp: Path) -> list[str]:
    (tmp / "spaces").mkdir()
    return sweep(tmp, tmp / "spaces")


def _password(tmp: Path) -> list[str]:
    return sweep(tmp, SPACE, "--storage", "postgresql://me:hunter2@127.0.0.1:9/none")


CASES: dict[str, Case] = {
    # -- tracebacks (exit 1) before ---------------------------------------------------------
    "yaml-syntax-error-in-sweep": Case(
        lambda t: sweep(t, space(t, text="search: [\n  lr: {")),
        2,
        ("s.yaml", "YAML syntax error at line"),
    ),
    "binary-space-file": Case(_binary, 2, ("space.yaml", "not a text file")),
    "grid-points-not-a-number": Case(
        lambda t: sweep(t, space(t, {"sampler": {"type": "grid", "options": {"points": "x"}}})),
        2,
        ("s.yaml: sampler", "options.points must be a positive whole number"),
    ),
    "workspace-is-a-file": Case(_workspace_file, 2, ("--workspace", "not a directory")),
    "garbage-study-db-status": Case(
        lambda t: _garbage_study(t, "status"), 3, ("cannot read the study database", "study.db")
    ),
    "garbage-study-db-leaderboard": Case(
        lambda t: _garbage_study(t, "leaderboard"),
        3,
        ("cannot read the study database", "study.db"),
    ),
    "garbage-sweep-json": Case(_garbage_meta, 3, ("cannot read", "sweep.json", "not JSON")),
    # -- half-written state before -----------------------------------------------------------
    "bad-sampler-options": Case(
        lambda t: sweep(t, space(t, {"sampler": {"type": "tpe", "options": {"bogus": 1}}})),
        2,
        ("s.yaml: sampler.options", "bogus"),
    ),
    "bad-pruner-options": Case(
        lambda t: sweep(t, space(t, {"pruner": {"type": "median", "options": {"bogus": 1}}})),
        2,
        ("s.yaml: pruner.options", "bogus"),
    ),
    "bad-pruner-option-value": Case(
        lambda t: sweep(
            t, space(t, {"pruner": {"type": "median", "options": {"n_startup_trials": -1}}})
        ),
        2,
        ("s.yaml: pruner.options", "n_startup_trials"),
    ),
    # -- accepted silently before ------------------------------------------------------------
    "fixed-key-no-adapter-sets": Case(
        lambda t: sweep(t, space(t, {"search": {"fixed": {"weight_decay": 0.5}}})),
        2,
        ("s.yaml: search.fixed.weight_decay", "does not set", "epochs, eval_interval"),
    ),
    "fixed-key-misspelt": Case(
        lambda t: sweep(t, space(t, {"search": {"fixed": {"epoch": 5}}})),
        2,
        ("s.yaml: search.fixed.epoch", "did you mean epochs?"),
    ),
    "fixed-warmup-longer-than-the-trial": Case(
        lambda t: sweep(t, space(t, {"search": {"warmup_iters": {"fixed": 1000}}})),
        2,
        ("s.yaml: search.warmup_iters.fixed", "only 30 iterations"),
    ),
    "empty-name": Case(lambda t: sweep(t, SPACE, "--name", ""), 2, ("--name ''",)),
    "objective-the-trainer-never-logs": Case(
        lambda t: sweep(t, space(t, {"objective": {"metric": "NDSS"}})),
        2,
        ("s.yaml: objective.metric", "'NDSS'", "minibev"),
    ),
    # -- misleading messages before ----------------------------------------------------------
    "gpus-beyond-the-dataset": Case(
        lambda t: sweep(t, SPACE, gpus=200),
        2,
        ("--gpus 200", "more than the 160 training samples"),
        ("cap_fraction",),
    ),
    "space-file-is-a-directory": Case(_space_dir, 2, ("spaces", "is a directory"), ("no such",)),
    "space-file-name-with-a-space": Case(
        lambda t: sweep(t, space(t, {}, name="my space.yaml")),
        2,
        ("my space.yaml", "default sweep name 'my space-16g'", "give --name"),
        ("--name 'my space-16g'",),
    ),
    "resume-of-a-missing-sweep": Case(
        lambda t: ["sweep", "--name", "nope", "--resume", "--workspace", str(t / "ws")],
        2,
        ("no sweep named 'nope'",),
    ),
    # -- security ----------------------------------------------------------------------------
    "password-in-the-storage-url": Case(
        _password,
        3,
        ("cannot open the study database postgresql://me:***@127.0.0.1:9",),
        ("hunter2",),
    ),
    "control-character-in-slurm-extra": Case(
        lambda t: sweep(t, SPACE, "--executor", "slurm", "--slurm-extra", "--qos=x\nrm -rf ~"),
        2,
        ("--slurm-extra", "control character"),
    ),
}


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root and its content's digest. A SQLite database by its rows (a
    reader may fold the write-ahead log into the file; -wal and -shm are that log); the
    lock file's content is the holder's name, rewritten by whoever takes it: left out."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel + "/"] = ""
        elif p.name == "controller.lock" or p.name.endswith(("-wal", "-shm")):
            continue
        elif p.suffix == ".db" and p.read_bytes()[:16] == b"SQLite format 3\x00":
            with contextlib.closing(sqlite3.connect(f"file:{p}?mode=ro", uri=True)) as db:
                out[rel] = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(argv: list[str], case: Case, capsys, root: Path) -> None:
    before = snapshot(root)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == case.code, err
    assert "Traceback" not in err
    for words in case.says:
        assert words in err, err
    for words in case.never:
        assert words not in err, err
    assert snapshot(root) == before  # nothing written, nothing half-written


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_refused_clearly_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default workspace would land here
    row = CASES[case]
    argv = row.setup(tmp_path)
    refused(argv, row, capsys, tmp_path)


# -- the cases that need a sweep that exists, or a workspace that cannot be written -----------
@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` and everything in it unwritable, for root as well (chattr +i), or skip."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root, and no chattr to make a folder read-only")
    if subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("this filesystem takes no immutable flag (chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=True)


def test_a_read_only_workspace_refuses_a_new_sweep(tmp_path, capsys):
    (tmp_path / "ws").mkdir()
    case = Case(lambda t: sweep(t, SPACE), 3, ("cannot write to", str(tmp_path / "ws")))
    with read_only(tmp_path / "ws"):
        refused(case.setup(tmp_path), case, capsys, tmp_path)


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A sweep that exists and has started two trials (real stores; no trial ran)."""
    from scaleout.sweep.session import SweepRequest, open_sweep

    ws = tmp_path_factory.mktemp("ws")
    opened = open_sweep(
        SweepRequest(
            space=str(SPACE),
            gpus=16,
            name="b",
            trials=3,
            workspace=str(ws),
            trainer_flags={"preset": "tiny"},
        )
    )
    try:
        opened.searcher.ask(), opened.searcher.ask()
    finally:
        opened.lock.release()
    return ws


ON_RESUME = {
    "trials-below-the-started-on-resume": (
        Case(
            lambda ws: ["sweep", "--name", "b", "--resume", "--trials", "1"],
            2,
            ("--trials 1: the sweep 'b' has already started 2 trials",),
        ),
        False,
    ),
    "read-only-workspace-on-resume": (
        Case(lambda ws: ["sweep", "--name", "b", "--resume"], 3, ("cannot write to", "/b:")),
        True,
    ),
}


@pytest.mark.slow  # real MLflow and study stores (the module's one sweep)
@pytest.mark.parametrize("case", list(ON_RESUME), ids=list(ON_RESUME))
def test_bad_input_on_resume_is_refused_clearly_and_writes_nothing(case, existing, capsys):
    row, unwritable = ON_RESUME[case]
    argv = [*row.setup(existing), "--workspace", str(existing)]
    with read_only(existing) if unwritable else contextlib.nullcontext():
        refused(argv, row, capsys, existing)
