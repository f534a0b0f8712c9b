from __future__ import annotations

import pytest

from scaleout.executors.container import pyxis_srun_flags, wrap

ARGV = ["python", "-m", "torch.distributed.launch", "tools/train.py", "cfg.py"]


@pytest.mark.parametrize(
    "runtime, expected",
    [
        ("docker", ["docker", "run", "--rm", "--network=host", "--ipc=host", "--gpus", "all",
                    "-v", "/src/BEVFormer:/src/BEVFormer", "-w", "/src/BEVFormer",
                    "-e", "PYTHONPATH=/src/BEVFormer", "img:1", *ARGV]),
        ("apptainer", ["apptainer", "exec", "--nv", "--bind", "/src/BEVFormer:/src/BEVFormer",
                       "--pwd", "/src/BEVFormer", "--env", "PYTHONPATH=/src/BEVFormer",
                       "img:1", *ARGV]),
    ],
)  # fmt: skip
def test_wrap(runtime, expected):
    got = wrap(ARGV, "img:1", runtime=runtime, mounts=["/src/BEVFormer"], cwd="/src/BEVFormer",
               env={"PYTHONPATH": "/src/BEVFormer"})  # fmt: skip
    assert got == expected


def test_pyxis_and_unknown_runtime():
    assert pyxis_srun_flags("nvcr.io#nvidia/pytorch:23.10-py3", mounts=["/w"], cwd="/w") == [
        "--container-image=nvcr.io#nvidia/pytorch:23.10-py3",
        "--container-mounts=/w:/w",
        "--container-workdir=/w",
    ]
    with pytest.raises(ValueError, match="podman"):
        wrap(ARGV, "img", runtime="podman")
