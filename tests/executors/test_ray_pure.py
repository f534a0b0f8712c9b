"""The Ray executor without a cluster: what it refuses before it connects, and how a job's
info reads. (tests/executors/test_ray.py runs it against a real one.)"""

from __future__ import annotations

import pytest

pytest.importorskip("ray.job_submission")

from scaleout.core.errors import UsageError
from scaleout.core.job import Layout, TrialSpec
from scaleout.executors.ray import RayExecutor


def test_a_per_task_trainer_is_refused_before_the_cluster_is_asked(tmp_path):
    # It used to run the one-process command once per node, where it expects one per GPU.
    spec = TrialSpec(
        name="t000",
        work_dir=str(tmp_path / "w"),
        argv=("python", "-u", "tools/train.py", "--launcher=slurm"),
        layout=Layout(2, 8, 16, True),
        launch="task",
    )
    ex = RayExecutor(address="http://127.0.0.1:9")  # nothing listens: it must not ask
    with pytest.raises(UsageError, match="once per node") as err:
        ex.submit(spec, "s-t000-a1")
    assert "launcher='pytorch'" in str(err.value)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("status", "times"),
    [
        ("PENDING", (None, None)),  # Ray sets start_time at submission: not a start yet
        ("RUNNING", (1714564800.5, None)),
        ("SUCCEEDED", (1714564800.5, 1714568400.25)),
        ("FAILED", (1714564800.5, 1714568400.25)),
        ("STOPPED", (1714564800.5, 1714568400.25)),
    ],
)
def test_job_info_times_are_milliseconds(status, times):
    from scaleout.executors.ray import job_status

    st = job_status(status, None, "", 1714564800500, 1714568400250)
    assert (st.started_at, st.ended_at) == times
    assert job_status(status, None, "").started_at is None
