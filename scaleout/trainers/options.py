"""Trainer options that every adapter takes the same way (the space file's `trainer.options`)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from scaleout.core.errors import UsageError


def arg_list(value: Sequence[str] | str | None, key: str = "extra_args") -> list[str]:
    """`trainer.options.extra_args`: a list of arguments, or one string split as a shell does."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, (bytes, dict)) or not all(
        isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value
    ):
        raise UsageError(f"trainer.options.{key}: {value!r}: give a list of strings (or one)")
    return [str(a) for a in value]


def clean_float(x: float) -> float:
    """A product or quotient without float noise (2e-7 / 2e-4 is 0.001, not 0.000999...)."""
    return float(f"{x:.12g}")
