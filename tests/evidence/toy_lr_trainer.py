"""A command trainer whose NDS peaks at a known lr for each global batch (tests/evidence):
lr_opt(B) = 0.01 x B^0.6, NDS = 0.5 exp(-(ln lr - ln lr_opt)^2 / (2 x 0.5^2)).

    python toy_lr_trainer.py --lr LR --global-batch B --epochs E --work-dir DIR [--resume]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ALPHA = 0.6
LR_AT_1 = 0.01


def nds(lr: float, batch: int) -> float:
    opt = LR_AT_1 * batch**ALPHA
    return 0.5 * math.exp(-((math.log(lr) - math.log(opt)) ** 2) / (2 * 0.5**2))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--global-batch", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    work = Path(a.work_dir)
    score = nds(a.lr, a.global_batch)
    for epoch in range(1, a.epochs + 1):
        (work / "ckpt.txt").write_text(str(epoch))
        with open(work / "metrics.jsonl", "a") as f:
            f.write(
                json.dumps({"epoch": epoch, "NDS": score * epoch / a.epochs, "mAP": score / 2})
                + "\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
