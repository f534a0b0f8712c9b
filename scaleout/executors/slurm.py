"""Slurm executor: one sbatch job per trial attempt, gang-scheduled over whole nodes.

The batch script (assets/trial.sbatch, rendered by `slurm_text.render_sbatch`)
runs one srun step that starts the trainer on every node. Jobs belong to Slurm, not to the
controller: they keep running when it dies and are found again by job id (the stored
handle) or by their deterministic name (`find`).

Polling asks Slurm once for all unfinished jobs (sacct when accounting is on, squeue
otherwise; squeue also shows finished jobs for MinJobAge seconds), no more often than
`poll_min_interval_s`, backing off after failures. A failed query makes the status UNKNOWN,
never an exception. Finished states are cached. The batch script's exit.json (files are the
protocol, written atomically) tells how a job ended after Slurm forgot it; the jobcomp file
is the next witness.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from scaleout.core.errors import StateError, UsageError
from scaleout.core.files import write_json_atomic
from scaleout.core.job import Capacity, JobHandle, JobState, JobStatus, TrialSpec
from scaleout.executors.base import QueryThrottle, poll_with_cache, prepare_job_dir
from scaleout.executors.local import free_port
from scaleout.executors.slurm_text import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    TIME_FORMAT_ENV,
    SbatchJob,
    SlurmRecord,
    SlurmSettings,
    exit_file_status,
    job_list,
    node_launch_script,
    parse_jobcomp,
    parse_keyvalues,
    parse_sacct,
    parse_squeue,
    record_times,
    render_sbatch,
    sbatch_template,
    status_of,
)

log = logging.getLogger(__name__)
COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
_UNUSABLE = ("down", "drain", "drained", "draining", "fail", "failing", "maint", "inval")


class SlurmExecutor:
    """Trials as sbatch jobs. The work dir must be on a filesystem the nodes share."""

    name = "slurm"

    def __init__(
        self,
        *,
        partition: str | None = None,
        account: str | None = None,
        time: str | None = None,
        cpus_per_task: int | None = None,
        extra: Sequence[str] = (),
        gpus_per_node: int | None = None,
        procs_per_node: int = 0,
        master_addr: str | None = None,
        container_runtime: str = "pyxis",
        accounting: str = "auto",
        poll_min_interval_s: float = 1.0,
        max_backoff_s: float = 60.0,
        command_timeout_s: float = 30.0,
        template: str | None = None,
    ) -> None:
        self.settings = SlurmSettings(
            partition=partition,
            account=account,
            time=time,
            cpus_per_task=cpus_per_task,
            extra=tuple(extra),
            gpus_per_node=gpus_per_node,
            procs_per_node=procs_per_node,
            master_addr=master_addr,
            container_runtime=container_runtime,
        )
        if accounting not in ("auto", "yes", "no"):
            raise UsageError(f"slurm executor: accounting {accounting!r}: use auto, yes or no")
        self.accounting: bool | None = {"auto": None, "yes": True, "no": False}[accounting]
        self.command_timeout_s = command_timeout_s
        # A site's own template (the executor option `template`: a path), else the package's.
        self.template_path = Path(template) if template else None
        self._final: dict[str, JobStatus] = {}
        self._records: dict[str, SlurmRecord] = {}
        self._throttle = QueryThrottle(poll_min_interval_s, max_backoff_s)
        self._jobcomp: str | None = None
        self._comp: dict[str, SlurmRecord] = {}  # what the jobcomp file said of a job
        self._capacity: Capacity | None = None

    # -- talking to Slurm ---------------------------------------------------------------------
    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Every Slurm command goes through here, and is logged (DEBUG) with its outcome."""
        env = {**os.environ, **TIME_FORMAT_ENV} if argv[0] in ("sacct", "squeue") else None
        began = time.monotonic()
        try:
            r = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=self.command_timeout_s,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("%s: failed after %.2fs: %s", shlex.join(argv), _since(began), exc)
            raise
        log.debug("%s: exit %d in %.2fs%s", shlex.join(argv), r.returncode, _since(began), _said(r))
        return r

    def _check_commands(self) -> None:
        missing = [c for c in COMMANDS if shutil.which(c) is None]
        if missing:
            raise StateError(
                f"slurm executor: {', '.join(missing)} not found on PATH",
                hint="run scaleout on a Slurm login node (Debian: apt-get install slurm-client)",
            )

    # -- capacity -------------------------------------------------------------------------------
    def capacity(self) -> Capacity:
        """Nodes and GPUs per node of the partition, after checking that Slurm answers and
        accepts the job flags (`sbatch --test-only`: partition, account, time, extras)."""
        if self._capacity is not None:
            return self._capacity
        self._check_commands()
        partition = self.settings.partition or self._default_partition()
        r = self._run("scontrol", "show", "partition", partition)
        if r.returncode != 0:
            if "not found" in (r.stdout + r.stderr):
                known = self._partitions()
                raise UsageError(
                    f"slurm executor: no partition {partition!r}"
                    + (f"; this cluster has {', '.join(known)}" if known else ""),
                    hint="give --slurm-partition NAME",
                )
            raise StateError(f"slurm executor: Slurm does not answer: {_first_line(r)}")
        max_nodes = parse_keyvalues(r.stdout).get("MaxNodes", "UNLIMITED")
        r = self._run("sinfo", "-h", "-N", "-p", partition, "-o", "%N|%G|%t")
        if r.returncode != 0:
            raise StateError(f"slurm executor: sinfo failed: {_first_line(r)}")
        nodes: dict[str, int] = {}
        for line in r.stdout.splitlines():
            name, gres, state = [*line.split("|"), "", "", ""][:3]
            if name and state.rstrip("*~#!%$@^-+").lower() not in _UNUSABLE:
                nodes[name] = _gpus_in_gres(gres)
        gpn = self.settings.gpus_per_node or (min(nodes.values()) if nodes else 0)
        if not nodes:
            raise StateError(f"slurm executor: partition {partition!r} has no usable nodes")
        if not gpn:
            raise UsageError(
                f"slurm executor: the nodes of partition {partition!r} declare no GPUs (gres)",
                hint="give the executor option gpus_per_node",
            )
        ppn = self.settings.procs_per_node
        if ppn and gpn % ppn:
            raise UsageError(
                f"--procs-per-node {ppn} does not divide the {gpn} GPUs of a node: "
                f"use a divisor of {gpn}"
            )
        self._test_only(partition)
        self._capacity = Capacity(
            nodes=len(nodes),
            gpus_per_node=gpn,
            slots=len(nodes),
            procs_per_node=ppn,
            # A job over the partition's MaxNodes is accepted and then pends forever
            # (Reason=PartitionNodeLimit); placement refuses such trials up front instead.
            max_nodes_per_job=int(max_nodes) if max_nodes.isdigit() else 0,
            where=f"Slurm partition {partition!r}",
        )
        return self._capacity

    def _default_partition(self) -> str:
        r = self._run("scontrol", "show", "partition", "-o")
        if r.returncode != 0:
            raise StateError(f"slurm executor: Slurm does not answer: {_first_line(r)}")
        for line in r.stdout.splitlines():
            kv = parse_keyvalues(line)
            if kv.get("Default") == "YES":
                return kv["PartitionName"]
        raise UsageError(
            "slurm executor: the cluster has no default partition",
            hint="give --slurm-partition NAME",
        )

    def _partitions(self) -> list[str]:
        r = self._run("scontrol", "show", "partition", "-o")
        return [parse_keyvalues(x).get("PartitionName", "?") for x in r.stdout.splitlines()]

    def _test_only(self, partition: str) -> None:
        s = self.settings
        flags = [f"--partition={partition}", "--nodes=1"]
        flags += [f"--account={s.account}"] if s.account else []
        flags += [f"--time={s.time}"] if s.time else []
        flags += [f"--cpus-per-task={s.cpus_per_task}"] if s.cpus_per_task else []
        r = self._run("sbatch", "--test-only", *flags, *s.extra, "--wrap", "true")
        if r.returncode != 0:
            text = " ".join((r.stderr + r.stdout).split())
            raise UsageError(
                f"slurm executor: Slurm refuses the job flags ({' '.join(flags + list(s.extra))})"
                f": {text[:400]}",
                hint="check --slurm-partition, --slurm-account, --slurm-time and --slurm-extra",
            )

    # -- the Executor protocol ------------------------------------------------------------------
    def submit(self, spec: TrialSpec, job_name: str) -> JobHandle:
        cap = self.capacity()
        work, job_dir = prepare_job_dir(spec, job_name)
        launcher = job_dir / "node_launch.sh"
        launcher.write_text(node_launch_script())
        launcher.chmod(0o755)  # run with bash by the job; executable for a rerun by hand
        log = work / f"{job_name}.log"
        env = dict(spec.env)
        threads = (self.settings.cpus_per_task or 0) // max(1, spec.layout.procs_per_node)
        env.setdefault("OMP_NUM_THREADS", str(max(1, threads)))
        lay = spec.layout
        job = SbatchJob(
            name=job_name,
            spec=spec,
            job_dir=str(job_dir),
            log=str(log),
            master_port=free_port(),
            gpus_per_node=min(cap.gpus_per_node, lay.virtual_gpus // lay.nnodes),
            env=env,
        )
        script = job_dir / "job.sbatch"
        template = self.template_path.read_text() if self.template_path else sbatch_template()
        script.write_text(render_sbatch(self.settings, job, template))
        r = self._run("sbatch", "--parsable", str(script))
        if r.returncode != 0:
            raise StateError(f"slurm executor: sbatch refused {job_name}: {_first_line(r)}")
        job_id = r.stdout.strip().split(";")[0]
        write_json_atomic(job_dir / "submitted.json", {"job_id": job_id, "time": time.time()})
        return self._handle(job_name, job_id, job_dir, log)

    def _handle(self, name: str, job_id: str, job_dir: Path, log: Path) -> JobHandle:
        return JobHandle(
            executor=self.name,
            name=name,
            job_id=job_id,
            data={"job_dir": str(job_dir)},
            log=str(log),
        )

    def poll(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        return poll_with_cache(handles, self._final, self._query, self._status)

    def _query(self, job_ids: list[str]) -> None:
        """Refresh self._records with one Slurm call (rate-limited, backing off on failure)."""
        if not self._throttle.due(all(j in self._records for j in job_ids)):
            return
        try:
            records = self._ask_slurm(job_ids)
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            self._throttle.failed(str(exc)[:300])
            return
        self._throttle.succeeded()
        self._records = records

    def _ask_slurm(self, job_ids: list[str]) -> dict[str, SlurmRecord]:
        if self.accounting is None:
            r = self._run("sacct", "-X", "-n", "-P", "-j", "1", "-o", "JobID")
            self.accounting = r.returncode == 0
        records: dict[str, SlurmRecord] = {}
        if self.accounting:
            r = self._run("sacct", "-X", "-n", "-P", "-j", job_list(job_ids), "-o", SACCT_FIELDS)
            if r.returncode != 0:
                raise RuntimeError(f"sacct failed: {_first_line(r)}")
            records = parse_sacct(r.stdout)
        missing = [j for j in job_ids if j not in records]
        if missing:  # no accounting, or not in the database yet
            r = self._run(
                "squeue", "-h", "--states=all", "-j", job_list(missing), "-o", SQUEUE_FORMAT
            )
            if r.returncode != 0 and "Invalid job id" not in r.stderr:
                raise RuntimeError(f"squeue failed: {_first_line(r)}")
            records.update(parse_squeue(r.stdout if r.returncode == 0 else ""))
        return records

    def _status(self, h: JobHandle) -> JobStatus:
        return self._with_times(self._state_of(h), h)

    def _with_times(self, status: JobStatus, h: JobHandle) -> JobStatus:
        """The job's own start and end: Slurm's (the allocation, what GPU time is billed on),
        else the batch script's started.json / exit.json."""
        if not (status.state == JobState.RUNNING or status.state.finished):
            return status
        record = self._records.get(h.job_id) or self._comp.get(h.job_id)
        start, end = record_times(record) if record else (None, None)
        job_dir = Path(h.data["job_dir"])
        start = start or status.started_at or _file_time(job_dir / "started.json")
        if status.state.finished:
            end = end or status.ended_at or _file_time(job_dir / "exit.json")
        return replace(status, started_at=start, ended_at=end)

    def _state_of(self, h: JobHandle) -> JobStatus:
        job_dir = Path(h.data["job_dir"])
        ours = (job_dir / "cancelled").exists()
        record = self._records.get(h.job_id)
        exit_file = job_dir / "exit.json"
        if exit_file.exists():
            status = exit_file_status(json.loads(exit_file.read_text()), ours)
            if status.state == JobState.FAILED and record and record.state not in ("FAILED",):
                # Slurm's word says why (TIMEOUT, PREEMPTED, NODE_FAIL) better than a code
                slurm = status_of(record, ours)
                if slurm.state.finished:
                    return JobStatus(JobState.FAILED, status.exit_code, slurm.reason)
            return status
        if record is not None:
            return status_of(record, ours)
        if not self._throttle.ok:
            return JobStatus(
                JobState.UNKNOWN, reason=f"slurm did not answer: {self._throttle.error}"
            )
        record = self._from_jobcomp(h.job_id)
        if record is not None:
            return status_of(record, ours)
        if ours:
            return JobStatus(JobState.CANCELLED, None, "cancelled by scaleout")
        if (job_dir / "started.json").exists():
            return JobStatus(
                JobState.FAILED,
                None,
                "the job ended without an exit status and Slurm no longer knows it "
                "(its batch script was killed, or its node went down)",
            )
        return JobStatus(JobState.NOT_FOUND, reason=f"Slurm does not know job {h.job_id}")

    def _from_jobcomp(self, job_id: str) -> SlurmRecord | None:
        if self._jobcomp is None:
            r = self._run("scontrol", "show", "config")
            conf = {}
            for line in r.stdout.splitlines():
                key, _, value = line.partition("=")
                conf[key.strip()] = value.strip()
            filetxt = conf.get("JobCompType") == "jobcomp/filetxt"
            self._jobcomp = conf.get("JobCompLoc", "") if filetxt else ""
        if not self._jobcomp:
            return None
        try:
            text = Path(self._jobcomp).read_text(errors="replace")
        except OSError:
            return None
        record = parse_jobcomp(text, [job_id]).get(job_id)
        if record is not None:
            self._comp[job_id] = record
        return record

    def cancel(self, handle: JobHandle) -> None:
        job_dir = Path(handle.data["job_dir"])
        if (job_dir / "exit.json").exists() or handle.name in self._final:
            return
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "cancelled").touch()
        if handle.job_id:
            self._run("scancel", handle.job_id)  # also fine on a job that just finished
        self._throttle.ask_now()

    def find(self, job_name: str, spec: TrialSpec) -> JobHandle | None:
        """The job of that name that runs in spec's work dir: from the job dir's files, else
        from Slurm by name (a controller that died between sbatch and storing the handle)."""
        work = Path(spec.work_dir)
        job_dir = work / ".jobs" / job_name
        log = work / f"{job_name}.log"
        for marker in ("submitted.json", "started.json"):
            path = job_dir / marker
            if path.exists():
                job_id = str(json.loads(path.read_text()).get("job_id", ""))
                if job_id:
                    return self._handle(job_name, job_id, job_dir, log)
        r = self._run("squeue", "-h", "--states=all", f"--name={job_name}", "-o", SQUEUE_FORMAT)
        if r.returncode != 0:
            raise StateError(f"slurm executor: squeue failed: {_first_line(r)}")
        chdir = os.path.realpath(spec.cwd or spec.work_dir)
        for rec in parse_squeue(r.stdout).values():
            if rec.name == job_name and os.path.realpath(rec.work_dir or chdir) == chdir:
                write_json_atomic(
                    job_dir / "submitted.json", {"job_id": rec.job_id, "time": time.time()}
                )
                return self._handle(job_name, rec.job_id, job_dir, log)
        return None


def _gpus_in_gres(gres: str) -> int:
    """GPUs in a sinfo %G field: "gpu:8", "gpu:a100:8(S:0-1)", "gpu:4,shard:8"."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def _file_time(path: Path) -> float | None:
    """The `time` a job file (started.json, exit.json) records, if it can be read."""
    try:
        value = json.loads(path.read_text()).get("time")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _since(began: float) -> float:
    return time.monotonic() - began


def _said(r: subprocess.CompletedProcess[str]) -> str:
    """What a command printed, in brief, for the debug log: its first line of each stream."""
    parts = []
    for name, text in (("stdout", r.stdout), ("stderr", r.stderr)):
        lines = (text or "").strip().splitlines()
        if lines:
            more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
            parts.append(f"{name}: {lines[0][:200]}{more}")
    return "; " + "; ".join(parts) if parts else ""


def _first_line(r: subprocess.CompletedProcess[str]) -> str:
    text = (r.stderr or r.stdout or f"exit code {r.returncode}").strip()
    return text.splitlines()[-1][:300] if text else f"exit code {r.returncode}"


def from_options(options: dict[str, Any], parallel: int | None) -> SlurmExecutor:
    """The registry's constructor (scaleout.executors.EXECUTORS): sweep.json options, where
    lists are JSON lists. `parallel` is the controller's business (it caps the trials)."""
    out = dict(options)
    if "extra" in out:
        out["extra"] = tuple(out["extra"])
    return SlurmExecutor(**out)
