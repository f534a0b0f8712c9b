"""`scaleout probe`: a real minibev (tiny) run through the local executor and the mmengine
adapter, probe.json, --from-run, the plan's noise rule reading it, and the bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def scaleout(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "scaleout", *map(str, args)], capture_output=True, text=True,
        timeout=300, cwd=cwd, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """One probe of the tiny recipe at its 8 GPUs (60 iterations in all, seeded: the same
    statistics on every run), cancelled once past 50."""
    root = tmp_path_factory.mktemp("probe")
    text = (REPO / "search_spaces" / "lr_scaling.yaml").read_text()
    space = root / "tiny.yaml"
    space.write_text(text.replace("  preset: small", "  preset: tiny"))
    r = scaleout("probe", "--space", space, "--gpus", "8", "--iters", "50", "--out",
                 root / "probe.json", "--work-dir", root / "run", "--json", cwd=root)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return root, space, r


@pytest.mark.slow
def test_the_probe_writes_b_simple_with_its_band(probed):
    root, space, r = probed
    doc = json.loads((root / "probe.json").read_text())
    assert json.loads(r.stdout) == doc
    assert doc["schema"] == "scaleout.probe/1"
    lo, hi = doc["band"]
    assert 0 < lo <= doc["b_simple"] <= hi
    assert doc["unit"] == "samples (global batch)" and "bootstrap" in doc["band_method"]
    assert (doc["batch_small"], doc["batch_big"], doc["gpus"], doc["global_batch"]) == (1, 8, 8, 8)
    # MiniBEVGradStatsHook logs every 5th iteration from the first: 1, 6, ..., 46
    assert doc["points"] == 10 and doc["iterations"] == {"first": 1, "last": 46}
    run = doc["run"]
    assert run["how"] == "cancelled" and 50 <= run["iters_done"] <= 60  # tiny runs 60
    assert "scaleout.minibev.train" in run["trainer_argv"]
    assert doc["command"].startswith(f"scaleout probe --space {space} --iters 50 --gpus 8")
    assert doc["reference"] == {"gpus": 8, "samples_per_gpu": 1, "global_batch": 8, "lr": 2e-3}
    assert "measured" in doc["basis"]


@pytest.mark.slow
def test_from_run_reads_the_same_statistics(probed):
    root, space, _ = probed
    r = scaleout("probe", "--space", space, "--from-run", root / "run", "--iters", "50",
                 "--out", root / "again.json", cwd=root)  # fmt: skip
    assert r.returncode == 0, r.stderr
    first = json.loads((root / "probe.json").read_text())
    again = json.loads((root / "again.json").read_text())
    assert again["b_simple"] == first["b_simple"] and again["band"] == first["band"]
    assert again["run"]["how"] == "read"
    assert f"wrote {root / 'again.json'}" in r.stdout and "B_simple = " in r.stdout


@pytest.mark.slow
def test_too_few_iterations_are_refused_and_nothing_is_written(probed):
    root, space, _ = probed
    out = root / "few.json"
    r = scaleout("probe", "--space", space, "--from-run", root / "run", "--iters", "12",
                 "--out", out, cwd=root)  # fmt: skip
    assert r.returncode == 2
    assert "at least 8 are needed for a stable estimate" in r.stderr
    assert "--iters" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.slow
def test_the_plan_takes_b_noise_from_the_probe(probed):
    root, space, _ = probed
    noisy = root / "noisy.yaml"
    text = space.read_text().replace(
        "    rules: [sqrt, linear]\n",
        "    rules: [sqrt, linear, {rule: noise, probe: probe.json}]\n",
    )
    assert text != space.read_text()
    noisy.write_text(text)
    # tiny at 16 GPUs: 30 iterations (at 160 one per epoch leaves the warmup no room)
    r = scaleout("plan", "--gpus", "16", "--space", noisy, "--json", cwd=REPO)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    b = json.loads((root / "probe.json").read_text())["b_simple"]
    ns = plan["noise_scale"]
    assert ns["b_noise"] == pytest.approx(b, rel=1e-3)
    assert ns["target_global_batch"] == 16 and ns["beyond_critical"] == (ns["b_noise"] < 16)
    assert any(k.startswith("noise(B=") for k in plan["rules"]["lr"])
    assert any("critical batch ~B_noise" in n for n in plan["notes"])
    r = scaleout("plan", "--gpus", "16", "--space", noisy, cwd=REPO)
    assert "critical batch ~B_noise" in " ".join(r.stdout.split())


def test_a_trainer_without_the_hook_is_told_how_to_enable_it(tmp_path):
    # BEVFormer's logs (tests/fixtures/logs/bevformer) carry no gradient statistics.
    out = tmp_path / "probe.json"
    r = scaleout("probe", "--space", REPO / "search_spaces" / "bevformer_base.yaml",
                 "--repo", FIXTURES / "bevformer", "--from-run", FIXTURES / "logs" / "bevformer",
                 "--out", out, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "the trainer's logs carry no gradient statistics" in r.stderr
    assert "custom_imports = dict(imports=['scaleout.hooks.mmcv_grad_stats']" in r.stderr
    assert "custom_hooks = [dict(type='ScaleoutGradStatsHook', interval=10)]" in r.stderr
    assert not out.exists()


def test_bad_flags_are_refused_before_anything_runs(tmp_path):
    space = REPO / "search_spaces" / "lr_scaling.yaml"
    r = scaleout("probe", "--space", space, "--out", tmp_path / "nowhere" / "p.json", cwd=tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = scaleout("probe", "--space", space, "--from-run", tmp_path / "missing", "--out",
                 tmp_path / "p.json", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2 and "no such directory" in r.stderr
    assert not (tmp_path / "p.json").exists()
