"""The seam types: what flows between the plan, the controller, the trainers and the executors.

Plain frozen data with no behaviour beyond derived properties, so every layer can import it
and a handle or a spec can be stored on the study and rebuilt on resume.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any

# Placeholders that an executor fills in per node. A trainer's argv may contain them.
NODE_PLACEHOLDERS = ("{node_rank}", "{master_addr}", "{master_port}")


@dataclass(frozen=True)
class TrialParams:
    """The values one trial runs with, in the units the scaling rules use.

    `values` maps each knob (lr, warmup_iters, min_lr_ratio, ...) and each pinned setting of
    `search.fixed` (seed, epochs, warmup_ratio, ...) to its value; trainers map the names they
    know to their own config keys. `gpus` is the data-parallel GPU count the trial stands for
    (it may be virtual on a machine with fewer GPUs); global batch = gpus x samples_per_gpu.
    """

    values: dict[str, Any]
    gpus: int
    samples_per_gpu: int

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    @property
    def global_batch(self) -> int:
        return self.gpus * self.samples_per_gpu

    def to_dict(self) -> dict[str, Any]:
        """The flat record stored on the trial (and shown in MLflow): values and the batch."""
        return {
            **self.values,
            "gpus": self.gpus,
            "samples_per_gpu": self.samples_per_gpu,
            "global_batch": self.global_batch,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialParams:
        values = {
            k: v for k, v in d.items() if k not in ("gpus", "samples_per_gpu", "global_batch")
        }
        return cls(values, gpus=int(d["gpus"]), samples_per_gpu=int(d["samples_per_gpu"]))

    @classmethod
    def of(cls, gpus: int, samples_per_gpu: int, **values: Any) -> TrialParams:
        """`TrialParams.of(160, 1, lr=1e-3, warmup_iters=600, min_lr_ratio=1e-4)`."""
        return cls(values, gpus=gpus, samples_per_gpu=samples_per_gpu)


@dataclass(frozen=True)
class Layout:
    """How the trial's GPUs are placed: nnodes x gpus_per_node real processes.

    `virtual_gpus` is the GPU count the trial stands for. When the executor has fewer
    real devices, each real process does the work of virtual_gpus / world_size GPUs, so
    the optimisation step is the same synchronous data-parallel step (same global batch).
    """

    nnodes: int
    procs_per_node: int
    virtual_gpus: int
    use_gpu: bool = False

    @property
    def world_size(self) -> int:
        return self.nnodes * self.procs_per_node


@dataclass(frozen=True)
class TrialSpec:
    """Everything an executor needs to run one attempt of one trial.

    `argv` is the per-node command; it may contain NODE_PLACEHOLDERS that the executor
    fills for each node. `files` are written (relative to work_dir) before launch.
    `cwd` is the directory the command runs in (None: the executor's choice, e.g. work_dir);
    trainers such as BEVFormer resolve config, plugin and data paths against their repo.
    `launch` is "node" (argv runs once per node and starts its own processes, e.g. torchrun)
    or "task" (argv is one training process; the executor's process manager, e.g. srun,
    starts procs_per_node copies per node: mmcv's `--launcher slurm`).
    """

    name: str
    work_dir: str
    argv: tuple[str, ...]
    layout: Layout
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    resume: bool = False
    container: str | None = None
    cwd: str | None = None
    launch: str = "node"


@dataclass(frozen=True)
class GradStat:
    """The two squared gradient norms of one iteration a noise-scale estimate is built from
    (docs/evidence.md): |G_small|^2 of one data-parallel rank's gradient before the all-reduce
    (batch `b_small`) and |G_big|^2 of the all-reduced one (batch `b_big`), both before
    clipping. `iter` is the iteration count after the step (1-based)."""

    iter: int
    sq_small: float
    sq_big: float
    b_small: float
    b_big: float


@dataclass(frozen=True)
class TrialMetrics:
    """What a trainer's logs say so far. Safe to compute again and again while it runs.

    `epochs` maps an epoch number (1-based) to that epoch's validation metrics under
    canonical names ("NDS", "mAP", "mATE", ...) plus any raw keys; `train` holds the
    latest training scalars ("loss", "lr", "iter", "epoch"). `sources` lists the log files
    that were read, so a missing metric can be reported against them. `grad_stats` holds the
    gradient statistics the logs carry, by iteration (none unless the trainer logs them).
    """

    epochs: dict[int, dict[str, float]] = field(default_factory=dict)
    train: dict[str, float] = field(default_factory=dict)
    iters_done: int = 0
    iter_time_s: float | None = None
    samples_per_s: float | None = None
    sources: tuple[str, ...] = ()
    grad_stats: tuple[GradStat, ...] = ()

    def latest(self, key: str) -> float | None:
        for epoch in sorted(self.epochs, reverse=True):
            value = self.epochs[epoch].get(key)
            if value is not None and not math.isnan(value):
                return value
        return None

    @property
    def last_epoch(self) -> int:
        return max(self.epochs, default=0)


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The executor has no record of the job (never started, or gone without a trace).
    NOT_FOUND = "not_found"
    # The executor could not be asked this time (a failed squeue); ask again later.
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @property
    def active(self) -> bool:
        return self in (JobState.PENDING, JobState.RUNNING, JobState.UNKNOWN)


@dataclass(frozen=True)
class JobHandle:
    """What the trial stores to find its job again: executor name, job name and id, the job's
    combined log (`log`, a path; "" where the executor keeps none), executor-specific extras."""

    executor: str
    name: str
    job_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    log: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "executor": self.executor,
                "name": self.name,
                "job_id": self.job_id,
                "data": self.data,
                "log": self.log,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> JobHandle:
        d = json.loads(text)
        data = dict(d.get("data", {}))
        # Handles stored before `log` was a field kept it in data.
        log = d.get("log") or data.pop("log", "")
        return cls(d["executor"], d["name"], d.get("job_id", ""), data, log)


@dataclass(frozen=True)
class JobStatus:
    """What an executor says of a job. `started_at`/`ended_at` are the job's own start and end
    (Unix seconds, as the executor measured them: the wrapper's files, sacct, Ray's job info),
    None where it did not say; GPU time is priced from them, never from submission."""

    state: JobState
    exit_code: int | None = None
    reason: str = ""
    started_at: float | None = None
    ended_at: float | None = None


@dataclass(frozen=True)
class Capacity:
    """What the executor can give at once. `virtual` means trials may stand for more GPUs
    than exist (the local executor on a machine without enough GPUs). `procs_per_node` is
    how many processes a node runs (0: one per GPU); fewer processes than GPUs run the
    trial with virtual GPUs on whole nodes (clusters with fake GPUs, as in the tests).
    `max_nodes_per_job` is the scheduler's cap on one job's nodes (Slurm's partition MaxNodes;
    0: none), `where` names the partition or cluster in messages."""

    nodes: int
    gpus_per_node: int
    slots: int
    virtual: bool = False
    procs_per_node: int = 0
    max_nodes_per_job: int = 0
    where: str = ""

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node
