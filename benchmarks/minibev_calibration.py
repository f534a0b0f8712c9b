"""Calibrate a minibev preset: does it show the large-batch effect scaleout exists to fix?

For each GPU count and seed this trains the preset through the real entry point with three
recipes and prints a markdown table of the final NDS/mAP:

- reference: the preset's own recipe (`reference` in the config), unchanged at every GPU count;
- sqrt:      lr x sqrt(k), k = global batch / reference global batch;
- linear:    lr x k;

where the scaled recipes use a "sensible" warmup: the reference warmup kept fixed in epochs
(warmup_iters / k) but never shorter than 10% of the run's iterations (the tuned BEVFormer
160-GPU point warmed up for 14%).

    python benchmarks/minibev_calibration.py --preset small --gpus 8 160 --seeds 0 1 2 --jobs 2

`--epochs N` trains every run for N epochs instead of the preset's (the recipe otherwise
unchanged), e.g. 24 for the long form of search_spaces/lr_scaling_long.yaml.

Runs go to --out (default: a temporary directory); results are appended to results.jsonl there.
Timings are wall-clock on a shared machine and noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from mmengine.config import Config

from scaleout.minibev.runs import config_path, final_metrics, read_scalars, run, val_lines

RECIPES = ("reference", "sqrt", "linear")


@dataclass(frozen=True)
class Trial:
    recipe: str
    gpus: int
    seed: int
    lr: float
    warmup_iters: int
    total_iters: int
    epochs: int

    @property
    def name(self) -> str:
        return f"{self.recipe}-g{self.gpus}-s{self.seed}"


def plan(cfg: Config, gpus: list[int], seeds: list[int], epochs: int | None = None) -> list[Trial]:
    ref = cfg.reference
    per_gpu = cfg.train_dataloader.batch_size
    epochs = epochs or ref.epochs
    trials = []
    for g in gpus:
        k = g * per_gpu / (ref.gpus * ref.samples_per_gpu)
        total = epochs * (ref.train_samples // (g * per_gpu))
        sensible = max(math.ceil(ref.warmup_iters / k), math.ceil(0.1 * total))
        recipes = {
            "reference": (ref.lr, ref.warmup_iters),
            "sqrt": (ref.lr * math.sqrt(k), sensible),
            "linear": (ref.lr * k, sensible),
        }
        for recipe, (lr, warmup) in recipes.items():
            if recipe != "reference" and k == 1:
                continue  # at the reference batch the scaled recipes are the reference
            trials += [Trial(recipe, g, s, lr, warmup, total, epochs) for s in seeds]
    return trials


def execute(trial: Trial, config: Path, out: Path, threads: int) -> dict:
    work = out / trial.name
    options = [
        f"virtual_gpus={trial.gpus}",
        f"optim_wrapper.optimizer.lr={trial.lr!r}",
        f"param_scheduler.0.end={trial.warmup_iters}",
        f"randomness.seed={trial.seed}",
        f"train_cfg.max_epochs={trial.epochs}",
    ]
    start = time.monotonic()
    proc = run(config, work, *options, threads=threads, timeout=1800)
    wall = time.monotonic() - start
    row = {**asdict(trial), "wall_s": round(wall, 1), "returncode": proc.returncode}
    if proc.returncode != 0:
        row["error"] = proc.stderr[-500:]
        return row
    row.update(final_metrics(work))
    row["nds_by_epoch"] = [
        round(v["NuScenes metric/pred_instances_3d_NuScenes/NDS"], 4)
        for v in val_lines(read_scalars(work))
    ]
    return row


def table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["recipe"], r["gpus"]), []).append(r)
    order = {name: i for i, name in enumerate(RECIPES)}
    keys = sorted(groups, key=lambda k: (k[1], order[k[0]]))
    ref_nds = statistics.mean(r.get("NDS", math.nan) for r in groups[keys[0]])
    lines = [
        "| recipe | GPUs x 1 | lr | warmup / total iters | NDS mean ± sd | vs 8-GPU ref "
        "| NDS per seed | mAP | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for recipe, gpus in keys:
        rs = groups[(recipe, gpus)]
        nds = [r.get("NDS", math.nan) for r in rs]
        sd = statistics.stdev(nds) if len(nds) > 1 else 0.0
        mean = statistics.mean(nds)
        lines.append(
            f"| {recipe} | {gpus} | {rs[0]['lr']:.3g} "
            f"| {rs[0]['warmup_iters']} / {rs[0]['total_iters']} "
            f"| {mean:.3f} ± {sd:.3f} | {100 * (mean / ref_nds - 1):+.0f}% "
            f"| {', '.join(f'{x:.3f}' for x in nds)} "
            f"| {statistics.mean(r.get('mAP', math.nan) for r in rs):.3f} "
            f"| {statistics.mean(r['wall_s'] for r in rs):.0f} |"
        )
    return "\n".join(lines)


def rows_from(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--gpus", type=int, nargs="+", default=[8, 160])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    p.add_argument(
        "--epochs", type=int, default=None, help="train every run this long (default: the preset's)"
    )
    p.add_argument("--jobs", type=int, default=1, help="runs at once (each gets 2 // jobs threads)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--table-only", action="store_true", help="print the table of --out's results")
    args = p.parse_args()
    if args.table_only:
        print(table(rows_from(args.out / "results.jsonl")))
        return
    config = config_path(args.preset)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"minibev-{args.preset}-"))
    out.mkdir(parents=True, exist_ok=True)
    trials = [
        t
        for t in plan(Config.fromfile(str(config)), args.gpus, args.seeds, args.epochs)
        if t.recipe in args.recipes
    ]
    threads = max(1, 2 // args.jobs)
    rows = []
    with ThreadPoolExecutor(args.jobs) as pool, (out / "results.jsonl").open("a") as log:
        for row in pool.map(lambda t: execute(t, config, out, threads), trials):
            rows.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(
                f"{row['recipe']:>9} gpus={row['gpus']:<4} seed={row['seed']} "
                f"NDS={row.get('NDS', float('nan')):.3f} wall={row['wall_s']}s",
                flush=True,
            )
    print(f"\npreset {args.preset}, runs in {out}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
