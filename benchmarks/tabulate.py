"""Tabulate minibev `small` at 160 virtual GPUs over an lr x warmup x lr-floor grid (issue 14).

The table is a blackbox for testing search strategies without training: benchmarks/blackbox.py
replays it (interpolating between grid points, adding measured seed noise), so a sampler or
pruner can be run thousands of times against real minibev learning curves in seconds.

    nice -n 10 python benchmarks/tabulate.py --jobs 2 --held-out      # grid, then held-out runs
    python benchmarks/tabulate.py --export                            # tables from what is done

Run it with the minibev snapshot first on the path (`PYTHONPATH=/path/to/snapshot`, cwd there):
the runs train that checkout's scaleout.minibev and record its git revision.

The grid (160 GPUs x 1 sample = k 20 over the 8-GPU reference; 10 iterations an epoch, 24
epochs = 240 iterations; sqrt rule lr 8.94e-3, linear 4e-2):

- lr: 10 values log-spaced from 1.5e-3 (below the reference 2e-3) to 6e-2 (above linear);
- warmup_iters: 5, 24, 48 (48 is the planner's 20% cap of 240);
- min_lr_ratio (the cosine's eta_min_ratio): 1e-3 (the preset's), 1e-5;
- training seeds 0 and 1 (the data split is fixed by the dataset seed),

120 runs. `--held-out` adds 5 runs at off-grid points (geometric lr midpoints, warmup 12 or
36, min_lr_ratio 1e-4) that the blackbox must predict without having seen them.

Resumable: each finished run is appended as one JSON line to {--out}/results.jsonl (default
/tmp/scaleout-tabulate, outside the repository). A restart skips every run recorded there
(failed ones too, so a deterministic failure is not retried forever: `--retry-failed`) and
redoes any other from scratch, deleting what a killed attempt left in its work dir.

At the end, or with `--export`, the recorded runs are written to benchmarks/data/ as
minibev_small_160g.csv.gz (grid) and minibev_small_160g_heldout.csv.gz, one row per run and
epoch (long format: a pandas groupby replays it), each with a .json sidecar that holds the
command, the snapshot's git revision, the date, the grid, the seeds and the wall-time summary.

CSV columns: lr, warmup_iters, min_lr_ratio, seed (the run's point), epoch (1-based),
NDS, mAP (validation after that epoch), wall_s (the whole run's wall-clock seconds, repeated on
each of its rows). Runs that failed are left out of the CSV and listed in the sidecar.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import io
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

PRESET = "small"
GPUS = 160
LR_RANGE = (1.5e-3, 6e-2)
LR_COUNT = 10
WARMUPS = (5, 24, 48)
MIN_LR_RATIOS = (1e-3, 1e-5)
SEEDS = (0, 1)
DATA = Path(__file__).resolve().parent / "data"
STEM = f"minibev_{PRESET}_{GPUS}g"
COLUMNS = ("lr", "warmup_iters", "min_lr_ratio", "seed", "epoch", "NDS", "mAP", "wall_s")


def lr_grid(lo: float = LR_RANGE[0], hi: float = LR_RANGE[1], n: int = LR_COUNT) -> list[float]:
    """Log-spaced lrs, rounded to 4 significant digits so that names and CSVs stay readable."""
    return [float(f"{lo * (hi / lo) ** (i / (n - 1)):.4g}") for i in range(n)]


@dataclass(frozen=True)
class Point:
    """One training run: a grid point and a training seed."""

    lr: float
    warmup_iters: int
    min_lr_ratio: float
    seed: int

    @property
    def key(self) -> str:
        """Stable name: the work dir and the identity a restart matches results by."""
        return f"lr{self.lr:.4g}-w{self.warmup_iters}-m{self.min_lr_ratio:.0e}-s{self.seed}"

    def options(self) -> list[str]:
        """--cfg-options as benchmarks/minibev_calibration.py sets them (same keys)."""
        return [
            f"virtual_gpus={GPUS}",
            f"optim_wrapper.optimizer.lr={self.lr!r}",
            f"param_scheduler.0.end={self.warmup_iters}",
            f"param_scheduler.1.eta_min_ratio={self.min_lr_ratio!r}",
            f"randomness.seed={self.seed}",
        ]


def grid_points() -> list[Point]:
    """The 120 grid runs, the (warmup 24, min_lr 1e-3) slice first.

    That slice is the sqrt-rule neighbourhood the calibration measured, so partial results are
    comparable with benchmarks/RESULTS.md early; both seeds of a point run back to back.
    """
    slices = [(w, m) for m in MIN_LR_RATIOS for w in WARMUPS]
    slices.sort(key=lambda s: s != (24, 1e-3))
    return [Point(lr, w, m, s) for w, m in slices for lr in lr_grid() for s in SEEDS]


def held_out_points() -> list[Point]:
    """5 off-grid runs: every coordinate lies between grid values (lr at geometric midpoints,
    warmup 12 or 36, min_lr_ratio 1e-4, the log-midpoint of the two floors)."""
    lrs = lr_grid()

    def mid(i: int) -> float:
        return float(f"{math.sqrt(lrs[i] * lrs[i + 1]):.4g}")

    return [
        Point(mid(2), 36, 1e-4, 0),
        Point(mid(3), 12, 1e-4, 1),
        Point(mid(4), 36, 1e-4, 1),  # 9.49e-3, next to the sqrt rule
        Point(mid(5), 12, 1e-4, 0),
        Point(mid(6), 36, 1e-4, 0),
    ]


def revision(package_dir: Path) -> str:
    """The git revision of the checkout that holds the scaleout package being trained."""
    try:
        out = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        rev = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(package_dir), "status", "--porcelain", "--", "scaleout"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def execute(point: Point, config: Path, out: Path, rev: str, jobs: int) -> dict:
    """Train one run from scratch and return its record (per-epoch NDS/mAP, wall time)."""
    from scaleout.minibev.runs import MAP, NDS, read_scalars, run, val_lines

    work = out / "runs" / point.key
    shutil.rmtree(work, ignore_errors=True)  # whatever a killed attempt left behind
    work.mkdir(parents=True)
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    try:
        proc = run(config, work, *point.options(), threads=1, timeout=7200)
    except subprocess.TimeoutExpired as e:  # recorded as a failure, not the end of the table
        proc = subprocess.CompletedProcess(e.cmd, -9, "", f"timed out after {e.timeout} s")
    wall = time.monotonic() - start
    row: dict = {
        "key": point.key,
        **asdict(point),
        "gpus": GPUS,
        "wall_s": round(wall, 2),
        "returncode": proc.returncode,
        "revision": rev,
        "jobs": jobs,
        "nice": os.nice(0),
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    vals = val_lines(read_scalars(work)) if proc.returncode == 0 else []
    if proc.returncode != 0 or not vals:
        row["error"] = (proc.stderr or proc.stdout)[-800:]
        return row
    row["epochs"] = [int(v["step"]) for v in vals]
    row["nds_by_epoch"] = [round(float(v[NDS]), 5) for v in vals]
    row["map_by_epoch"] = [round(float(v[MAP]), 5) for v in vals]
    row["NDS"], row["mAP"] = row["nds_by_epoch"][-1], row["map_by_epoch"][-1]
    for ckpt in work.glob("*.pth"):  # checkpoints are only for --resume; the curves are kept
        ckpt.unlink()
    return row


def recorded(path: Path) -> dict[str, dict]:
    """Runs in results.jsonl by key, the last record winning; a line cut short is skipped."""
    rows: dict[str, dict] = {}
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[row["key"]] = row
    return rows


def ok(row: dict) -> bool:
    return row.get("returncode") == 0 and "nds_by_epoch" in row


def tabulate(points: list[Point], out: Path, jobs: int, retry_failed: bool) -> None:
    """Run every point not yet recorded, `jobs` at a time, appending each as it finishes."""
    import scaleout
    from scaleout.minibev.runs import config_path

    results = out / "results.jsonl"
    with (out / "commands.txt").open("a") as f:  # the sidecar cites the commands that ran
        f.write(_command() + "\n")
    done = recorded(results)
    todo = [p for p in points if p.key not in done or (retry_failed and not ok(done[p.key]))]
    rev = revision(Path(scaleout.__file__).resolve().parent)
    print(
        f"scaleout from {Path(scaleout.__file__).resolve().parent} (rev {rev}); "
        f"{len(points) - len(todo)}/{len(points)} recorded, {len(todo)} to run, {jobs} at a time",
        flush=True,
    )
    if results.exists() and not results.read_bytes().endswith(b"\n"):
        with results.open("ab") as f:  # a line cut short by a kill must not swallow the next
            f.write(b"\n")
    config, start = config_path(PRESET), time.monotonic()
    with ThreadPoolExecutor(jobs) as pool, results.open("a") as log:
        futures: dict[Future, Point] = {
            pool.submit(execute, p, config, out, rev, jobs): p for p in todo
        }
        for n, fut in enumerate(as_completed(futures), 1):
            row = fut.result()
            log.write(json.dumps(row) + "\n")
            log.flush()
            elapsed = time.monotonic() - start
            eta = elapsed / n * (len(todo) - n)
            status = f"NDS {row['NDS']:.3f}" if ok(row) else f"FAILED rc={row['returncode']}"
            print(
                f"[{len(points) - len(todo) + n}/{len(points)}] {row['key']:<28} {status} "
                f"{row['wall_s']:.0f}s | elapsed {_hms(elapsed)}, ETA {_hms(eta)} "
                f"(~{_clock(eta)})",
                flush=True,
            )


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _clock(seconds_from_now: float) -> str:
    return (datetime.datetime.now() + datetime.timedelta(seconds=seconds_from_now)).strftime(
        "%H:%M"
    )


def csv_bytes(rows: Iterable[dict]) -> bytes:
    """The long table, gzipped with a zero mtime so the same runs give the same bytes."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        for epoch, nds, map_ in zip(r["epochs"], r["nds_by_epoch"], r["map_by_epoch"], strict=True):
            point = [r["lr"], r["warmup_iters"], r["min_lr_ratio"], r["seed"]]
            writer.writerow([*point, epoch, nds, map_, r["wall_s"]])
    return gzip.compress(text.getvalue().encode(), mtime=0)


def export(points: list[Point], out: Path, stem: str, kind: str, grid: dict) -> None:
    """Write {stem}.csv.gz and {stem}.json from the runs of `points` recorded in `out`."""
    done = recorded(out / "results.jsonl")
    rows = [done[p.key] for p in points if p.key in done and ok(done[p.key])]
    failed = [done[p.key] for p in points if p.key in done and not ok(done[p.key])]
    if not rows:
        print(f"{kind}: no finished runs in {out}; nothing written")
        return
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / f"{stem}.csv.gz").write_bytes(csv_bytes(rows))
    walls = [r["wall_s"] for r in rows]
    epochs = {len(r["epochs"]) for r in rows}
    sidecar = {
        "kind": kind,
        "commands": _commands(out),
        "export_command": _command(),
        "results": str(out / "results.jsonl"),
        "preset": PRESET,
        "virtual_gpus": GPUS,
        "samples_per_gpu": 1,
        "epochs": sorted(epochs),
        "iterations_per_epoch": 10,
        "minibev_revision": sorted({r["revision"] for r in rows}),
        "exported": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "first_run_finished": min(r["finished"] for r in rows),
        "last_run_finished": max(r["finished"] for r in rows),
        "grid": grid,
        "seeds": sorted({r["seed"] for r in rows}),
        "runs_planned": len(points),
        "runs_done": len(rows),
        "complete": len(rows) == len(points),
        "failed": [{"key": r["key"], "returncode": r["returncode"]} for r in failed],
        "columns": {
            "lr": "AdamW base lr (the image backbone trains at 0.5x)",
            "warmup_iters": "LinearLR warmup from lr/3, in iterations",
            "min_lr_ratio": "cosine eta_min_ratio: the final lr is lr x this",
            "seed": "training seed (randomness.seed); the data split is fixed",
            "epoch": "1-based epoch after which the validation ran (10 iterations each)",
            "NDS": "validation NDS after that epoch",
            "mAP": "validation mAP after that epoch",
            "wall_s": "the whole run's wall-clock seconds (train + 24 validations + startup)",
        },
        "wall_s": {
            "note": "wall clock on a shared 2-core machine, 1 thread a run, other jobs beside "
            "(noisy); load_avg_mean: the 1-min load average at runs' starts and ends",
            "jobs": sorted({r["jobs"] for r in rows}),
            "nice": sorted({r["nice"] for r in rows}),
            "mean": round(statistics.mean(walls), 1),
            "median": round(statistics.median(walls), 1),
            "min": round(min(walls), 1),
            "max": round(max(walls), 1),
            "total": round(sum(walls), 1),
            "load_avg_mean": round(statistics.mean(sum(r["load_avg"]) / 2 for r in rows), 2),
            "per_epoch_mean": round(
                statistics.mean(r["wall_s"] / len(r["epochs"]) for r in rows), 2
            ),
        },
    }
    (DATA / f"{stem}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    print(f"{kind}: {len(rows)}/{len(points)} runs -> {DATA / stem}.csv.gz (+ .json)")


def _command() -> str:
    path = os.environ.get("PYTHONPATH")
    env = f"PYTHONPATH={shlex.quote(path)} " if path else ""
    return f"cd {shlex.quote(os.getcwd())} && " + env + shlex.join(["python", *sys.argv])


def _commands(out: Path) -> list[str]:
    """The distinct tabulation commands run in `out`, first use first (restarts repeat one)."""
    path = out / "commands.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return list(dict.fromkeys(line for line in lines if line.strip()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        default=Path("/tmp/scaleout-tabulate"),
        help="work dir: results.jsonl and the runs (default /tmp/scaleout-tabulate)",
    )
    p.add_argument("--jobs", type=int, default=2, help="runs at once, 1 CPU thread each")
    p.add_argument("--held-out", action="store_true", help="also the 5 off-grid runs (after)")
    p.add_argument("--held-out-only", action="store_true", help="only the 5 off-grid runs")
    p.add_argument("--export", action="store_true", help="only write the tables of --out")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid, held = grid_points(), held_out_points()
    if not args.export:
        if not args.held_out_only:
            tabulate(grid, args.out, args.jobs, args.retry_failed)
        if args.held_out or args.held_out_only:
            tabulate(held, args.out, args.jobs, args.retry_failed)
    grid_axes = {
        "lr": lr_grid(),
        "warmup_iters": list(WARMUPS),
        "min_lr_ratio": list(MIN_LR_RATIOS),
    }
    export(grid, args.out, STEM, "grid", grid_axes)
    held_axes = {"points": [asdict(q) for q in held]}
    export(held, args.out, f"{STEM}_heldout", "held-out", held_axes)


if __name__ == "__main__":
    main()
