"""Executors: where trials run, by name (`--executor`), behind `base.Executor`.

One registry: EXECUTORS maps a name to the module that builds it, through that module's
`from_options(options, parallel)`. Adding an executor is one module and one line here; the
names feed `--executor`'s choices and the error messages. Nothing here imports an executor
module: `scaleout plan` and the local job wrapper (`python -m scaleout.executors.localrun`
imports this package first) stay light.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scaleout.core.errors import UsageError

if TYPE_CHECKING:
    from scaleout.executors.base import Executor

EXECUTORS: dict[str, str] = {
    "local": "scaleout.executors.local",
    "slurm": "scaleout.executors.slurm",
    "ray": "scaleout.executors.ray",
}
EXECUTOR_NAMES: tuple[str, ...] = tuple(EXECUTORS)


def make_executor(name: str, options: Mapping[str, Any], parallel: int | None) -> Executor:
    """The executor a sweep names, from the options stored in its sweep.json (`parallel`:
    the --parallel given, or None). Raises UsageError for a name not in EXECUTORS."""
    module = EXECUTORS.get(name)
    if module is None:
        raise UsageError(
            f"--executor: unknown executor {name!r}; known: {', '.join(EXECUTOR_NAMES)}"
        )
    return importlib.import_module(module).from_options(dict(options), parallel)


def check_executor(name: str, options: Mapping[str, Any], gpus: int, parallel: int | None) -> None:
    """Refuse a new sweep whose cluster is unreachable, refuses its flags, or cannot hold one
    trial of `gpus` GPUs, before anything is written (`capacity()` asks the cluster)."""
    from scaleout.core.placement import layout_for

    layout_for(gpus, make_executor(name, options, parallel).capacity(), parallel or 0)
