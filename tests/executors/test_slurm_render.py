"""The sbatch script and Slurm's printed states, as pure text: table-driven, no Slurm needed."""

from __future__ import annotations

import re
import shlex
import time

import pytest

from scaleout.core.job import JobState, Layout, TrialSpec
from scaleout.executors.slurm import _gpus_in_gres
from scaleout.executors.slurm_text import (
    SbatchJob,
    SlurmRecord,
    SlurmSettings,
    exit_file_status,
    job_list,
    parse_jobcomp,
    parse_sacct,
    parse_squeue,
    parse_time,
    record_times,
    render_sbatch,
    sbatch_flags,
    sbatch_template,
    srun_flags,
    status_of,
)

ARGV = (
    "/venv/bin/python", "-m", "torch.distributed.run", "--nnodes", "20",
    "--node_rank", "{node_rank}", "--nproc_per_node", "8",
    "--master_addr", "{master_addr}", "--master_port", "{master_port}",
    "train.py", "/w/t000/trial_config.py", "--launcher", "pytorch",
)  # fmt: skip


BIG = Layout(20, 8, 160, True)


def job(layout=BIG, launch="node", container=None, cwd=None, env=None, gpn=8) -> SbatchJob:
    spec = TrialSpec(
        name="t000",
        work_dir="/w/t000",
        argv=ARGV,
        layout=layout,
        launch=launch,
        container=container,
        cwd=cwd,
    )
    return SbatchJob(
        name="lr-160g-t000-a1",
        spec=spec,
        job_dir="/w/t000/.jobs/lr-160g-t000-a1",
        log="/w/t000/lr-160g-t000-a1.log",
        master_port=29517,
        gpus_per_node=gpn,
        env=env if env is not None else {"OMP_NUM_THREADS": "4", "B": "x y"},
    )


FULL = SlurmSettings(
    partition="gpu",
    account="perception",
    time="24:00:00",
    cpus_per_task=32,
    extra=("--qos=high", "--constraint=a100"),
)


@pytest.mark.parametrize(
    ("settings", "j", "expected"),
    [
        (
            SlurmSettings(),
            job(),
            [
                "--chdir=/w/t000",
                "--gres=gpu:8",
                "--job-name=lr-160g-t000-a1",
                "--no-requeue",
                "--nodes=20",
                "--ntasks-per-node=1",
                "--open-mode=append",
                "--output=/w/t000/lr-160g-t000-a1.log",
            ],
        ),
        (
            FULL,
            job(),
            [
                "--account=perception",
                "--chdir=/w/t000",
                "--constraint=a100",
                "--cpus-per-task=32",
                "--gres=gpu:8",
                "--job-name=lr-160g-t000-a1",
                "--no-requeue",
                "--nodes=20",
                "--ntasks-per-node=1",
                "--open-mode=append",
                "--output=/w/t000/lr-160g-t000-a1.log",
                "--partition=gpu",
                "--qos=high",
                "--time=24:00:00",
            ],
        ),
        # mmcv's own `--launcher slurm`: srun starts one task per GPU; the trainer's repo is cwd
        (
            SlurmSettings(),
            job(launch="task", cwd="/src/BEVFormer"),
            [
                "--chdir=/src/BEVFormer",
                "--gres=gpu:8",
                "--job-name=lr-160g-t000-a1",
                "--no-requeue",
                "--nodes=20",
                "--ntasks-per-node=8",
                "--open-mode=append",
                "--output=/w/t000/lr-160g-t000-a1.log",
            ],
        ),
        # a 4-GPU trial on one 8-GPU node asks for 4 GPUs, not the whole node
        (SlurmSettings(), job(Layout(1, 4, 4, True), gpn=4), None),
    ],
)
def test_sbatch_flags_are_sorted_and_complete(settings, j, expected):
    flags = sbatch_flags(settings, j)
    assert flags == sorted(flags)
    if expected is not None:
        assert flags == expected
    else:
        assert "--gres=gpu:4" in flags and "--nodes=1" in flags


@pytest.mark.parametrize(
    ("launch", "layout", "expected"),
    [
        ("node", Layout(2, 1, 16, False), "--nodes=2 --ntasks=2 --ntasks-per-node=1"),
        ("node", Layout(20, 8, 160, True), "--nodes=20 --ntasks=20 --ntasks-per-node=1"),
        ("task", Layout(20, 8, 160, True), "--nodes=20 --ntasks=160 --ntasks-per-node=8"),
    ],
)
def test_srun_runs_one_launcher_per_node_or_one_task_per_gpu(launch, layout, expected):
    flags = srun_flags(SlurmSettings(), job(layout, launch=launch))
    assert " ".join(flags) == expected + " --kill-on-bad-exit=1"


def test_render_is_deterministic_and_complete():
    template = sbatch_template()
    text = render_sbatch(FULL, job(), template)
    assert text == render_sbatch(FULL, job(), template)  # same inputs, same text
    assert "{{" not in text
    assert text.startswith("#!/bin/bash\n")
    lines = [x for x in text.splitlines() if x.startswith("#SBATCH ")]
    assert lines == [f"#SBATCH {f}" for f in sbatch_flags(FULL, job())]
    # env sorted and quoted; the rendezvous at the first node, on the trial's port
    assert "export B='x y'\nexport OMP_NUM_THREADS=4\n" in text
    assert 'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in (
        text
    )
    assert "export MASTER_PORT=29517" in text
    # the per-node command keeps its placeholders for node_launch.sh to fill on each node
    srun = text[text.index("\nsrun ") + 1 : text.index(" &\n")]
    words = shlex.split(srun.replace("\\\n", " "))
    assert words[-len(ARGV) :] == list(ARGV)
    assert words[-len(ARGV) - 2 : -len(ARGV)] == ["bash", "$job_dir/node_launch.sh"]
    # the batch script records how it ended, atomically
    assert "put started.json" in text and "put exit.json" in text
    assert re.search(r"mv -f .* \"\$job_dir/\$1\"", text)


def test_master_addr_override_for_clusters_whose_node_names_do_not_resolve():
    text = render_sbatch(SlurmSettings(master_addr="127.0.0.1"), job(), sbatch_template())
    assert "export MASTER_ADDR=127.0.0.1\n" in text
    assert "scontrol show hostnames" not in text


@pytest.mark.parametrize(
    ("runtime", "in_srun", "in_argv"),
    [
        ("pyxis", "--container-image=nvcr.io/bev:1", None),
        ("apptainer", None, "apptainer exec --nv"),
        ("enroot", None, "enroot start"),
    ],
)
def test_containers(runtime, in_srun, in_argv):
    j = job(container="nvcr.io/bev:1", env={})
    text = render_sbatch(SlurmSettings(container_runtime=runtime), j, sbatch_template())
    srun = text[text.index("\nsrun ") + 1 : text.index(" &\n")]
    head, _, argv = srun.partition("node_launch.sh")
    if in_srun:
        assert in_srun in head and "--container-mounts=/w/t000:/w/t000" in head
        assert argv.split()[1] == "/venv/bin/python"
    else:
        assert in_argv in argv and "nvcr.io/bev:1" in argv


T0, T1 = 1714564800.0, 1714568400.0  # 2024-05-01 12:00 and 13:00 UTC


# squeue -o '%i|%j|%T|%r|%S|%e|%Z' with SLURM_TIME_FORMAT=%s: %S is a pending job's expected
# start and %e a running job's time limit, so only what has happened becomes a time.
@pytest.mark.parametrize(
    ("line", "state", "reason", "times"),
    [
        ("12|s-t000-a1|RUNNING|None|1714564800|1714651200|/w", "RUNNING", "", (T0, None)),
        ("12|s-t000-a1|PENDING|Resources|1714564800|1714651200|/w", "PENDING", "Resources",
         (None, None)),
        ("12|s-t000-a1|PENDING|PartitionNodeLimit|N/A|N/A|/w", "PENDING", "PartitionNodeLimit",
         (None, None)),
        ("12|s-t000-a1|COMPLETED|None|1714564800|1714568400|/w", "COMPLETED", "", (T0, T1)),
        ("12|s-t000-a1|RUNNING|None|1714564800|1714651200|/w|with|bars", "RUNNING", "",
         (T0, None)),
    ],
)  # fmt: skip
def test_parse_squeue(line, state, reason, times):
    rec = parse_squeue(line + "\n")["12"]
    assert (rec.state, rec.exit_code, rec.reason) == (state, None, reason)
    assert rec.work_dir == line[line.index("/w") :]
    assert record_times(rec) == times
    st = status_of(rec)
    assert (st.started_at, st.ended_at) == times


# sacct -o JobID,JobName,State,ExitCode,Start,End,WorkDir (-P, SLURM_TIME_FORMAT=%s)
@pytest.mark.parametrize(
    ("line", "state", "exit_code", "times"),
    [
        ("7|s-t000-a1|COMPLETED|0:0|1714564800|1714568400|/w", "COMPLETED", 0, (T0, T1)),
        ("7|s-t000-a1|FAILED|3:0|1714564800|1714568400|/w", "FAILED", 3, (T0, T1)),
        ("7|s-t000-a1|CANCELLED by 1000|0:15|1714564800|1714568400|/w", "CANCELLED", -15,
         (T0, T1)),
        ("7|s-t000-a1|TIMEOUT|0:0|1714564800|1714568400|/w", "TIMEOUT", 0, (T0, T1)),
        ("7|s-t000-a1|NODE_FAIL|1:0|1714564800|1714568400|/w", "NODE_FAIL", 1, (T0, T1)),
        ("7|s-t000-a1|RUNNING|0:0|1714564800|Unknown|/w", "RUNNING", 0, (T0, None)),
        ("7|allocation|PENDING|0:0|Unknown|Unknown|", "PENDING", 0, (None, None)),
    ],
)  # fmt: skip
def test_parse_sacct(line, state, exit_code, times):
    rec = parse_sacct(line)["7"]
    assert (rec.state, rec.exit_code) == (state, exit_code)
    assert rec.work_dir == ("/w" if "/w" in line else "")
    st = status_of(rec)
    assert (st.started_at, st.ended_at) == times


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1714564800", T0),
        ("Unknown", None),
        ("None", None),
        ("N/A", None),
        ("", None),
        ("2024-05-01T12:00:00", "local"),  # Slurm's default format: this machine's local time
    ],
)
def test_parse_time(text, expected):
    if expected == "local":
        expected = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))
    assert parse_time(text) == expected


def test_parse_jobcomp_keeps_the_last_line_of_each_job():
    text = (
        "JobId=3 UserId=root(0) Name=a-t000-a1 JobState=COMPLETED Partition=gpu "
        "NodeList=node[1-2] WorkDir=/w ExitCode=0:0\n"
        "JobId=4 UserId=root(0) Name=a-t001-a1 JobState=NODE_FAIL ExitCode=1:0\n"
        "JobId=33 Name=other JobState=FAILED ExitCode=2:0\n"
    )
    recs = parse_jobcomp(text, ["3", "4", "5"])
    assert sorted(recs) == ["3", "4"]
    assert recs["3"].state == "COMPLETED" and recs["3"].work_dir == "/w"
    assert recs["4"].state == "NODE_FAIL" and recs["4"].exit_code == 1
    assert (recs["4"].start, recs["4"].end) == (None, None)


def test_parse_jobcomp_times():
    line = (
        "JobId=3 Name=a JobState=COMPLETED ExitCode=0:0 "
        "StartTime=2024-05-01T12:00:00 EndTime=2024-05-01T13:00:00"
    )
    rec = parse_jobcomp(line, ["3"])["3"]
    assert rec.end - rec.start == 3600  # local time, as slurmctld wrote it
    st = status_of(rec)
    assert (st.started_at, st.ended_at) == (rec.start, rec.end)


@pytest.mark.parametrize(
    ("state", "ours", "expected", "words"),
    [
        ("PENDING", False, JobState.PENDING, "PENDING"),
        ("CONFIGURING", False, JobState.PENDING, ""),
        ("RUNNING", False, JobState.RUNNING, ""),
        ("COMPLETING", False, JobState.RUNNING, ""),
        ("COMPLETED", False, JobState.SUCCEEDED, ""),
        ("FAILED", False, JobState.FAILED, "FAILED"),
        ("CANCELLED", True, JobState.CANCELLED, "cancelled by scaleout"),
        ("CANCELLED", False, JobState.CANCELLED, "cancelled outside scaleout"),
        ("TIMEOUT", False, JobState.FAILED, "hit its time limit"),
        ("PREEMPTED", False, JobState.FAILED, "was preempted"),
        ("NODE_FAIL", False, JobState.FAILED, "lost a node"),
        ("OUT_OF_MEMORY", False, JobState.FAILED, "ran out of memory"),
    ],
)
def test_slurm_states(state, ours, expected, words):
    st = status_of(SlurmRecord("1", "n", state, 0), ours)
    assert st.state == expected
    assert words in st.reason


@pytest.mark.parametrize(
    ("info", "ours", "expected", "words"),
    [
        ({"returncode": 0, "signal": None}, False, JobState.SUCCEEDED, ""),
        ({"returncode": 3, "signal": None}, False, JobState.FAILED, "exit code 3"),
        ({"returncode": 143, "signal": "TERM"}, False, JobState.FAILED, "time limit, preemption"),
        ({"returncode": 143, "signal": "TERM"}, True, JobState.CANCELLED, "cancelled by scaleout"),
    ],
)
def test_exit_file(info, ours, expected, words):
    st = exit_file_status(info, ours)
    assert st.state == expected and words in st.reason
    assert st.ended_at is None
    assert exit_file_status({**info, "time": 1714568400}, ours).ended_at == T1


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [("gpu:8", 8), ("gpu:a100:8(S:0-1)", 8), ("gpu:4,shard:8", 4), ("(null)", 0), ("", 0)],
)
def test_gpus_in_gres(gres, gpus):
    assert _gpus_in_gres(gres) == gpus


def test_job_list_is_sorted_and_unique():
    assert job_list(["12", "9", "12", "100"]) == "9,12,100"


@pytest.mark.parametrize(
    ("argv", "executor", "options"),
    [
        ([], "local", {}),
        (
            ["--executor", "slurm", "--slurm-partition", "gpu", "--slurm-account", "perception",
             "--slurm-time", "24:00:00", "--slurm-cpus-per-task", "32",
             "--slurm-extra=--qos=high", "--slurm-extra=--constraint=a100",
             "--procs-per-node", "1", "--slurm-master-addr", "127.0.0.1"],
            "slurm",
            {"partition": "gpu", "account": "perception", "time": "24:00:00",
             "cpus_per_task": 32, "extra": ["--qos=high", "--constraint=a100"],
             "procs_per_node": 1, "master_addr": "127.0.0.1"},
        ),
        (
            ["--executor", "ray", "--ray-address", "http://head:8265",
             "--container-runtime", "apptainer"],
            "ray",
            {"address": "http://head:8265", "container_runtime": "apptainer"},
        ),
    ],
)  # fmt: skip
def test_executor_flags_become_the_stored_options(argv, executor, options, monkeypatch):
    from scaleout.cli import build_parser
    from scaleout.cli.commands.sweep import executor_options

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args = build_parser().parse_args(["sweep", "--gpus", "16", "--space", "s.yaml", *argv])
    assert args.executor == executor
    assert executor_options(args) == options
