"""The launch assets travel in the wheel: a real `pip wheel` of the project, installed with
`pip install --target` into a fresh folder, renders the sbatch script and reads the node
launcher from there, with no checkout on the import path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Run with -I -S: no site-packages (where the editable install points at a checkout), no
# PYTHONPATH, no cwd; only the --target folder. Rendering needs the stdlib alone.
PROBE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import scaleout
    from scaleout.core.job import Layout, TrialSpec
    from scaleout.executors.slurm_text import (
        SbatchJob, SlurmSettings, node_launch_script, render_sbatch, sbatch_template)
    spec = TrialSpec(name="t000", work_dir="/w/t000", argv=("python", "train.py", "{node_rank}"),
                     layout=Layout(2, 8, 16, True))
    job = SbatchJob(name="s-t000-a1", spec=spec, job_dir="/w/t000/.jobs/s-t000-a1",
                    log="/w/t000/s-t000-a1.log", master_port=29500, gpus_per_node=8)
    print(json.dumps({
        "file": scaleout.__file__,
        "path": sys.path,
        "sbatch": render_sbatch(SlurmSettings(), job, sbatch_template()),
        "node_launch": node_launch_script(),
    }))
""")


def _copy_project(dst: Path) -> None:
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dst / name)
    shutil.copytree(
        REPO / "scaleout", dst / "scaleout", ignore=shutil.ignore_patterns("__pycache__")
    )


@pytest.mark.slow
def test_a_wheel_install_renders_the_sbatch_script_and_reads_the_node_launcher(tmp_path):
    src, wheels, target = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    src.mkdir()
    _copy_project(src)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
        check=True,
        env=env,
        timeout=300,
    )
    (wheel,) = wheels.glob("scaleout-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "scaleout/executors/assets/trial.sbatch" in names
    assert "scaleout/executors/assets/node_launch.sh" in names
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        env=env,
        timeout=300,
    )
    r = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(target)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert Path(out["file"]).is_relative_to(target), out["file"]
    assert not any(p.startswith(str(REPO)) for p in out["path"]), out["path"]
    assert out["sbatch"].startswith("#!/bin/bash\n")
    assert "#SBATCH --nodes=2" in out["sbatch"] and "{{" not in out["sbatch"]
    assert 'bash "$job_dir/node_launch.sh" python train.py' in out["sbatch"]
    assert "SLURM_NODEID" in out["node_launch"]
