"""The trainer-adapter seam: render a trial for a trainer, and read its metrics back.

Trainers are black-box commands (docs/architecture.md): an adapter never imports the
trainer's code; it writes the trainer's own config file or arguments, and it reads the
trainer's own logs. The types it exchanges live in `scaleout.core.job`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from scaleout.core.job import Layout, TrialMetrics, TrialParams, TrialSpec


@dataclass(frozen=True)
class Failure:
    """Why a trial's job failed, as its own output says.

    `line` is the error line of the first traceback (or error message) of the failing rank,
    e.g. "ModuleNotFoundError: No module named 'mmcv'"; `traceback` that traceback's last
    lines; `rank` the failing rank where the launcher named it. `permanent` marks a failure
    that a retry would meet identically (an import error, a bad config key, an argument the
    train script refuses): retrying it only spends GPU time.
    """

    line: str
    traceback: str = ""
    rank: int | None = None
    permanent: bool = False
    kind: str = ""  # "import", "config", "arguments", "syntax", "oom", ... ("" unknown)

    @property
    def summary(self) -> str:
        where = f"rank {self.rank}: " if self.rank is not None else ""
        return where + self.line


class Trainer(Protocol):
    """A trainer family. Six methods; the controller sees nothing else."""

    name: str

    def reference(self) -> dict[str, Any]:
        """Reference-recipe values read from the trainer's base config (may be partial).

        Keys follow `scaleout.core.rules.Reference` fields; `_sources` maps each key to where
        it came from ("config.py: optimizer.lr").
        """
        ...

    def render(
        self, params: TrialParams, layout: Layout, work_dir: Path, *, resume: bool, name: str
    ) -> TrialSpec:
        """The trial as the trainer's own config/arguments plus the per-node command."""
        ...

    def read_metrics(self, work_dir: Path) -> TrialMetrics:
        """Parse the trainer's logs in work_dir. Never raises on a half-written log."""
        ...

    def has_checkpoint(self, work_dir: Path) -> bool:
        """Whether a resume of this work_dir would continue from a checkpoint."""
        ...

    def failure(self, work_dir: Path, log: str) -> Failure | None:
        """The cause of a failed attempt, from its job log (`JobHandle.log`, a path) and the
        trainer's own logs in work_dir; None when they show none."""
        ...


def settable_keys(trainer: Any) -> frozenset[str] | None:
    """The `search.fixed` keys a trainer's adapter writes into each trial (the knobs and the
    batch are always written), or None where the adapter does not say (`fixed_keys`, a set
    or a method). The one place the session asks (scaleout.sweep.session.check_trainer_takes):
    a key no adapter applies is refused instead of silently ignored."""
    keys = getattr(trainer, "fixed_keys", None)
    if keys is None:
        return None
    return frozenset(keys() if callable(keys) else keys)


def knob_keys(trainer: Any) -> frozenset[str] | None:
    """The knobs a trainer's adapter writes into each trial (`knob_keys`, a set or a method),
    or None where it does not say: a co-scaled knob it cannot take is refused before a sweep
    (scaleout.sweep.session.check_trainer_takes)."""
    keys = getattr(trainer, "knob_keys", None)
    if keys is None:
        return None
    return frozenset(keys() if callable(keys) else keys)


def logs_metric(trainer: Any, name: str) -> bool | None:
    """Whether a trainer's logs hold the per-epoch metric `name` (True/False), or None where
    the adapter cannot know (`knows_metric`): an objective it never logs is refused."""
    check = getattr(trainer, "knows_metric", None)
    return None if check is None else check(name)
