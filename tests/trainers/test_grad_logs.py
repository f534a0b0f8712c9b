"""The log readers pick up the gradient statistics (docs/evidence.md): minibev's and the
mmengine hook's scalars.json lines, the hooks' text-log line (both sides), merged over runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from scaleout.core.job import GradStat
from scaleout.hooks import grad_noise
from scaleout.trainers import logs
from scaleout.trainers.mmcv import read_mmcv_logs
from scaleout.trainers.mmengine import read_scalars

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def _scalars(path: Path, lines: list[dict]) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_mmengine_scalars_carry_the_statistics_by_iteration(tmp_path):
    stat = lambda step, small: {  # noqa: E731
        **grad_noise.scalars(small, 1.0, 0.5, 8.0), "step": step,
    }  # fmt: skip
    _scalars(
        tmp_path / "20240101_000000" / "vis_data" / "scalars.json",
        [{"lr": 1e-3, "loss": 2.0, "iter": 5, "step": 5, "epoch": 1}, stat(5, 3.0), stat(10, 2.0)],
    )
    # A resumed run: its iteration 10 replaces the killed run's.
    _scalars(
        tmp_path / "20240101_010000" / "vis_data" / "scalars.json", [stat(10, 4.0), stat(15, 1.0)]
    )
    m = read_scalars(tmp_path)
    assert m.grad_stats == tuple(
        GradStat(i, small, 0.5, 1.0, 8.0) for i, small in ((5, 3.0), (10, 4.0), (15, 1.0))
    )
    assert m.epochs == {}  # the statistics are no validation metrics
    assert m.iters_done == 5


def test_the_hooks_text_line_is_what_the_reader_parses():
    text = "2024-01-01 INFO - " + grad_noise.line(120, 1.234567e-05, 2, 3.5e-07, 64) + "\n"
    assert logs.parse_grad_lines(text) == {120: GradStat(120, 1.23457e-05, 3.5e-07, 2.0, 64.0)}
    assert logs.grad_text_line(GradStat(120, 1.23457e-05, 3.5e-07, 2.0, 64.0)) in text
    # minibev's own logger line has the same form
    minibev = "grad_stats iter 40: |G_local|^2 0.0123 (B=1)  |G_global|^2 0.00456 (B=160)\n"
    assert logs.parse_grad_lines(minibev)[40] == GradStat(40, 0.0123, 0.00456, 1.0, 160.0)
    assert logs.parse_grad_lines("grad_stats iter 7: |G_local|^2 0.1 (B=1)") == {}  # half a line


def test_mmcv_runs_take_the_statistics_from_the_text_log(tmp_path):
    work = tmp_path / "work"
    shutil.copytree(FIXTURES / "bevformer", work)
    assert read_mmcv_logs(work).grad_stats == ()
    text = work / "20230302_080000.log"
    with text.open("a") as f:
        f.write(grad_noise.line(3600, 0.02, 1, 0.004, 8) + "\n")
        f.write(grad_noise.line(3610, 0.03, 1, 0.005, 8) + "\n")
    m = read_mmcv_logs(work)
    assert [s.iter for s in m.grad_stats] == [3600, 3610]
    assert m.grad_stats[1] == GradStat(3610, 0.03, 0.005, 1.0, 8.0)
    assert m.epochs  # the metrics are still read from log.json
