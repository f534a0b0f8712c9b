"""Both sides of the trainers' log formats: parse what mmcv / mmengine write, and write it.

The parsers are pure functions of text. They are called again and again while a trainer
is writing, so a half-written last line is ignored, unparsable lines are skipped, NaN is a
value, and several files (one per run after a resume) merge with the later file winning
per epoch. The writers produce the same formats for fixtures and fake trainers.

Formats (docs/trainers.md):
- mmcv 1.x `{work_dir}/{timestamp}.log.json`: first line run metadata, then
  `{"mode": "train", "epoch", "iter" (within the epoch), "lr", "time", "loss", ...}` and
  `{"mode": "val", "epoch", "iter", "pts_bbox_NuScenes/NDS", ...}`.
- mmcv 1.x `{timestamp}.log` text: `Epoch [1][50/3517]\\tlr: ..., time: 2.295, ...` and
  `Epoch(val) [24][1505]\\tpts_bbox_NuScenes/NDS: 0.4197, ...`.
- mmengine `{work_dir}/{timestamp}/vis_data/scalars.json`: train lines carry lr, loss, time,
  epoch, iter (global), step; val lines carry the metric keys and step = epoch.
- gradient statistics (docs/evidence.md), written by minibev and by scaleout's trainer hooks
  (scaleout.hooks): scalars.json lines `{"grad_stats/grad_sq_local", "grad_stats/grad_sq_global",
  "grad_stats/batch_local", "grad_stats/batch_global", "step"}`, and in the text log
  `grad_stats iter N: |G_local|^2 X (B=b)  |G_global|^2 Y (B=B)` (mmcv 1.x, whose log.json
  rounds floats to 5 decimals).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaleout.core.errors import UsageError
from scaleout.core.job import GradStat, Layout, TrialMetrics, TrialParams

CANONICAL = ("NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
# When several heads report the same metric, the 3D detection head wins.
_PREFERRED_PREFIXES = ("pts_bbox", "pred_instances_3d", "NuScenes metric")
TRIAL_FILE = "scaleout_trial.json"


@dataclass
class Run:
    """What one log file says: val metrics per epoch and train records in order."""

    source: str
    val: dict[int, dict[str, float]] = field(default_factory=dict)
    train: list[dict[str, float]] = field(default_factory=list)
    iters_per_epoch: int | None = None
    global_iters: bool = False  # train records' "iter" counts from the start of training
    grad: dict[int, GradStat] = field(default_factory=dict)  # gradient statistics by iteration


# ---- reading ---------------------------------------------------------------------------


def complete_lines(text: str) -> list[str]:
    """The lines of a file being appended to, without a trailing half-written one."""
    lines = text.split("\n")
    lines.pop()  # "" after a final newline, or the fragment still being written
    return [line for line in lines if line.strip()]


def json_records(text: str) -> list[dict[str, Any]]:
    """JSON objects, one per complete line; lines that do not parse are skipped."""
    out = []
    for line in complete_lines(text):
        try:
            record = json.loads(line)  # accepts NaN and Infinity, as mmcv writes them
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _numbers(record: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in record.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def canonical(raw: Mapping[str, float]) -> dict[str, float]:
    """Raw metric keys plus canonical names ("NDS", "mAP", ...) taken from their suffix."""
    out = dict(raw)
    chosen: dict[str, str] = {}
    for key in raw:
        name = key.rsplit("/", 1)[-1]
        if name not in CANONICAL or key == name:
            continue
        if name not in chosen or (
            key.startswith(_PREFERRED_PREFIXES) and not chosen[name].startswith(_PREFERRED_PREFIXES)
        ):
            chosen[name] = key
    for name, key in chosen.items():
        out.setdefault(name, raw[key])
    return out


def parse_mmcv_json(text: str, source: str = "") -> Run:
    run = Run(source)
    for record in json_records(text):
        mode = record.get("mode")
        epoch = record.get("epoch")
        if mode is None or not isinstance(epoch, int):
            continue  # the metadata line (env_info, config, seed, exp_name)
        values = _numbers(record)
        if mode == "val":
            metrics = {k: v for k, v in values.items() if k not in ("epoch", "iter", "lr", "time")}
            if any(k not in ("data_time", "memory") for k in metrics):
                run.val.setdefault(epoch, {}).update(canonical(metrics))
        elif mode == "train":
            run.train.append(values)
    return run


TEXT_TRAIN = re.compile(r"Epoch \[(\d+)\]\[(\d+)/(\d+)\]\s*(.*)")
_TEXT_VAL = re.compile(r"Epoch\(val\) \[(\d+)\]\[(\d+)(?:/\d+)?\]\s*(.*)")
_TEXT_PAIR = re.compile(
    r"([A-Za-z_][\w/.\-]*): (-?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|NaN|inf)),?(?=\s|$)"
)


def _pairs(text: str) -> dict[str, float]:
    values = {k: float(v) for k, v in _TEXT_PAIR.findall(text)}
    values.pop("eta", None)  # "eta: 2 days, 5:46:55" is not a number
    return values


def parse_mmcv_text(text: str, source: str = "") -> Run:
    """The `{timestamp}.log` text, for runs whose `.log.json` is missing."""
    run = Run(source)
    for line in complete_lines(text):
        if m := _TEXT_VAL.search(line):
            metrics = _pairs(m.group(3))
            if metrics:
                run.val.setdefault(int(m.group(1)), {}).update(canonical(metrics))
        elif m := TEXT_TRAIN.search(line):
            values = _pairs(m.group(4))
            values.update(epoch=float(m.group(1)), iter=float(m.group(2)))
            run.train.append(values)
            run.iters_per_epoch = int(m.group(3))
    run.grad = parse_grad_lines(text)
    return run


# Scalars that scaleout's own trainer (minibev) logs between validations, keyed by iteration:
# they are diagnostics (layout, gradient statistics, throughput), never validation metrics.
DIAGNOSTIC_PREFIXES = ("layout/", "grad_stats/", "epoch_stats/")


def is_diagnostic(values: Mapping[str, float]) -> bool:
    keys = [k for k in values if k != "step"]
    return bool(keys) and all(k.startswith(DIAGNOSTIC_PREFIXES) for k in keys)


GRAD_PREFIX = "grad_stats/"
GRAD_KEYS = ("grad_sq_local", "grad_sq_global", "batch_local", "batch_global")
_GRAD_LINE = re.compile(
    r"grad_stats iter (\d+): \|G_local\|\^2 (\S+) \(B=(\d+)\)\s+"
    r"\|G_global\|\^2 (\S+) \(B=(\d+)\)"
)


def grad_stat(step: float, values: Mapping[str, float]) -> GradStat | None:
    """One scalars.json grad_stats line as a GradStat; None when a key is missing."""
    try:
        v = [float(values[GRAD_PREFIX + k]) for k in GRAD_KEYS]
    except KeyError:
        return None
    return GradStat(int(step), v[0], v[1], v[2], v[3])


def parse_grad_lines(text: str) -> dict[int, GradStat]:
    """The `grad_stats iter N: ...` lines of a text log, by iteration."""
    out: dict[int, GradStat] = {}
    for line in complete_lines(text):
        if "grad_stats iter" not in line or not (m := _GRAD_LINE.search(line)):
            continue
        try:
            small, big = float(m.group(2)), float(m.group(4))
        except ValueError:
            continue
        it = int(m.group(1))
        out[it] = GradStat(it, small, big, float(m.group(3)), float(m.group(5)))
    return out


def grad_text_line(stat: GradStat) -> str:
    """The text-log line of one iteration's gradient statistics (parse_grad_lines reads it)."""
    return (
        f"grad_stats iter {stat.iter}: |G_local|^2 {stat.sq_small:.6g} (B={stat.b_small:.0f})  "
        f"|G_global|^2 {stat.sq_big:.6g} (B={stat.b_big:.0f})"
    )


def grad_scalars(stat: GradStat) -> dict[str, float]:
    """The scalars.json keys of one iteration's gradient statistics (without `step`)."""
    values = (stat.sq_small, stat.sq_big, stat.b_small, stat.b_big)
    return {GRAD_PREFIX + k: v for k, v in zip(GRAD_KEYS, values, strict=True)}


def parse_mmengine_scalars(text: str, source: str = "") -> Run:
    run = Run(source, global_iters=True)
    for record in json_records(text):
        values = _numbers(record)
        if "lr" in values or "loss" in values:
            run.train.append(values)
        elif is_diagnostic(values):
            stat = grad_stat(values.get("step", 0), values) if "step" in values else None
            if stat is not None:
                run.grad[stat.iter] = stat
        elif "step" in values:
            epoch = int(values.pop("step"))
            metrics = {k: v for k, v in values.items() if k not in ("data_time", "time")}
            if metrics:
                run.val.setdefault(epoch, {}).update(canonical(metrics))
    return run


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""  # rotated or removed between listing and reading


def merge(runs: Iterable[Run], *, global_batch: int | None = None) -> TrialMetrics:
    """One TrialMetrics from runs in time order: later runs win per epoch.

    Throughput skips each run's first train record, which carries start-up and cudnn
    warm-up; `time` in a train record is already the mean over its logging interval.
    """
    runs = list(runs)
    epochs: dict[int, dict[str, float]] = {}
    times: list[float] = []
    last: dict[str, float] = {}
    last_run: Run | None = None
    grad: dict[int, GradStat] = {}
    for run in runs:
        grad.update(run.grad)
        for epoch, metrics in run.val.items():
            epochs[epoch] = {**epochs.get(epoch, {}), **metrics}
        run_times = [r["time"] for r in run.train if _finite(r.get("time"))]
        times.extend(run_times[1:] if len(run_times) > 1 else run_times)
        if run.train:
            last, last_run = run.train[-1], run
    iters_done = _iters_done(runs, last, last_run)
    train = dict(last)
    if last:
        train["iter"] = float(iters_done)
    iter_time = sum(times) / len(times) if times else None
    samples_per_s = global_batch / iter_time if global_batch and iter_time else None
    return TrialMetrics(
        epochs=dict(sorted(epochs.items())),
        train=train,
        iters_done=iters_done,
        iter_time_s=iter_time,
        samples_per_s=samples_per_s,
        sources=tuple(run.source for run in runs),
        grad_stats=tuple(grad[i] for i in sorted(grad)),
    )


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def _iters_done(runs: list[Run], last: Mapping[str, float], last_run: Run | None) -> int:
    if not last or last_run is None:
        return 0
    inner = int(last.get("iter", 0))
    if last_run.global_iters:
        return inner
    epoch = int(last.get("epoch", 1))
    per_epoch = next((r.iters_per_epoch for r in reversed(runs) if r.iters_per_epoch), None)
    if per_epoch is None:
        # log.json has no epoch length: take the last logged iteration of an earlier epoch
        # (at most one logging interval short).
        seen = [int(r["iter"]) for run in runs for r in run.train if int(r["epoch"]) < epoch]
        per_epoch = max(seen, default=0)
    return (epoch - 1) * per_epoch + inner


def require(metrics: TrialMetrics, key: str) -> float:
    """The latest value of `key`, or a UsageError naming the logs that never reported it."""
    value = metrics.latest(key)
    if value is not None:
        return value
    where = ", ".join(metrics.sources) or "(no log files found)"
    seen = sorted({k for m in metrics.epochs.values() for k in m})
    detail = f"keys reported: {', '.join(seen[:12])}" if seen else "no validation results yet"
    raise UsageError(f"{where}: objective {key!r} never reported ({detail})")


# ---- the trial file: what read_metrics needs to know about the trial ------------------


def trial_file_text(name: str, params: TrialParams, layout: Layout) -> str:
    return json.dumps(
        {
            "name": name,
            "gpus": params.gpus,
            "samples_per_gpu": params.samples_per_gpu,
            "global_batch": params.global_batch,
            "world_size": layout.world_size,
        },
        indent=1,
        sort_keys=True,
    )


def read_global_batch(work_dir: Path) -> int | None:
    try:
        data = json.loads((work_dir / TRIAL_FILE).read_text())
        return int(data["global_batch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---- writing (fixtures, fake trainers) -------------------------------------------------


def mmcv_json_line(record: Mapping[str, Any]) -> str:
    """One log.json line as mmcv's TextLoggerHook writes it (NaN spelled NaN)."""
    return json.dumps(dict(record)) + "\n"


def mmcv_text_train_line(
    epoch: int, inner: int, per_epoch: int, values: Mapping[str, float]
) -> str:
    body = ", ".join(f"{k}: {v:.4g}" if k != "lr" else f"lr: {v:.3e}" for k, v in values.items())
    return f"Epoch [{epoch}][{inner}/{per_epoch}]\t{body}\n"


def mmcv_text_val_line(epoch: int, n: int, metrics: Mapping[str, float]) -> str:
    body = ", ".join(f"{k}: {v:.4f}" for k, v in metrics.items())
    return f"Epoch(val) [{epoch}][{n}]\t{body}\n"


def scalars_line(record: Mapping[str, Any]) -> str:
    return json.dumps(dict(record)) + "\n"
