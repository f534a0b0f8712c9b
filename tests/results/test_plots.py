"""scaleout.results.plots on small hand-made frames: each plot draws what it says, none empty."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from scaleout.results import plots
from scaleout.results.queries import NoFinishedTrials

PLAN = {
    "rules": {"lr": {"sqrt": 2.8e-3, "linear": 4e-3, "reference": 2e-3}},
    "ranges": {
        "lr": {"low": 2.2e-3, "high": 5e-3, "log": True, "type": "float"},
        "warmup_iters": {"low": 3, "high": 6, "log": True, "type": "int"},
        "min_lr_ratio": {"low": 2.5e-4, "high": 8.8e-4, "log": True, "type": "float"},
    },
}


def frame(states=("COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "FAIL"), sweep="s16", gpus=16):
    rows = []
    origins = ["reference", "sqrt", "linear", "sampled", "sampled"]
    for i, state in enumerate(states):
        value = None if state == "FAIL" else 0.30 + 0.02 * i
        rows.append(
            {
                "sweep": sweep,
                "trial": i,
                "state": state,
                "origin": origins[i % len(origins)],
                "objective": value,
                "NDS": value,
                "lr": [2e-3, 2.8e-3, 4e-3, 3.3e-3, 4.5e-3][i % 5],
                "warmup_iters": [10, 6, 6, 4, 5][i % 5],
                "min_lr_ratio": [1e-3, 7e-4, 5e-4, 3e-4, 6e-4][i % 5],
                "gpus": gpus,
                "global_batch": gpus,
                "gpu_hours": [0.5, 0.4, 0.6, 0.2, 0.1][i % 5],
                "lr_reference": 2e-3,
            }
        )
    df = pd.DataFrame(rows)
    df["warmup_iters"] = df["warmup_iters"].astype("Int64")
    df.attrs = {"plan": PLAN, "objective": "NDS", "direction": "maximize", "sweep": sweep}
    return df


def epochs(df):
    rows = []
    for _, r in df[df["state"] != "FAIL"].iterrows():
        last = 2 if r["state"] == "PRUNED" else 4
        for e in range(1, last + 1):
            rows.append(
                {
                    "sweep": r["sweep"],
                    "trial": r["trial"],
                    "state": r["state"],
                    "origin": r["origin"],
                    "epoch": e,
                    "metric": "NDS",
                    "value": r["NDS"] * e / 4,
                }
            )
    return pd.DataFrame(rows)


def drawn(fig: Figure) -> int:
    ax = fig.axes[0]
    return len(ax.collections) + len(ax.lines) + len(ax.patches)


@pytest.mark.parametrize(
    "make",
    [
        lambda df: plots.nds_vs_lr(df),
        lambda df: plots.nds_vs_warmup(df),
        lambda df: plots.nds_vs_min_lr_ratio(df),
        lambda df: plots.learning_curves(epochs(df), df),
        lambda df: plots.pareto_front(df),
        lambda df: plots.param_importance(df),
    ],
    ids=["lr", "warmup", "min_lr", "curves", "pareto", "importance"],
)
def test_each_plot_draws_and_refuses_an_empty_one(make, tmp_path):
    fig = make(frame())
    assert isinstance(fig, Figure) and drawn(fig) > 0
    png = plots.save(fig, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    with pytest.raises(NoFinishedTrials, match="no finished trials yet"):
        make(frame(states=("FAIL", "RUNNING")))


def test_nds_vs_lr_marks_the_rules_on_a_log_axis_and_pruned_hollow():
    fig = plots.nds_vs_lr(frame())
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lbl.startswith("sqrt rule") for lbl in labels)
    assert any(lbl.startswith("linear rule") for lbl in labels)
    assert "sampled (pruned)" in labels
    rule_x = sorted(line.get_xdata()[0] for line in ax.lines)
    assert rule_x == pytest.approx([2e-3, 2.8e-3, 4e-3])


def test_learning_curves_show_pruned_trials():
    df = frame()
    fig = plots.learning_curves(epochs(df), df)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert "t003 sampled (pruned)" in labels
    pruned = next(ln for ln in fig.axes[0].lines if ln.get_label() == "t003 sampled (pruned)")
    assert pruned.get_linestyle() == "--" and list(pruned.get_xdata()) == [1, 2]


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([(1, 0.3), (2, 0.5), (3, 0.4)], [(1, 0.3), (2, 0.5)]),
        ([(1, 0.5), (2, 0.4)], [(1, 0.5)]),
        ([(2, 0.1), (1, 0.1), (3, 0.9)], [(1, 0.1), (3, 0.9)]),
    ],
)
def test_pareto_front(points, front):
    df = pd.DataFrame(points, columns=["cost", "value"])
    got = plots.pareto(df, "cost", "value")
    assert list(map(tuple, got.to_numpy().tolist())) == [tuple(map(float, p)) for p in front]


def test_importance_needs_two_different_values():
    df = frame(states=("COMPLETE", "FAIL"))
    with pytest.raises(NoFinishedTrials, match="at least two completed trials"):
        plots.param_importance(df)
    imp = plots.importances(frame())
    assert set(imp) == set(PLAN["ranges"]) and sum(imp.values()) == pytest.approx(1.0)


def test_scaling_table_and_plot_across_sweeps():
    both = pd.concat([frame(sweep="s8", gpus=8), frame(sweep="s32", gpus=32)], ignore_index=True)
    both.attrs = {"objective": "NDS", "direction": "maximize"}
    table = plots.scaling_table(both)
    assert list(table["gpus"]) == [8, 32]
    assert (table["tuned"] >= table["reference"]).all() and (table["gain"] >= 0).all()
    fig = plots.nds_vs_gpus(both)
    assert drawn(fig) >= 2
    with pytest.raises(NoFinishedTrials, match="none of the sweeps"):
        plots.scaling_table(frame(states=("FAIL",)))


def test_sweep_plots_leaves_out_what_the_data_cannot_support():
    df = frame(states=("COMPLETE", "PRUNED"))
    got = plots.sweep_plots(df, epochs(df))
    assert "param_importance" not in got and "nds_vs_lr" in got and "learning_curves" in got
