"""Slurm as text: the sbatch script one trial attempt runs, and what Slurm's commands print.

Pure functions only (no subprocess, no clock; times in Slurm's default format are read in
local time, as Slurm prints them), so a table-driven test pins every spelling:
`render_sbatch` fills the package's assets/trial.sbatch with sorted `#SBATCH` lines (the same
inputs always give the same text), and the parsers turn squeue, sacct, `scontrol show`
and jobcomp lines into `SlurmRecord`s and `JobStatus`es.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

from scaleout.core.errors import UsageError
from scaleout.core.job import JobState, JobStatus, TrialSpec
from scaleout.executors import container as containers


def sbatch_template() -> str:
    """The batch script template (scaleout/executors/assets/trial.sbatch). Package data, read
    through importlib.resources, so a wheel install finds it as well as a checkout does."""
    return _asset("trial.sbatch")


def node_launch_script() -> str:
    """The per-node launcher (scaleout/executors/assets/node_launch.sh) that each job dir
    gets a copy of: it fills a node's placeholders in the trainer's argv and execs it."""
    return _asset("node_launch.sh")


def _asset(name: str) -> str:
    return (resources.files("scaleout.executors") / "assets" / name).read_text()


# The address of the first node of the allocation: what torchrun's rendezvous needs.
FIRST_NODE = '"$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"'

# Slurm job states (squeue %T, sacct State, scontrol JobState) as scaleout sees them.
_ACTIVE = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "SPECIAL_EXIT": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
}
# Why a job ended without finishing: the controller retries these from the last checkpoint.
_LOST = {
    "TIMEOUT": "hit its time limit",
    "PREEMPTED": "was preempted",
    "NODE_FAIL": "lost a node",
    "BOOT_FAIL": "failed to boot its nodes",
    "DEADLINE": "missed its deadline",
    "OUT_OF_MEMORY": "ran out of memory",
    "REVOKED": "was revoked",
}


@dataclass(frozen=True)
class SlurmSettings:
    """The executor's settings (sweep.json `executor_options`), as sbatch/srun flags.

    `procs_per_node` processes run on each node (0: one per GPU); `master_addr` overrides
    the first node's host name (test clusters whose node names do not resolve);
    `container_runtime` picks how `TrialSpec.container` is run (pyxis: srun flags).
    """

    partition: str | None = None
    account: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    extra: tuple[str, ...] = ()
    gpus_per_node: int | None = None
    procs_per_node: int = 0
    master_addr: str | None = None
    container_runtime: str = "pyxis"

    def __post_init__(self) -> None:
        # Each reaches the batch script (the #SBATCH lines are not quoted): a newline would
        # start a shell line of its own.
        for flag, value in (
            ("--slurm-partition", self.partition),
            ("--slurm-account", self.account),
            ("--slurm-time", self.time),
            ("--slurm-master-addr", self.master_addr),
            ("--container-runtime", self.container_runtime),
            *(("--slurm-extra", e) for e in self.extra),
        ):
            refuse_control_characters(flag, value)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def refuse_control_characters(what: str, value: object) -> None:
    """Refuse a value with a control character (a newline, a tab, NUL ...): every value in
    a batch script stays on its own line."""
    if isinstance(value, str) and _CONTROL.search(value):
        raise UsageError(
            f"{what} {value!r}: holds a control character (newline, tab ...), which would "
            "put a line of its own into the sbatch script",
            hint="give one flag per --slurm-extra, each on one line",
        )


@dataclass(frozen=True)
class SbatchJob:
    """One attempt to render: everything that varies between attempts."""

    name: str
    spec: TrialSpec
    job_dir: str
    log: str
    master_port: int
    gpus_per_node: int
    env: Mapping[str, str] = field(default_factory=dict)


def sbatch_flags(settings: SlurmSettings, job: SbatchJob) -> list[str]:
    """The #SBATCH flags, sorted. `--no-requeue`: a preempted or timed-out job ends, and the
    controller retries it as a new attempt with resume arguments (Slurm's own requeue would
    rerun the first attempt's command, which does not resume)."""
    lay = job.spec.layout
    tasks = 1 if job.spec.launch == "node" else lay.procs_per_node
    flags = [
        f"--job-name={job.name}",
        f"--nodes={lay.nnodes}",
        f"--ntasks-per-node={tasks}",
        f"--output={job.log}",
        f"--chdir={job.spec.cwd or job.spec.work_dir}",
        "--open-mode=append",
        "--no-requeue",
    ]
    if job.gpus_per_node:
        flags.append(f"--gres=gpu:{job.gpus_per_node}")
    if settings.partition:
        flags.append(f"--partition={settings.partition}")
    if settings.account:
        flags.append(f"--account={settings.account}")
    if settings.time:
        flags.append(f"--time={settings.time}")
    if settings.cpus_per_task:
        flags.append(f"--cpus-per-task={settings.cpus_per_task}")
    flags += list(settings.extra)
    return sorted(flags)


def srun_flags(settings: SlurmSettings, job: SbatchJob) -> list[str]:
    lay = job.spec.layout
    tasks = 1 if job.spec.launch == "node" else lay.procs_per_node
    flags = [
        f"--nodes={lay.nnodes}",
        f"--ntasks={lay.nnodes * tasks}",
        f"--ntasks-per-node={tasks}",
        "--kill-on-bad-exit=1",
    ]
    if job.spec.container and settings.container_runtime == "pyxis":
        flags += containers.pyxis_srun_flags(
            job.spec.container, mounts=_mounts(job.spec), cwd=job.spec.cwd or job.spec.work_dir
        )
    return flags


def node_argv(settings: SlurmSettings, job: SbatchJob) -> list[str]:
    """The command node_launch.sh runs: the trainer's argv, in its container if it has one
    and the runtime is not pyxis (pyxis wraps the whole srun step instead)."""
    spec = job.spec
    if not spec.container or settings.container_runtime == "pyxis":
        return list(spec.argv)
    return containers.wrap(
        spec.argv,
        spec.container,
        runtime=settings.container_runtime,
        mounts=_mounts(spec),
        cwd=spec.cwd or spec.work_dir,
        env=dict(job.env),
        gpus=spec.layout.use_gpu,
    )


def _mounts(spec: TrialSpec) -> list[str]:
    return sorted({spec.work_dir, *([spec.cwd] if spec.cwd else [])})


def render_sbatch(settings: SlurmSettings, job: SbatchJob, template: str) -> str:
    """The batch script text for one attempt (deterministic: flags and env sorted). A value
    written into the script unquoted (an #SBATCH flag, the job dir) is refused with a control
    character, and an environment name must be a name; quoted values (the trainer's
    arguments, environment values) may hold newlines: a `python -c` script is one argument."""
    for flag in sbatch_flags(settings, job):
        refuse_control_characters("sbatch flag", flag)
    for key in job.env:
        if not _ENV_NAME.match(key):
            raise UsageError(f"environment variable {key!r}: not a variable name")
    refuse_control_characters("job dir", job.job_dir)
    values = {
        "sbatch_lines": "\n".join(f"#SBATCH {f}" for f in sbatch_flags(settings, job)),
        "job_dir": shlex.quote(job.job_dir),
        "env_lines": "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(job.env.items())),
        "master_addr": shlex.quote(settings.master_addr) if settings.master_addr else FIRST_NODE,
        "master_port": str(job.master_port),
        "srun_flags": " ".join(shlex.quote(f) for f in srun_flags(settings, job)),
        "argv": " ".join(shlex.quote(a) for a in node_argv(settings, job)),
    }
    text = template
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


# -- what Slurm prints ----------------------------------------------------------------------
@dataclass(frozen=True)
class SlurmRecord:
    """One job as a Slurm command prints it. `start`/`end` are Unix seconds as printed (None
    for "Unknown", "N/A", "None"); for a pending job squeue prints the expected start and
    for a running one the expected end, so `record_times` says which are real."""

    job_id: str
    name: str
    state: str  # the Slurm state word, e.g. RUNNING, CANCELLED, NODE_FAIL
    exit_code: int | None = None
    reason: str = ""
    work_dir: str = ""
    start: float | None = None
    end: float | None = None


# The work dir goes last: it is the one field that may hold a "|".
SQUEUE_FORMAT = "%i|%j|%T|%r|%S|%e|%Z"
SACCT_FIELDS = "JobID,JobName,State,ExitCode,Start,End,WorkDir"
# squeue and sacct print times as SLURM_TIME_FORMAT says: the executor asks for Unix seconds,
# so no time zone stands between Slurm's clock and the controller's.
TIME_FORMAT_ENV = {"SLURM_TIME_FORMAT": "%s"}


def parse_squeue(text: str) -> dict[str, SlurmRecord]:
    """`squeue -h -o '%i|%j|%T|%r|%S|%e|%Z'` lines, keyed by job id."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3:
            continue
        job_id, name, state = parts[:3]
        reason = parts[3] if len(parts) > 3 and parts[3] not in ("None", "(null)") else ""
        start, end = (parse_time(parts[4]), parse_time(parts[5])) if len(parts) > 5 else (None,) * 2
        work_dir = "|".join(parts[6:])
        out[job_id] = SlurmRecord(job_id, name, state.upper(), None, reason, work_dir, start, end)
    return out


def parse_sacct(text: str) -> dict[str, SlurmRecord]:
    """`sacct -X -n -P -o JobID,JobName,State,ExitCode,Start,End,WorkDir` lines. The State
    may read "CANCELLED by 1000"; ExitCode is "code:signal"."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 4 or not parts[0]:
            continue
        job_id, name, state, code = parts[:4]
        words = state.split()
        out[job_id] = SlurmRecord(
            job_id,
            name,
            words[0].upper() if words else "",
            _exit_code(code),
            state if len(words) > 1 else "",
            "|".join(parts[6:]),
            parse_time(parts[4]) if len(parts) > 4 else None,
            parse_time(parts[5]) if len(parts) > 5 else None,
        )
    return out


def parse_time(text: str) -> float | None:
    """A time as Slurm prints it: Unix seconds (SLURM_TIME_FORMAT=%s), or its default
    2024-05-01T12:00:00 in this machine's local time (jobcomp, which slurmctld writes);
    None for "Unknown", "N/A", "None" and anything else."""
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def record_times(record: SlurmRecord) -> tuple[float | None, float | None]:
    """(start, end) of the job that have happened: no start while it pends (squeue's %S is
    then a forecast) and no end while it runs (%e is then its time limit)."""
    state = _ACTIVE.get(record.state)
    return (
        record.start if state != JobState.PENDING else None,
        record.end if state is None else None,
    )


def parse_keyvalues(line: str) -> dict[str, str]:
    """`Key=Value Key2=Value2` as jobcomp/filetxt and `scontrol show -o` print them."""
    out: dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep:
            out[key] = value
    return out


def parse_jobcomp(text: str, job_ids: Iterable[str]) -> dict[str, SlurmRecord]:
    """The jobcomp/filetxt lines of the given jobs (the last line of a job wins)."""
    wanted = set(job_ids)
    out = {}
    for line in text.splitlines():
        kv = parse_keyvalues(line)
        job_id = kv.get("JobId", "")
        if job_id in wanted:
            out[job_id] = SlurmRecord(
                job_id,
                kv.get("Name", ""),
                kv.get("JobState", "").upper(),
                _exit_code(kv.get("ExitCode", "")),
                "",
                kv.get("WorkDir", ""),
                parse_time(kv.get("StartTime", "")),
                parse_time(kv.get("EndTime", "")),
            )
    return out


def _exit_code(text: str) -> int | None:
    code, _, sig = text.partition(":")
    try:
        code_i, sig_i = int(code), int(sig or 0)
    except ValueError:
        return None
    return -sig_i if sig_i and not code_i else code_i


def status_of(record: SlurmRecord, cancelled_by_us: bool = False) -> JobStatus:
    """A Slurm record as a JobStatus, with the reason in words and the job's own times."""
    start, end = record_times(record)
    state = record.state
    if state in _ACTIVE:
        why = f"slurm: {state}" + (f" ({record.reason})" if record.reason else "")
        return JobStatus(_ACTIVE[state], None, why, start)
    if state == "COMPLETED":
        return JobStatus(JobState.SUCCEEDED, record.exit_code or 0, "", start, end)
    if state == "CANCELLED":
        who = "cancelled by scaleout" if cancelled_by_us else "cancelled outside scaleout"
        return JobStatus(JobState.CANCELLED, record.exit_code, f"slurm: {who}", start, end)
    if state in _LOST:
        why = f"slurm: the job {_LOST[state]} ({state})"
        return JobStatus(JobState.FAILED, record.exit_code, why, start, end)
    code = record.exit_code
    why = f"slurm: {state or 'FAILED'}" + (f", exit code {code}" if code else "")
    return JobStatus(JobState.FAILED, code, why, start, end)


def exit_file_status(info: Mapping[str, object], cancelled_by_us: bool) -> JobStatus:
    """The status the batch script's exit.json records (its `time`: when the step ended)."""
    rc = int(info.get("returncode", 1))  # type: ignore[call-overload]
    end = info.get("time")
    ended = float(end) if isinstance(end, (int, float)) else None
    if cancelled_by_us:
        return JobStatus(JobState.CANCELLED, rc, "cancelled by scaleout", ended_at=ended)
    if rc == 0:
        return JobStatus(JobState.SUCCEEDED, 0, ended_at=ended)
    if info.get("signal"):
        why = "terminated by Slurm (time limit, preemption or scancel)"
        return JobStatus(JobState.FAILED, rc, why, ended_at=ended)
    return JobStatus(JobState.FAILED, rc, f"exit code {rc}", ended_at=ended)


def job_list(records: Sequence[str]) -> str:
    return ",".join(sorted(set(records), key=lambda j: (len(j), j)))
