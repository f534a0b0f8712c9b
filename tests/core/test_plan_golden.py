"""The plan of each shipped space, as `scaleout plan --json` prints it, pinned.

A redesign of the planner must not move a range, a seed or a cost: these files were written
by the planner before the knob registry existed. A deliberate change rewrites them with
`python tests/core/test_plan_golden.py --update` and says why in its commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from scaleout.core.plan import plan_to_dict
from scaleout.sweep.session import build_plan

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden")
CASES = [(s, g) for s in ("lr_scaling", "bevformer_base") for g in (8, 80, 160)]
CASES += [("bevformer_base_coscaled", 160)]  # weight decay, beta2 and epochs co-scaled


def _plan_json(space: str, gpus: int) -> dict:
    plan, _, _ = build_plan(f"search_spaces/{space}.yaml", gpus)
    # Paths of the machine that wrote the plan are not part of it.
    text = json.dumps(plan_to_dict(plan), indent=2, sort_keys=True).replace(str(REPO), "<repo>")
    return json.loads(text)


@pytest.mark.parametrize(("space", "gpus"), CASES)
def test_shipped_plan_is_unchanged(space, gpus, monkeypatch):
    monkeypatch.chdir(REPO)
    want = json.loads((GOLDEN / f"plan_{space}_{gpus}g.json").read_text())
    assert _plan_json(space, gpus) == want


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    import os

    os.chdir(REPO)
    for space, gpus in CASES:
        out = GOLDEN / f"plan_{space}_{gpus}g.json"
        out.write_text(json.dumps(_plan_json(space, gpus), indent=2, sort_keys=True) + "\n")
        print("wrote", out)
