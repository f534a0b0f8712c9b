"""Errors that the CLI turns into one clear message and an exit code, never a traceback."""

from __future__ import annotations


class ScaleoutError(Exception):
    """An error the user can act on. `exit_code` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(ScaleoutError):
    """Bad input: a flag, a file, a key or a value. Exit code 2, like argparse."""

    exit_code = 2


class SpaceError(UsageError):
    """A search-space file is missing or invalid. The message names the file and the key path."""

    def __init__(self, path: object, key: str | None, problem: str, *, hint: str | None = None):
        where = f"{path}" if not key else f"{path}: {key}"
        super().__init__(f"{where}: {problem}", hint=hint)
        self.path = path
        self.key = key
        self.problem = problem


class StateError(ScaleoutError):
    """The sweep's stored state refuses the request (locked, mismatched space, missing sweep)."""

    exit_code = 3
