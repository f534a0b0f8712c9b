"""Ray executor: each trial attempt is a Ray Job on a running Ray cluster.

Jobs API (`JobSubmissionClient`): a job belongs to the cluster, so it survives the
controller, and its submission id is the deterministic job name, so `find` re-attaches after
a crash. The job's entrypoint (`scaleout.executors.ray_entry`) reserves one placement-group
bundle per node and runs torchrun on each. The controller never becomes a Ray driver: it
talks to the dashboard over HTTP (`--ray-address`, RAY_ADDRESS: the address `ray job submit`
uses, e.g. http://head:8265). The trial's work dir must be on a filesystem the nodes share.

Polling lists the cluster's jobs in one call, rate-limited and backing off after failures; a
failed call makes the status UNKNOWN. Finished states are cached.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from scaleout.core.errors import StateError, UsageError
from scaleout.core.files import write_json_atomic
from scaleout.core.job import Capacity, JobHandle, JobState, JobStatus, TrialSpec
from scaleout.executors.base import QueryThrottle, poll_with_cache, prepare_job_dir

log = logging.getLogger(__name__)
_STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.CANCELLED,
}


def job_status(
    status: str,
    exit_code: int | None,
    message: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> JobStatus:
    """A Ray job's status as a JobStatus (message: its first line, which says why).
    `start_ms`/`end_ms` are the job info's start_time/end_time (Unix milliseconds); Ray sets
    start_time when the job is submitted, so a pending job has no start yet."""
    state = _STATES.get(status.upper(), JobState.UNKNOWN)
    why = (message or "").strip().splitlines()[0][:300] if message else ""
    if state == JobState.CANCELLED:
        why = "ray: the job was stopped"
    ran = state == JobState.RUNNING or state.finished
    started = start_ms / 1000 if start_ms and ran else None
    ended = end_ms / 1000 if end_ms and state.finished else None
    return JobStatus(state, exit_code, why, started, ended)


class RayExecutor:
    """Trials as Ray Jobs with a placement group each."""

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        procs_per_node: int = 0,
        gpus_per_node: int | None = None,
        cpus_per_node: float = 1,
        placement_timeout_s: float = 600.0,
        python: str | None = None,
        container_runtime: str = "docker",
        poll_min_interval_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        address = address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise UsageError(
                "--executor ray needs the cluster's address",
                hint="give --ray-address http://HEAD:8265 (the dashboard) or set RAY_ADDRESS",
            )
        self.address = address if "://" in address else f"http://{address}"
        try:
            from ray.job_submission import JobSubmissionClient  # noqa: F401
        except ImportError:
            raise StateError(
                "the ray executor needs Ray, which is not installed",
                hint="pip install 'scaleout[ray]'",
            ) from None
        self.procs_per_node = procs_per_node
        self.gpus_per_node = gpus_per_node
        self.cpus_per_node = cpus_per_node
        self.placement_timeout_s = placement_timeout_s
        self.python = python or sys.executable
        if container_runtime == "pyxis":
            raise UsageError(
                "--container-runtime pyxis is Slurm's; on Ray use docker, apptainer or enroot"
            )
        self.container_runtime = container_runtime
        self._client_obj: Any = None
        self._capacity: Capacity | None = None
        self._final: dict[str, JobStatus] = {}
        self._jobs: dict[str, Any] = {}
        self._throttle = QueryThrottle(poll_min_interval_s, max_backoff_s)

    @contextlib.contextmanager
    def _pinned(self) -> Iterator[None]:
        """Ray's clients let RAY_API_SERVER_ADDRESS / RAY_ADDRESS override the address they
        are given; the sweep's stored address must win, so it is pinned while they resolve."""
        key = "RAY_API_SERVER_ADDRESS"
        before = os.environ.get(key)
        os.environ[key] = self.address
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before

    @property
    def _client(self) -> Any:
        if self._client_obj is None:
            from ray.job_submission import JobSubmissionClient

            try:
                with self._pinned():
                    self._client_obj = _logged(JobSubmissionClient, self.address)
            except Exception as exc:
                raise StateError(
                    f"cannot reach the Ray cluster at {self.address}: {_short(exc)}",
                    hint="start it (ray start --head --include-dashboard=true) or check "
                    "--ray-address / RAY_ADDRESS (the dashboard address, port 8265)",
                ) from None
        return self._client_obj

    # -- capacity -------------------------------------------------------------------------------
    def capacity(self) -> Capacity:
        """Alive nodes with GPUs and GPUs per node, from the cluster's own node table."""
        if self._capacity is not None:
            return self._capacity
        self._client  # noqa: B018 - connects, or says the cluster does not answer
        from ray.util.state import list_nodes

        try:
            with self._pinned():
                nodes = _logged(
                    list_nodes, address=self.address, timeout=30, raise_on_missing_output=False
                )
        except Exception as exc:
            raise StateError(f"cannot list the nodes of {self.address}: {_short(exc)}") from None
        gpus = [int(n.resources_total.get("GPU", 0)) for n in nodes if n.state == "ALIVE"]
        gpus = [g for g in gpus if g > 0]
        gpn = self.gpus_per_node or (min(gpus) if gpus else 0)
        if not gpn:
            raise UsageError(
                f"the Ray cluster at {self.address} has no node with GPUs ({len(nodes)} node(s))",
                hint="start nodes with --num-gpus, or give the executor option gpus_per_node",
            )
        ppn = self.procs_per_node
        if ppn and gpn % ppn:
            raise UsageError(
                f"--procs-per-node {ppn} does not divide the {gpn} GPUs of a node: "
                f"use a divisor of {gpn}"
            )
        usable = sum(1 for g in gpus if g >= gpn)
        self._capacity = Capacity(nodes=usable, gpus_per_node=gpn, slots=usable, procs_per_node=ppn)
        return self._capacity

    # -- the Executor protocol ------------------------------------------------------------------
    def submit(self, spec: TrialSpec, job_name: str) -> JobHandle:
        if spec.launch == "task":
            # ray_entry runs the command once per node; a per-task trainer (mmcv's
            # `--launcher slurm`) would start one process where it expects one per GPU.
            raise UsageError(
                f"the ray executor runs the trainer once per node: trial {spec.name} is "
                "launched per task (the trainer option launcher='slurm', which needs srun)",
                hint="use launcher='pytorch' (the default) on Ray, or --executor slurm",
            )
        cap = self.capacity()
        work, job_dir = prepare_job_dir(spec, job_name)
        lay = spec.layout
        logs = [str(work / f"{job_name}.log")]
        logs += [str(work / f"{job_name}.node{r}.log") for r in range(1, lay.nnodes)]
        gpus = min(cap.gpus_per_node, lay.virtual_gpus // lay.nnodes)
        job = {
            "name": job_name,
            "argv": list(spec.argv),
            "env": dict(spec.env),
            "cwd": spec.cwd or str(work),
            "nnodes": lay.nnodes,
            "bundle": {"GPU": gpus, "CPU": self.cpus_per_node},
            "logs": logs,
            "placement_timeout_s": self.placement_timeout_s,
        }
        if spec.container:
            from scaleout.executors.container import wrap

            job["argv"] = wrap(
                spec.argv,
                spec.container,
                runtime=self.container_runtime,
                mounts=sorted({str(work), *([spec.cwd] if spec.cwd else [])}),
                cwd=spec.cwd or str(work),
                env=spec.env,
                gpus=lay.use_gpu,
            )
        job_file = job_dir / "job.json"
        write_json_atomic(job_file, job)
        entrypoint = " ".join(
            shlex.quote(a)
            for a in (self.python, "-m", "scaleout.executors.ray_entry", str(job_file))
        )
        # every node's lines in the job log, not "[repeated 7x across cluster]"; and the
        # entrypoint's placement-group calls in it when this controller logs at debug
        env_vars = {"RAY_DEDUP_LOGS": "0"}
        if log.isEnabledFor(logging.DEBUG):
            env_vars["SCALEOUT_LOG_LEVEL"] = "debug"
        try:
            _logged(
                self._client.submit_job,
                entrypoint=entrypoint,
                submission_id=job_name,
                metadata={"scaleout_work_dir": str(work), "scaleout_job": job_name},
                entrypoint_num_cpus=0,
                runtime_env={"env_vars": env_vars},
            )
        except Exception as exc:
            raise StateError(f"ray: could not submit {job_name}: {_short(exc)}") from None
        return self._handle(job_name, work)

    def _handle(self, name: str, work: Path) -> JobHandle:
        return JobHandle(
            executor=self.name,
            name=name,
            job_id=name,
            data={"job_dir": str(work / ".jobs" / name)},
            log=str(work / f"{name}.log"),
        )

    def poll(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        return poll_with_cache(handles, self._final, self._query, self._status)

    def _status(self, h: JobHandle) -> JobStatus:
        info = self._jobs.get(h.job_id)
        if info is not None:
            return job_status(
                str(getattr(info.status, "value", info.status)),
                getattr(info, "driver_exit_code", None),
                info.message or "",
                getattr(info, "start_time", None),
                getattr(info, "end_time", None),
            )
        if not self._throttle.ok:
            return JobStatus(JobState.UNKNOWN, reason=f"ray: {self._throttle.error}")
        return JobStatus(JobState.NOT_FOUND, reason=f"ray has no job {h.job_id}")

    def _query(self, job_ids: list[str]) -> None:
        if not self._throttle.due(set(job_ids) <= set(self._jobs)):
            return
        try:
            jobs = _logged(self._client.list_jobs)
        except Exception as exc:
            self._throttle.failed(f"cannot list the jobs of {self.address}: {_short(exc)}")
            return
        self._throttle.succeeded()
        self._jobs = {j.submission_id: j for j in jobs if j.submission_id}

    def cancel(self, handle: JobHandle) -> None:
        if handle.name in self._final:
            return
        try:
            _logged(self._client.stop_job, handle.job_id)  # False when it already finished
        except Exception:  # no such job, or the cluster is gone: nothing to stop
            return
        self._throttle.ask_now()

    def find(self, job_name: str, spec: TrialSpec) -> JobHandle | None:
        try:
            info = _logged(self._client.get_job_info, job_name)
        except RuntimeError as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                return None
            raise StateError(f"ray: cannot look up job {job_name}: {_short(exc)}") from None
        work = Path(spec.work_dir)
        theirs = (info.metadata or {}).get("scaleout_work_dir")
        if theirs and os.path.realpath(theirs) != os.path.realpath(work):
            raise UsageError(
                f"the Ray cluster already has a job named {job_name} from another sweep "
                f"(work dir {theirs})",
                hint="give this sweep another --name",
            )
        return self._handle(job_name, work)


def from_options(options: dict[str, Any], parallel: int | None) -> RayExecutor:
    """The registry's constructor (scaleout.executors.EXECUTORS): sweep.json options.
    `parallel` is the controller's business (it caps the trials)."""
    return RayExecutor(**options)


def _logged(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """call(*args, **kwargs), logged at DEBUG with its arguments and outcome: every call the
    controller makes to Ray (Jobs and State APIs) goes through here."""
    if not log.isEnabledFor(logging.DEBUG):
        return call(*args, **kwargs)
    what = getattr(call, "__qualname__", repr(call))
    shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    began = time.monotonic()
    try:
        out = call(*args, **kwargs)
    except Exception as exc:
        log.debug("ray %s(%s): failed in %.2fs: %s", what, shown, _since(began), _short(exc))
        raise
    log.debug("ray %s(%s): %s in %.2fs", what, shown, _brief(out), _since(began))
    return out


def _since(began: float) -> float:
    return time.monotonic() - began


def _brief(out: Any) -> str:
    if isinstance(out, list):
        return f"{len(out)} item(s)"
    status = getattr(out, "status", None)
    if status is not None:
        return f"status {getattr(status, 'value', status)}"
    return repr(out)[:200]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"
