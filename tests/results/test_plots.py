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
                "target_gpu_hours": [0.5, 0.4, 0.6, 0.2, 0.1][i % 5],
                "target_gpu_hours_basis": "estimated",
                "trial_equivalents": 1.0 if state == "COMPLETE" else 0.25,
                "lr_reference": 2e-3,
            }
        )
    df = pd.DataFrame(rows)
    df["warmup_iters"] = df["warmup_iters"].astype("Int64")
    done = df[df["state"] == "COMPLETE"].sort_values("NDS", ascending=False)
    ranks = pd.Series(range(1, len(done) + 1), index=done.index, dtype="Int64")
    df["rank"] = ranks.reindex(df.index)
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


def test_learning_curves_draw_the_best_trial_so_it_stands_out():
    df = frame()
    fig = plots.learning_curves(epochs(df), df)
    ax = fig.axes[0]
    best = int(df.loc[df["rank"] == 1, "trial"].iloc[0])
    lines = {ln.get_label(): ln for ln in ax.lines}
    (label,) = [lbl for lbl in lines if lbl.startswith("best: ")]
    assert label.startswith(f"best: t{best:03d}")
    others = [ln.get_linewidth() for lbl, ln in lines.items() if lbl != label and lbl[0] == "t"]
    assert lines[label].get_linewidth() > 2 * max(others)
    assert any(t.get_text().startswith(f"best: t{best:03d}") for t in ax.texts)


def test_importance_from_few_trials_carries_a_caveat():
    fig = plots.param_importance(frame())
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("caveat: from 3 completed trials" in t for t in texts)
    assert "rough guide" in fig.axes[0].get_title()


def _crowded(n=14):
    """Many completed trials at nearly the same cost and value, and pruned cheap ones."""
    rows = []
    for i in range(n):
        pruned = i % 4 == 3
        rows.append(
            {
                "sweep": "s",
                "trial": i,
                "state": "PRUNED" if pruned else "COMPLETE",
                "origin": "sampled",
                "objective": 0.30 + 0.002 * i,
                "NDS": 0.30 + 0.002 * i,
                "gpus": 160,
                "target_gpu_hours": (0.01 if pruned else 0.032) + 0.0005 * i,
                "target_gpu_hours_basis": "estimated",
                "trial_equivalents": 0.25 if pruned else 1.0,
            }
        )
    df = pd.DataFrame(rows)
    df.attrs = {"objective": "NDS", "direction": "maximize"}
    return df


def test_pareto_front_leaves_pruned_trials_off_and_its_labels_do_not_overlap():
    df = _crowded()
    fig = plots.pareto_front(df)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "GPU-hours at 160 GPUs per trial (estimated)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "pruned (stopped early; not on the front)" in legend
    front = plots.pareto(df[df["state"] == "COMPLETE"], "target_gpu_hours", "NDS")
    assert set(df.loc[front.index, "state"]) == {"COMPLETE"}
    ringed = next(c for c in ax.collections if c.get_label().startswith("Pareto front"))
    assert len(ringed.get_offsets()) == len(front)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text().startswith("t")]
    assert len(boxes) >= len(front)  # the front's labels are the ones kept
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), "two labels overlap"


def test_pareto_without_a_cost_basis_uses_the_compute_spent_here():
    df = _crowded().drop(columns=["target_gpu_hours", "target_gpu_hours_basis"])
    df["compute_hours_here"] = 0.1
    df["compute_unit_here"] = "CPU-hours"
    assert plots.pareto_front(df).axes[0].get_xlabel() == "CPU-hours spent here per trial"


def test_nds_per_gpu_count_shows_the_reference_level():
    df = frame(gpus=160)
    df.attrs["plan"] = {**PLAN, "reference": {"gpus": 8, "metric": {"NDS": 0.384}}}
    table = plots.scaling_table(df)
    row = table.iloc[0]
    assert (row["reference_gpus"], row["reference_own"], row["reference"]) == (8, 0.384, 0.30)
    assert row["recovered_share"] == pytest.approx((0.34 - 0.30) / (0.384 - 0.30))
    fig = plots.nds_vs_gpus(df)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "reference recipe at its 8 GPUs: 0.384" in legend
    level = next(ln for ln in ax.lines if ln.get_label().startswith("reference recipe at its"))
    assert list(level.get_ydata()) == [0.384, 0.384]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "160"]
