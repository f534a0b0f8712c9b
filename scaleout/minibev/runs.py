"""Start minibev training runs and read back their scalars.json.

Used by benchmarks/minibev_calibration.py and the tests; a sweep adapter reads the same files.
Each `Runner` start (a fresh run or a resume) writes its own `{work_dir}/{timestamp}/vis_data/
scalars.json`; a run's history is their concatenation in timestamp order.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
PREFIX = "NuScenes metric/pred_instances_3d_NuScenes/"
NDS = PREFIX + "NDS"
MAP = PREFIX + "mAP"


def config_path(preset: str) -> Path:
    return CONFIGS / f"{preset}.py"


def train_argv(
    config: Path | str, work_dir: Path | str, *options: str, resume: bool = False
) -> list[str]:
    """The single-process command line (`--launcher none`)."""
    argv = [sys.executable, "-m", "scaleout.minibev.train", str(config)]
    argv += ["--work-dir", str(work_dir)]
    if options:
        argv += ["--cfg-options", *options]
    return argv + (["--resume"] if resume else [])


def run(
    config: Path | str,
    work_dir: Path | str,
    *options: str,
    resume: bool = False,
    threads: int = 2,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.run(
        train_argv(config, work_dir, *options, resume=resume),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def read_scalars(work_dir: Path | str) -> list[dict]:
    """Every line of every scalars.json under work_dir, oldest run first. NaN stays NaN.

    The raw lines (the sweep adapter's parser, scaleout.trainers.logs, aggregates the same
    files into per-epoch metrics; the tests here need each step's lr).
    """
    from scaleout.trainers.logs import json_records

    lines: list[dict] = []
    for path in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        lines += json_records(path.read_text())  # a line cut short by a kill is skipped
    return lines


def train_lines(scalars: list[dict]) -> dict[int, dict]:
    """Train lines by step (iteration); a resumed run's lines replace the killed run's."""
    return {s["step"]: s for s in scalars if "loss" in s}


def val_lines(scalars: list[dict]) -> list[dict]:
    """Validation lines in order; `step` is the epoch."""
    return [s for s in scalars if NDS in s]


def final_metrics(work_dir: Path | str) -> dict[str, float]:
    vals = val_lines(read_scalars(work_dir))
    if not vals:
        return {"NDS": math.nan, "mAP": math.nan}
    return {"NDS": vals[-1][NDS], "mAP": vals[-1][MAP], "epoch": vals[-1]["step"]}
