"""A trainer for the crash tests: a command trainer (docs/trainers.md) that starts in a blink.

    python toy_trainer.py --name t000 --epochs 2 --work-dir DIR [--resume]

Each epoch writes `ckpt.txt` (the epoch: the checkpoint), then one JSON line to
`metrics.jsonl` (the validation: NDS, mAP). `--fail-once NAME`: that trial's first attempt
dies after its epoch-1 checkpoint and before that epoch's validation (exit 1), so its retry
resumes at epoch 2 and epoch 1 is never validated. `--slow NAME`: that trial waits
`--slow-s` after each epoch, so the pruner sees its first epoch while it still runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SCORE = {"t000": 0.30, "t001": 0.40, "t002": 0.10}  # t002 is the worst: the pruner stops it


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--lr", type=float, default=0.0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fail-once", default="")
    p.add_argument("--slow", default="")
    p.add_argument("--slow-s", type=float, default=3.0)
    p.add_argument("--epoch-s", type=float, default=0.15)
    a = p.parse_args(argv)
    work = Path(a.work_dir)
    ckpt = work / "ckpt.txt"
    start = int(ckpt.read_text()) + 1 if a.resume and ckpt.exists() else 1
    score = SCORE.get(a.name, 0.2)
    for epoch in range(start, a.epochs + 1):
        time.sleep(a.epoch_s)
        ckpt.write_text(str(epoch))
        failed = work / ".failed_once"
        if a.name == a.fail_once and not failed.exists():
            failed.write_text("1")
            print("toy: killed after the epoch-1 checkpoint, before its validation", flush=True)
            return 1
        with open(work / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"epoch": epoch, "NDS": score * epoch, "mAP": score / 2}) + "\n")
        print(f"toy: epoch {epoch} NDS {score * epoch:.3f}", flush=True)
        if a.name == a.slow:
            time.sleep(a.slow_s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
