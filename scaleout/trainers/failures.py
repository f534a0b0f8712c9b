"""Why a trial failed: the first error of the failing rank, out of a job's combined output.

A job's log ends with the launcher's summary (torch.distributed's `ChildFailedError` block,
or `subprocess.CalledProcessError` from the legacy launcher) while the cause, a worker's
traceback, sits above it, often above the other ranks' tracebacks that the first failure
set off. `failure_cause` reads the log as text and returns that first traceback's error
line, the failing rank where the launcher names it, and whether a retry would meet the
same error (docs/trainers.md, "Failed trials").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from scaleout.trainers.base import Failure

# A crash at start-up leaves a short log; one after hours leaves its traceback near the end.
TAIL_BYTES = 4 * 1024 * 1024
TRACEBACK_LINES = 15

# `torchrun --tee` / `--log-dir` prefix each worker line with its rank.
_RANK_PREFIX = re.compile(r"^\[(?:default|rank)?(\d+)\]:\s?")
_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(:.*)?$")  # `ValueError: ...`, `KeyboardInterrupt`
# torch.distributed's summary: "Root Cause (first observed failure):" ... "rank : 3 (local_rank: 3)"
_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\)")
_SUMMARY_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")
# Paddle's launcher: "the trainer process with rank=[3] was aborted".
_PADDLE_RANK = re.compile(r"trainer process with rank=\[(\d+)\]")
# The launcher's own exceptions: the effect of a worker's failure, never its cause.
_LAUNCHER = re.compile(
    r"^(subprocess\.CalledProcessError|(?:torch\.distributed\.elastic\.[\w.]+\.)?"
    r"(ChildFailedError|SignalException)|KeyboardInterrupt|SystemExit)\b"
)
# Errors that other ranks raise once one rank has died: a cause only when nothing else is.
_SECONDARY = re.compile(
    r"NCCL communicator was aborted|Connection (reset|closed) by peer|DistStoreError|"
    r"DistNetworkError|Broken pipe|ProcessGroupNCCL|Watchdog caught collective operation timeout|"
    r"recvValue|socket timeout",
    re.IGNORECASE,
)
# Error lines without a traceback, first match wins.
_BARE_ERRORS = (
    re.compile(r"\S+\.py: error: .+"),  # argparse
    re.compile(r"CUDA out of memory.*|CUDA error: .+"),
    re.compile(r"Segmentation fault.*|Bus error.*|Illegal instruction.*"),
    re.compile(r"slurmstepd: error: .+|srun: error: .+"),
    re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception): .+"),
    re.compile(r"^\s*exitcode\s*:\s*-\d+.*"),  # killed by a signal (the OOM killer: -9)
)


@dataclass(frozen=True)
class _Block:
    rank: int | None
    line: str
    traceback: tuple[str, ...]


def failure_cause(text: str) -> Failure | None:
    """The cause of a failed job from its combined output (pure; None when it shows none)."""
    if not text:
        return None
    lines, ranks = _split_ranks(text.splitlines())
    failing = _failing_rank(lines)
    blocks = [b for b in _tracebacks(lines, ranks) if not _LAUNCHER.match(b.line)]
    if blocks:
        primary = [b for b in blocks if not _SECONDARY.search(b.line)] or blocks
        own = [b for b in primary if failing is not None and b.rank == failing]
        block = (own or primary)[0]
        rank = block.rank if block.rank is not None else failing
        return _classified(block.line, "\n".join(block.traceback[-TRACEBACK_LINES:]), rank)
    for pattern in _BARE_ERRORS:
        for line in lines:
            if (m := pattern.search(line)) and not _LAUNCHER.match(m.group(0)):
                return _classified(m.group(0).strip(), "", failing)
    return None


def read_log_tail(path: str | Path) -> str:
    """The last TAIL_BYTES of a log ("" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    text = data.decode(errors="replace")
    return text if size <= TAIL_BYTES else text.split("\n", 1)[-1]  # drop a cut first line


def failing_rank(text: str) -> int | None:
    """The rank the launcher's summary names as the first to fail, if it names one."""
    return _failing_rank(_split_ranks(text.splitlines())[0])


def _split_ranks(raw: Iterable[str]) -> tuple[list[str], list[int | None]]:
    lines: list[str] = []
    ranks: list[int | None] = []
    for line in raw:
        m = _RANK_PREFIX.match(line)
        lines.append(line[m.end() :] if m else line)
        ranks.append(int(m.group(1)) if m else None)
    return lines, ranks


def _failing_rank(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        if _ROOT_CAUSE.search(line):
            for after in lines[i + 1 : i + 12]:
                if m := _SUMMARY_RANK.match(after):
                    return int(m.group(1))
        if m := _PADDLE_RANK.search(line):
            return int(m.group(1))
    return None


def _tracebacks(lines: list[str], ranks: list[int | None]) -> list[_Block]:
    """Every traceback with its exception line. A rank's lines are read apart from the
    others' when the log says whose each line is (interleaved output stays readable)."""
    streams: dict[int | None, list[str]] = {}
    for line, rank in zip(lines, ranks, strict=True):
        streams.setdefault(rank, []).append(line)
    order: list[tuple[int, _Block]] = []
    offsets = {rank: [i for i, r in enumerate(ranks) if r == rank] for rank in streams}
    for rank, stream in streams.items():
        i = 0
        while i < len(stream):
            if stream[i].strip() != _TRACEBACK:
                i += 1
                continue
            start, j = i, i + 1
            while j < len(stream) and (stream[j][:1].isspace() or not stream[j].strip()):
                j += 1
            if j < len(stream) and _EXCEPTION_LINE.match(stream[j].strip()):
                block = _Block(rank, stream[j].strip(), tuple(stream[start : j + 1]))
                order.append((offsets[rank][start], block))
            i = j + 1
    return [b for _, b in sorted(order, key=lambda item: item[0])]


# (pattern on the error line, kind, permanent): the first match classifies it.
_BAD_CALL = r"unexpected keyword argument|missing \d+ required positional argument"
_NO_FILE = r"^(FileNotFoundError|IsADirectoryError)\b|No such file or directory"
_KINDS = (
    (re.compile(r"^(ModuleNotFoundError|ImportError)\b"), "import", True),
    (re.compile(r"^(SyntaxError|IndentationError|TabError)\b"), "syntax", True),
    (re.compile(r"\.py: error: "), "arguments", True),
    (re.compile(r"is not in the [\w:]+ registry"), "config", True),
    (re.compile(r"'(ConfigDict|Config)' object has no attribute"), "config", True),
    (re.compile(_BAD_CALL), "config", True),
    (re.compile(_NO_FILE), "file", True),
    (re.compile(r"out of memory|OutOfMemoryError", re.IGNORECASE), "oom", False),
    (_SECONDARY, "distributed", False),
    (re.compile(r"exitcode\s*:\s*-\d+|Segmentation fault|Bus error"), "signal", False),
)


def _classified(line: str, traceback: str, rank: int | None) -> Failure:
    for pattern, kind, permanent in _KINDS:
        if pattern.search(line):
            return Failure(line, traceback, rank, permanent, kind)
    return Failure(line, traceback, rank, False, "")
