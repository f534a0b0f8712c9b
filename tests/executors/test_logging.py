"""What operators see with `--log-level debug`: every Slurm command and every Ray call the
controller makes, with its arguments and outcome (fake Slurm commands and a fake Ray client:
no cluster needed)."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import pytest

from scaleout.core.job import Capacity, JobHandle, Layout, TrialSpec

REPO = Path(__file__).resolve().parents[2]
SPACE = str(REPO / "search_spaces" / "lr_scaling.yaml")


@pytest.fixture(autouse=True)
def _restore_scaleout_logger(monkeypatch):
    # main() configures the `scaleout` logger for the process; give the next test its own
    logger = logging.getLogger("scaleout")
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "level", logger.level)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, squeue, scancel, scontrol and sinfo as scripts: a partition `gpu` of 2 nodes x 8
    GPUs; `sbatch --test-only` refuses an account named `nosuch`, sbatch --parsable says 4242."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "scontrol": """
            case "$*" in
              "show partition -o") echo "PartitionName=gpu Default=YES MaxNodes=UNLIMITED" ;;
              "show partition gpu") echo "PartitionName=gpu MaxNodes=UNLIMITED" ;;
              *) exit 1 ;;
            esac""",
        "sinfo": """printf 'node1|gpu:8|idle\\nnode2|gpu:8|idle\\n'""",
        "sbatch": """
            case "$*" in
              *--account=nosuch*) echo "sbatch: error: Invalid account" >&2; exit 1 ;;
              *--test-only*) echo "sbatch: Job 1 to start at now" >&2 ;;
              *) echo 4242 ;;
            esac""",
        "squeue": """echo "4242|s-t000-a1|RUNNING|None|1714564800|1714651200|$PWD" """,
        "scancel": "true",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + textwrap.dedent(body).strip() + "\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


@pytest.mark.parametrize(
    "where", ["before", "after"], ids=["scaleout --log-level", "scaleout sweep --log-level"]
)
def test_debug_shows_every_sbatch_call(fake_slurm, tmp_path, capsys, where):
    from scaleout.cli.main import main

    flag = ["--log-level", "debug"]
    sweep = ["sweep", "--executor", "slurm", "--slurm-account", "nosuch", "--gpus", "16"]
    sweep += ["--space", SPACE, "--preset", "tiny", "--workspace", str(tmp_path / "ws")]
    argv = flag + sweep if where == "before" else sweep + flag
    assert main(argv) == 2  # the account is refused before anything is written
    err = capsys.readouterr().err
    assert "DEBUG scaleout.executors.slurm: scontrol show partition -o: exit 0" in err
    line = next(x for x in err.splitlines() if "slurm: sbatch --test-only" in x)
    assert "--account=nosuch" in line and "exit 1" in line and "Invalid account" in line
    assert "scaleout: error: slurm executor: Slurm refuses the job flags" in err
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())


def test_the_default_shows_no_debug(fake_slurm, tmp_path, capsys):
    from scaleout.cli.main import main

    argv = ["sweep", "--executor", "slurm", "--slurm-account", "nosuch", "--gpus", "16"]
    argv += ["--space", SPACE, "--preset", "tiny", "--workspace", str(tmp_path / "ws")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "DEBUG" not in err and "sbatch" not in err.split("error:")[0]


def test_submit_and_poll_log_their_commands(fake_slurm, tmp_path, caplog):
    from scaleout.executors.slurm import SlurmExecutor

    spec = TrialSpec(
        name="t", work_dir=str(tmp_path / "w"), argv=("python", "x.py"), layout=Layout(2, 8, 16)
    )
    ex = SlurmExecutor(accounting="no")
    with caplog.at_level(logging.DEBUG, logger="scaleout"):
        h = ex.submit(spec, "s-t000-a1")
        ex.poll([h])
    lines = [r.getMessage() for r in caplog.records if r.name == "scaleout.executors.slurm"]
    script = Path(h.data["job_dir"]) / "job.sbatch"
    assert f"sbatch --parsable {script}: exit 0" in "\n".join(lines)
    assert any(x.startswith("sbatch --parsable") and "stdout: 4242" in x for x in lines)
    assert any(x.startswith("squeue -h --states=all -j 4242") for x in lines), lines


class FakeClient:
    def __init__(self):
        self.submitted = []

    def submit_job(self, **kw):
        self.submitted.append(kw)
        return kw["submission_id"]

    def list_jobs(self):
        return []

    def stop_job(self, job_id):
        return False

    def get_job_info(self, job_id):
        raise RuntimeError(f"Job {job_id} does not exist")


def test_every_ray_jobs_call_is_logged(tmp_path, caplog):
    pytest.importorskip("ray.job_submission")
    from scaleout.executors.ray import RayExecutor

    ex = RayExecutor(address="http://head:8265", poll_min_interval_s=0)
    ex._client_obj = FakeClient()
    spec = TrialSpec(name="t", work_dir=str(tmp_path), argv=("x",), layout=Layout(1, 1, 8))
    with caplog.at_level(logging.DEBUG, logger="scaleout"):
        ex.poll([JobHandle("ray", "s-t000-a1", "s-t000-a1")])
        ex.cancel(JobHandle("ray", "s-t000-a1", "s-t000-a1"))
        assert ex.find("s-t000-a1", spec) is None
        ex._capacity = Capacity(nodes=1, gpus_per_node=8, slots=1)  # no State API call
        ex.submit(spec, "s-t001-a1")
    lines = [r.getMessage() for r in caplog.records if r.name == "scaleout.executors.ray"]
    assert lines[0].startswith("ray FakeClient.list_jobs(): 0 item(s) in ")
    assert lines[1].startswith("ray FakeClient.stop_job('s-t000-a1'): False in ")
    assert lines[2].startswith("ray FakeClient.get_job_info('s-t000-a1'): failed in ")
    assert "does not exist" in lines[2]
    assert lines[3].startswith("ray FakeClient.submit_job(entrypoint=")
    assert "submission_id='s-t001-a1'" in lines[3] and "'s-t001-a1' in " in lines[3]
    # the job's entrypoint is told to log its placement-group calls as well
    (submitted,) = ex._client_obj.submitted
    assert submitted["runtime_env"]["env_vars"]["SCALEOUT_LOG_LEVEL"] == "debug"
    ex.submit(spec, "s-t002-a1")  # not at debug: not told
    assert "SCALEOUT_LOG_LEVEL" not in ex._client_obj.submitted[1]["runtime_env"]["env_vars"]


def test_the_ray_entrypoint_logs_at_the_controllers_level(monkeypatch):
    # The controller passes SCALEOUT_LOG_LEVEL=debug to the job when it logs at debug; the
    # entrypoint then logs its placement-group calls to the job log (stdout).
    from scaleout.executors import ray_entry

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    ray_entry.configure_logging(None)
    assert not root.handlers
    ray_entry.configure_logging("debug")
    assert root.level == logging.DEBUG and root.handlers[0].stream is sys.stdout
