"""The trial frame and the leaderboard of a sweep made by hand (no MLflow): order, columns, and
the knobs the plan names showing up without a change to results."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from scaleout.results import frame, queries
from scaleout.results.leaderboard import leaderboard_rows, rich_table, to_csv, to_json
from scaleout.sweep.workspace import CORE_KNOBS, SweepStore

WEIGHT_DECAY = {"weight_decay": {"low": 0.01, "high": 0.1, "log": True, "type": "float"}}


def test_rows_in_leaderboard_order_from_the_study_alone(saved_sweep):
    d = saved_sweep()
    df = frame.load_sweep("hand", d.parent, mlflow_uri="")
    assert list(df.columns) == list(frame.COLUMNS) and df.attrs["knobs"] == CORE_KNOBS
    assert list(df["trial"]) == [1, 0, 2, 4, 3]
    assert df["rank"].head(2).tolist() == [1, 2] and df["rank"].iloc[2:].isna().all()
    pruned = df[df["state"] == "PRUNED"].iloc[0]
    assert pruned["objective"] == pytest.approx(0.12) and pruned["epochs"] == 2
    assert df["work_dir"].iloc[0] == str(d / "trials" / "t001")
    assert queries.totals(df) == {"complete": 2, "pruned": 1, "running": 1, "fail": 1}
    store = SweepStore.open("hand", d.parent)
    rows = leaderboard_rows(store.records(), store.objective, store.direction)
    assert [r["number"] for r in rows] == list(df["trial"])  # one order for both views
    # Cost and the reference: the golden plan's 0.032 GPU-hours a 24-epoch trial, estimated
    # (virtual GPUs), NDS 0.384 at 8 GPUs.
    best = df.iloc[0]
    assert best["pct_of_reference"] == pytest.approx(100 * 0.35 / 0.384)
    assert best["trial_equivalents"] == 1.0 and best["target_gpu_hours"] == pytest.approx(0.032)
    assert (
        best["target_gpu_hours_basis"] == "estimated" and best["compute_unit_here"] == "CPU-hours"
    )
    assert pruned["trial_equivalents"] == pytest.approx(2 / 24)
    running = df[df["state"] == "RUNNING"].iloc[0]  # its epoch so far, priced as the others
    assert running["trial_equivalents"] == pytest.approx(1 / 24)
    assert running["target_gpu_hours"] == pytest.approx(0.032 / 24)
    assert pd.isna(running["compute_hours_here"])
    c = queries.cost(df)
    assert c["trial_equivalents"] == pytest.approx(2 + 4 / 24)
    assert c["target_gpu_hours"] == pytest.approx(0.032 * (2 + 4 / 24))
    assert (c["target_gpu_hours_basis"], c["compute_unit_here"]) == ("estimated", "CPU-hours")
    assert df.attrs["headline"]["recovered_share"] == pytest.approx(0.05 / 0.084)


def test_epochs_without_mlflow_are_the_studys_intermediate_values(saved_sweep):
    ep = frame.load_epochs("hand", saved_sweep().parent, mlflow_uri="")
    assert list(ep.columns) == list(frame.EPOCH_COLUMNS)
    assert list(zip(ep["trial"], ep["epoch"], strict=True)) == [(2, 1), (2, 2), (4, 1)]


def test_a_new_knob_in_the_plan_shows_up_everywhere(saved_sweep):
    d = saved_sweep(ranges=WEIGHT_DECAY, fixed={"seed": 3})
    df = frame.load_sweep("hand", d.parent, mlflow_uri="")
    knobs = (*CORE_KNOBS, "weight_decay", "seed")
    assert df.attrs["knobs"] == knobs and list(df.columns) == list(frame.columns(knobs))
    assert df["weight_decay"].iloc[0] == pytest.approx(0.055) and (df["seed"] == 3).all()
    assert "weight_decay" in queries.leaderboard(df)
    table = queries.best_vs_rules(df)
    assert list(table.index) == ["lr", "warmup_iters", "min_lr_ratio", "weight_decay", "NDS"]
    store = SweepStore.open("hand", d.parent)
    rows = leaderboard_rows(store.records(), "NDS", "maximize", knobs=store.knobs)
    header = next(csv.reader(io.StringIO(to_csv(rows, store.knobs))))
    assert header[8:13] == ["lr", "warmup_iters", "min_lr_ratio", "weight_decay", "seed"]
    assert json.loads(to_json(rows, store.knobs))[0]["weight_decay"] == pytest.approx(0.055)
    titles = [c.header for c in rich_table(rows, "NDS", knobs=store.knobs).columns]
    assert "weight_decay" in titles and "warmup" in titles


def test_a_searched_knob_gets_its_plot(saved_sweep):
    from scaleout.results import plots

    d = saved_sweep(ranges=WEIGHT_DECAY)
    df = frame.load_sweep("hand", d.parent, mlflow_uri="")
    got = plots.sweep_plots(df, frame.load_epochs("hand", d.parent, mlflow_uri=""))
    assert list(got)[:3] == ["nds_vs_lr", "nds_vs_warmup", "nds_vs_min_lr_ratio"]
    assert "nds_vs_weight_decay" in got and got["nds_vs_weight_decay"].axes[0].get_xscale() == "log"


def test_the_notebook_api_is_light_to_import():
    code = (
        "import sys, scaleout.results as r; "
        "assert 'matplotlib' not in sys.modules and 'pandas' not in sys.modules; "
        "from scaleout.results import load_sweep, load_epochs, load_sweeps, NoFinishedTrials; "
        "assert 'matplotlib' not in sys.modules; print(load_sweep.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "scaleout.results.frame"
