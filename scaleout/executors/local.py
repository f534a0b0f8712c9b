"""Local executor: each trial attempt is a detached process group on this machine.

GPU slots are handed out through CUDA_VISIBLE_DEVICES. Without enough GPUs a trial runs with
virtual GPUs: the trainer keeps the trial's global batch on fewer real processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from scaleout.core.errors import UsageError
from scaleout.core.files import write_json_atomic
from scaleout.core.job import Capacity, JobHandle, JobState, JobStatus, TrialSpec
from scaleout.executors.base import prepare_job_dir
from scaleout.executors.localrun import group_members, process_start_ticks


def from_options(options: dict[str, Any], parallel: int | None) -> LocalExecutor:
    """The registry's constructor (scaleout.executors.EXECUTORS): sweep.json options."""
    return LocalExecutor(parallel=parallel, **options)


def detect_gpus() -> int:
    """GPUs visible to this machine, without importing torch (`nvidia-smi -L`)."""
    override = os.environ.get("SCALEOUT_LOCAL_GPUS")
    if override is not None:
        return int(override)
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill_node_placeholders(argv: Sequence[str], node_rank: int, addr: str, port: int) -> list[str]:
    values = {"{node_rank}": str(node_rank), "{master_addr}": addr, "{master_port}": str(port)}
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return out


def refuse_unsupported(spec: TrialSpec) -> None:
    """Refuse what this executor cannot honour instead of running something else silently."""
    if spec.layout.nnodes != 1:
        raise UsageError(
            f"the local executor runs one node; {spec.name} wants "
            f"{spec.layout.nnodes} (use --executor slurm or ray)"
        )
    if spec.container:
        # A container runs under its runtime's daemon, outside the job's process group: the
        # wrapper's files and a cancel (killpg) would no longer cover the trainer.
        raise UsageError(
            f"the local executor does not run containers: trial {spec.name} asks for image "
            f"{spec.container!r} (the trainer option `container`)",
            hint="use --executor slurm (pyxis; --container-runtime enroot or apptainer) or "
            "--executor ray, or drop `container` from the trainer's options",
        )
    if spec.launch == "task":
        # One copy per GPU, each finding its rank from srun (mmcv's `--launcher slurm` reads
        # SLURM_PROCID and runs scontrol): nothing on one machine stands in for srun.
        raise UsageError(
            f"the local executor does not start one process per GPU: trial {spec.name} is "
            "launched per task (the trainer option launcher='slurm', which needs srun)",
            hint="use --executor slurm, or launcher='pytorch' (the default: torch's launcher "
            "starts the processes)",
        )


class LocalExecutor:
    """Runs jobs as detached process groups; files in each job's directory are the record."""

    name = "local"

    def __init__(
        self, *, parallel: int | None = None, gpus: int | None = None, cancel_grace_s: float = 10.0
    ) -> None:
        self.gpus = detect_gpus() if gpus is None else gpus
        cpus = os.cpu_count() or 1
        default = max(1, self.gpus) if self.gpus else max(1, min(2, cpus))
        self.parallel = parallel or default
        self.cancel_grace_s = cancel_grace_s
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._in_use: dict[str, list[int]] = {}
        self._started: dict[str, float] = {}  # job name -> started.json's time

    # -- capacity ---------------------------------------------------------------------------
    def capacity(self) -> Capacity:
        return Capacity(nodes=1, gpus_per_node=self.gpus, slots=self.parallel, virtual=True)

    def threads_per_job(self, procs: int) -> int:
        return max(1, (os.cpu_count() or 1) // max(1, self.parallel * procs))

    def _take_gpus(self, name: str, count: int) -> list[int]:
        busy = {g for gs in self._in_use.values() for g in gs}
        free = [g for g in range(self.gpus) if g not in busy]
        if len(free) < count:
            raise UsageError(f"local executor: {count} GPUs wanted, {len(free)} free")
        self._in_use[name] = free[:count]
        return free[:count]

    def _hold_gpus(self, name: str, job_dir: Path) -> list[int]:
        """Count a re-attached job's GPUs as in use until it ends. A restarted controller's
        executor starts with nothing in use; without this it hands a running job's GPUs
        to the next trial. The job record (job.json) says what the job was given."""
        gpus = _job_gpus(job_dir)
        if gpus:
            self._in_use.setdefault(name, gpus)
        return gpus

    # -- the Executor protocol --------------------------------------------------------------
    def submit(self, spec: TrialSpec, job_name: str) -> JobHandle:
        refuse_unsupported(spec)  # before anything is written, like a lack of free GPUs
        env = dict(spec.env)
        gpus: list[int] = []
        if spec.layout.use_gpu:
            gpus = self._take_gpus(job_name, spec.layout.procs_per_node)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        else:
            env.setdefault("CUDA_VISIBLE_DEVICES", "")
        try:
            return self._start(spec, job_name, env, gpus)
        except BaseException:
            self._in_use.pop(job_name, None)  # no job: its GPUs are free again
            raise

    def _start(
        self, spec: TrialSpec, job_name: str, env: dict[str, str], gpus: list[int]
    ) -> JobHandle:
        work, job_dir = prepare_job_dir(spec, job_name)
        threads = str(self.threads_per_job(spec.layout.procs_per_node))
        env.setdefault("OMP_NUM_THREADS", threads)
        env.setdefault("MKL_NUM_THREADS", threads)
        argv = fill_node_placeholders(spec.argv, 0, "127.0.0.1", free_port())
        log = work / f"{job_name}.log"
        cwd = spec.cwd or str(work)
        write_json_atomic(
            job_dir / "job.json", {"argv": argv, "env": env, "cwd": cwd, "log": str(log)}
        )
        child = subprocess.Popen(
            [sys.executable, "-m", "scaleout.executors.localrun", str(job_dir)],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._children[job_name] = child
        return JobHandle(
            executor=self.name,
            name=job_name,
            job_id=str(child.pid),
            data={
                "job_dir": str(job_dir),
                "pid": child.pid,
                "host": socket.gethostname(),
                "gpus": gpus,
                "start_ticks": process_start_ticks(child.pid),
            },
            log=str(log),
        )

    def poll(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        for child in self._children.values():
            child.poll()  # reap our own children so they do not linger as zombies
        return {h.name: self._status(h) for h in handles}

    def _status(self, h: JobHandle) -> JobStatus:
        status = self._state_of(h)
        if status.state == JobState.RUNNING or status.state.finished:
            # The wrapper's own clock: started.json (before the trainer starts) and exit.json
            # (after it ended), not the controller's submit time.
            status = replace(status, started_at=self._started_at(h))
        return status

    def _started_at(self, h: JobHandle) -> float | None:
        if h.name not in self._started:
            path = Path(h.data["job_dir"]) / "started.json"
            with contextlib.suppress(OSError, ValueError):
                self._started[h.name] = float(json.loads(path.read_text())["time"])
        return self._started.get(h.name)

    def _state_of(self, h: JobHandle) -> JobStatus:
        if h.data.get("host") not in (None, socket.gethostname()):
            return JobStatus(JobState.UNKNOWN, reason=f"job runs on host {h.data['host']}")
        job_dir = Path(h.data["job_dir"])
        exit_file = job_dir / "exit.json"
        if exit_file.exists():
            self._in_use.pop(h.name, None)
            info = json.loads(exit_file.read_text())
            rc = info["returncode"]
            end = info.get("time")
            if (job_dir / "cancelled").exists():
                return JobStatus(JobState.CANCELLED, rc, "cancelled by scaleout", ended_at=end)
            if rc == 0:
                return JobStatus(JobState.SUCCEEDED, 0, ended_at=end)
            why = f"signal {info['signal']}" if info.get("signal") else f"exit code {rc}"
            if rc < 0:
                why = f"killed by {signal.Signals(-rc).name}"
            return JobStatus(JobState.FAILED, rc, why, ended_at=end)
        pid = int(h.data["pid"])
        ticks = process_start_ticks(pid)
        if ticks is not None and ticks == h.data.get("start_ticks", ticks):
            self._hold_gpus(h.name, job_dir)  # a stored handle re-attached after a restart
            return JobStatus(JobState.RUNNING)
        if not (job_dir / "job.json").exists():
            return JobStatus(JobState.NOT_FOUND, reason="no record of the job")
        left = self._orphans(h)
        if left:
            # The wrapper died, its trainer did not: a retry in the same work dir (and on the
            # same GPUs) would run beside it. The job is dead only once its group is.
            self._end_group(h)
            self._in_use.pop(h.name, None)
            return JobStatus(
                JobState.FAILED,
                None,
                "the job's wrapper died without an exit status; its processes "
                f"{', '.join(map(str, left))} were still running and have been stopped",
            )
        self._in_use.pop(h.name, None)
        return JobStatus(
            JobState.FAILED,
            None,
            "the job's process died without an exit status (killed, or the machine restarted)",
        )

    def _orphans(self, h: JobHandle) -> list[int]:
        """The job's processes left after its wrapper (the group's leader) died. None when
        the wrapper's pid now leads another group: a recycled pid is not the job."""
        pid = int(h.data["pid"])
        if process_start_ticks(pid) is not None:
            return []  # alive as the wrapper (checked by the caller) or recycled: not orphans
        return group_members(pid, h.data.get("start_ticks"))

    def _end_group(self, h: JobHandle) -> None:
        """SIGTERM the job's process group, then SIGKILL what is left after the grace."""
        pid = int(h.data["pid"])
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cancel_grace_s
        while time.monotonic() < deadline:
            self.poll([])
            if not group_members(pid, h.data.get("start_ticks")):
                return
            time.sleep(0.1)
        _signal_group(pid, signal.SIGKILL)

    def cancel(self, handle: JobHandle) -> None:
        job_dir = Path(handle.data["job_dir"])
        if (job_dir / "exit.json").exists():
            return
        (job_dir / "cancelled").touch()
        pid = int(handle.data["pid"])
        alive = process_start_ticks(pid) == handle.data.get("start_ticks")
        if alive or self._orphans(handle):  # the wrapper, or what it left running
            self._end_group(handle)
        self._in_use.pop(handle.name, None)

    def find(self, job_name: str, spec: TrialSpec) -> JobHandle | None:
        job_dir = Path(spec.work_dir) / ".jobs" / job_name
        started = job_dir / "started.json"
        if not started.exists():
            return None
        info = json.loads(started.read_text())
        running = not (job_dir / "exit.json").exists()
        gpus = self._hold_gpus(job_name, job_dir) if running else _job_gpus(job_dir)
        return JobHandle(
            executor=self.name,
            name=job_name,
            job_id=str(info["pid"]),
            data={
                "job_dir": str(job_dir),
                "pid": info["pid"],
                "host": info["host"],
                "start_ticks": info["start_ticks"],
                "gpus": gpus,
            },
            log=str(Path(spec.work_dir) / f"{job_name}.log"),
        )


def _job_gpus(job_dir: Path) -> list[int]:
    """The GPUs a job was given: CUDA_VISIBLE_DEVICES in its job.json ([] if none)."""
    try:
        env = json.loads((job_dir / "job.json").read_text()).get("env", {})
    except (OSError, ValueError):
        return []
    ids = str(env.get("CUDA_VISIBLE_DEVICES", "")).split(",")
    return [int(i) for i in ids if i.strip().isdigit()]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
