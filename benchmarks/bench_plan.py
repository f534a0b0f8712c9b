"""Wall time of `scaleout plan` as a user runs it (a fresh process each time).

python benchmarks/bench_plan.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "bevformer_base.yaml (reference embedded)": ["--space", "search_spaces/bevformer_base.yaml"],
    "lr_scaling.yaml (reference from minibev config)": ["--space", "search_spaces/lr_scaling.yaml"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    print("| case | median s | min s | max s | runs |\n|---|---|---|---|---|")
    for label, extra in CASES.items():
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "scaleout", "plan", "--gpus", "160", *extra, "--json"],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - t0)
        print(
            f"| {label} | {statistics.median(times):.3f} | {min(times):.3f} | "
            f"{max(times):.3f} | {args.runs} |"
        )


if __name__ == "__main__":
    main()
