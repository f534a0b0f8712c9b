"""The trainer-adapter seam: render a trial for a trainer, and read its metrics back.

Trainers are black-box commands (docs/architecture.md): an adapter never imports the
trainer's code; it writes the trainer's own config file or arguments, and it reads the
trainer's own logs. The types it exchanges live in `scaleout.core.job`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from scaleout.core.job import Layout, TrialMetrics, TrialParams, TrialSpec


class Trainer(Protocol):
    """A trainer family. Five methods; the controller sees nothing else."""

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
