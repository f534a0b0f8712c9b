"""The sweep's plots, one function each, from the frames of `scaleout.results.frame`.

Every function returns a matplotlib Figure drawn on its own Agg canvas (no display, no
pyplot state, so the global backend stays whatever the user or Jupyter chose) and raises
`queries.NoFinishedTrials` rather than draw an empty plot. Pruned trials are drawn hollow at
their last reported value; failed ones have no value and are left out (the report lists them).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scaleout.results.queries import NoFinishedTrials, require_finished

ORIGIN_COLORS = {
    "reference": "#7f7f7f",
    "sqrt": "#1f77b4",
    "linear": "#ff7f0e",
    "sampled": "#2ca02c",
}
RULE_STYLES = {"reference": ":", "sqrt": "--", "linear": "-."}
SIZE = (7.0, 4.2)


def _figure(title: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=SIZE, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both")
    return fig, ax


def _metric(df: pd.DataFrame, metric: str | None) -> str:
    return metric or df.attrs.get("objective") or "NDS"


def _scatter(ax: Any, done: pd.DataFrame, x: str, y: str) -> None:
    """Completed trials filled, pruned ones hollow; one colour per origin; labelled tNNN."""
    for origin, group in done.groupby("origin", sort=False):
        color = ORIGIN_COLORS.get(str(origin), "#9467bd")
        for state, sub in group.groupby("state"):
            pruned = state == "PRUNED"
            ax.scatter(
                sub[x].astype(float),
                sub[y].astype(float),
                s=48,
                label=f"{origin}" + (" (pruned)" if pruned else ""),
                facecolors="none" if pruned else color,
                edgecolors=color,
                linewidths=1.5,
                zorder=3,
            )
    for _, r in done.iterrows():
        ax.annotate(
            f"t{int(r['trial']):03d}",
            (r[x], r[y]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
            color="#444",
        )


def _values(done: pd.DataFrame, y: str) -> pd.DataFrame:
    done = done.copy()
    if y not in done or done[y].isna().all():
        done[y] = done["objective"]
    return done[done[y].notna()]


def nds_vs_lr(
    df: pd.DataFrame, *, plan: dict[str, Any] | None = None, metric: str | None = None
) -> Figure:
    """The objective against lr on a log axis, with the rules' predictions and the range."""
    y = _metric(df, metric)
    done = _values(require_finished(df), y)
    plan = plan or df.attrs.get("plan") or {}
    fig, ax = _figure(f"{y} against lr")
    _log_x(ax)
    rng = (plan.get("ranges") or {}).get("lr")
    if rng:
        ax.axvspan(rng["low"], rng["high"], color="#2ca02c", alpha=0.07, label="searched range")
    for rule, lr in ((plan.get("rules") or {}).get("lr") or {}).items():
        ax.axvline(
            lr,
            color=ORIGIN_COLORS.get(rule, "#555"),
            ls=RULE_STYLES.get(rule, "--"),
            lw=1.2,
            label=f"{rule} rule: {lr:.2e}",
        )
    _scatter(ax, done, "lr", y)
    ax.set_xlabel("lr (log)")
    ax.set_ylabel(y)
    _legend(ax)
    return fig


def nds_vs_warmup(df: pd.DataFrame, *, metric: str | None = None) -> Figure:
    return _against_param(df, "warmup_iters", "warmup (iterations)", metric, log=False)


def nds_vs_min_lr_ratio(df: pd.DataFrame, *, metric: str | None = None) -> Figure:
    return _against_param(df, "min_lr_ratio", "min_lr_ratio (log)", metric, log=True)


def nds_vs_param(df: pd.DataFrame, param: str, *, metric: str | None = None) -> Figure:
    """The objective against any other searched parameter, on its range's scale."""
    rng = ((df.attrs.get("plan") or {}).get("ranges") or {}).get(param) or {}
    log = bool(rng.get("log"))
    return _against_param(df, param, f"{param} (log)" if log else param, metric, log=log)


def _against_param(
    df: pd.DataFrame, param: str, label: str, metric: str | None, log: bool
) -> Figure:
    y = _metric(df, metric)
    done = _values(require_finished(df), y)
    done = done[done[param].notna()]
    if done.empty:
        raise NoFinishedTrials(f"no finished trial records {param}")
    fig, ax = _figure(f"{y} against {param}")
    if log:
        _log_x(ax)
    rng = ((df.attrs.get("plan") or {}).get("ranges") or {}).get(param)
    if rng:
        ax.axvspan(rng["low"], rng["high"], color="#2ca02c", alpha=0.07, label="searched range")
    _scatter(ax, done, param, y)
    ax.set_xlabel(label)
    ax.set_ylabel(y)
    _legend(ax)
    return fig


def learning_curves(
    epochs: pd.DataFrame, df: pd.DataFrame | None = None, *, metric: str | None = None
) -> Figure:
    """The metric per epoch, one line per trial; pruned trials dashed and ending in an x."""
    y = metric or (df.attrs.get("objective") if df is not None else None) or "NDS"
    if df is not None:
        require_finished(df)
    data = epochs[epochs["metric"] == y]
    if data.empty:
        raise NoFinishedTrials(f"no trial has reported {y} for an epoch yet: no learning curves")
    fig, ax = _figure(f"{y} per epoch")
    for trial, g in data.groupby("trial"):
        g = g.sort_values("epoch")
        state, origin = g["state"].iloc[0], g["origin"].iloc[0]
        color = ORIGIN_COLORS.get(origin, "#9467bd")
        pruned = state == "PRUNED"
        ax.plot(
            g["epoch"],
            g["value"],
            ls="--" if pruned else "-",
            marker="o",
            ms=3,
            color=color,
            alpha=0.6 if pruned else 0.95,
            label=f"t{int(trial):03d} {origin}" + (" (pruned)" if pruned else ""),
        )
        if pruned:
            ax.plot(g["epoch"].iloc[-1], g["value"].iloc[-1], "x", color="#d62728", ms=8, mew=2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(y)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _legend(ax, outside=data["trial"].nunique() > 8)
    return fig


def pareto_front(df: pd.DataFrame, *, metric: str | None = None) -> Figure:
    """The metric against GPU-hours spent per trial, with the Pareto front (no trial both
    cheaper and better)."""
    y = _metric(df, metric)
    done = _values(require_finished(df), y)
    done = done[done["gpu_hours"].notna()]
    if done.empty:
        raise NoFinishedTrials("no finished trial records its GPU-hours")
    maximize = df.attrs.get("direction", "maximize") == "maximize"
    fig, ax = _figure(f"{y} against GPU-hours (Pareto front)")
    front = pareto(done, "gpu_hours", y, maximize=maximize)
    # The front as a staircase to the most expensive trial, its members ringed in red.
    xs = [*front["gpu_hours"], done["gpu_hours"].max()]
    ys = [*front[y], front[y].iloc[-1]]
    ax.step(xs, ys, where="post", color="#d62728", lw=1.2, alpha=0.7, zorder=2)
    ax.scatter(
        front["gpu_hours"],
        front[y],
        s=170,
        facecolors="none",
        edgecolors="#d62728",
        linewidths=1.2,
        label="Pareto front",
        zorder=2,
    )
    _scatter(ax, done, "gpu_hours", y)
    ax.set_xlabel("GPU-hours per trial")
    ax.set_ylabel(y)
    _legend(ax)
    return fig


def pareto(df: pd.DataFrame, cost: str, value: str, *, maximize: bool = True) -> pd.DataFrame:
    """The rows no other row beats on both cost (lower) and value, cheapest first."""
    best = -math.inf if maximize else math.inf
    keep = []
    for idx, r in df.sort_values([cost, value], ascending=[True, not maximize]).iterrows():
        v = r[value]
        if (v > best) if maximize else (v < best):
            keep.append(idx)
            best = v
    return df.loc[keep]


def param_importance(
    df: pd.DataFrame, *, plan: dict[str, Any] | None = None, metric: str | None = None
) -> Figure:
    """fANOVA importance of the searched parameters for the metric (Optuna's evaluator over
    the completed trials). Needs two completed trials whose values differ."""
    y = _metric(df, metric)
    imp = importances(df, plan=plan, metric=y)
    fig, ax = _figure(f"parameter importance for {y} (fANOVA)")
    names = list(imp)[::-1]
    ax.barh(names, [imp[n] for n in names], color="#1f77b4")
    for i, n in enumerate(names):
        ax.text(imp[n], i, f" {imp[n]:.2f}", va="center", fontsize=8)
    ax.set_xlabel("importance (sums to 1)")
    ax.set_xlim(0, 1.1)
    return fig


def importances(
    df: pd.DataFrame, *, plan: dict[str, Any] | None = None, metric: str | None = None
) -> dict[str, float]:
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution
    from optuna.trial import create_trial

    y = _metric(df, metric)
    plan = plan or df.attrs.get("plan") or {}
    ranges = plan.get("ranges") or {}
    done = _values(require_finished(df), y)
    done = done[done["state"] == "COMPLETE"]
    if len(done) < 2 or done[y].nunique() < 2 or not ranges:
        raise NoFinishedTrials(
            f"parameter importance needs at least two completed trials with different {y} "
            f"and a searched range (have {len(done)} completed)"
        )
    dists: dict[str, Any] = {}
    for p, r in ranges.items():
        lo = min(r["low"], done[p].min())  # seed trials may sit outside the range on purpose
        hi = max(r["high"], done[p].max())
        if r.get("type") == "int":
            dists[p] = IntDistribution(int(lo), int(hi), log=r.get("log", False))
        else:
            dists[p] = FloatDistribution(float(lo), float(hi), log=r.get("log", False))
    study = optuna.create_study(
        direction="maximize" if df.attrs.get("direction", "maximize") == "maximize" else "minimize"
    )
    for _, r in done.iterrows():
        params = {
            p: (int(r[p]) if isinstance(d, IntDistribution) else float(r[p]))
            for p, d in dists.items()
        }
        study.add_trial(create_trial(params=params, distributions=dists, value=float(r[y])))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {k: float(v) for k, v in imp.items()}


def _log_x(ax: Any) -> None:
    """A log x axis with ticks at 1, 2 and 5 per decade, labelled compactly (2e-03):
    matplotlib's default minor labels overlap on the narrow ranges a sweep covers, and
    decades alone leave one label."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0e}" if v < 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def nds_vs_gpus(sweeps: pd.DataFrame, *, metric: str | None = None) -> Figure:
    """Scaling study: per GPU count, the reference recipe run unchanged and the best trial."""
    y = _metric(sweeps, metric)
    table = scaling_table(sweeps, metric=y)
    fig, ax = _figure(f"{y} against GPU count: reference recipe vs tuned")
    _log_x(ax)
    if table["reference"].notna().any():
        ax.plot(
            table["gpus"],
            table["reference"],
            "o--",
            color=ORIGIN_COLORS["reference"],
            label="reference recipe (lr unchanged)",
        )
    ax.plot(table["gpus"], table["tuned"], "o-", color="#d62728", label="tuned (best trial)")
    for _, r in table.iterrows():
        ax.annotate(
            f"lr {r['tuned_lr']:.1e}",
            (r["gpus"], r["tuned"]),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=7,
        )
    ax.set_xticks(table["gpus"], [str(int(g)) for g in table["gpus"]])
    ax.set_xlabel("GPUs (log)")
    ax.set_ylabel(y)
    _legend(ax)
    return fig


def scaling_table(sweeps: pd.DataFrame, *, metric: str | None = None) -> pd.DataFrame:
    """One row per sweep: GPUs, global batch, the reference recipe's and the best trial's
    metric and lr, and the GPU-hours spent (the shape of the published 8/80/160-GPU table)."""
    y = _metric(sweeps, metric)
    rows = []
    for sweep, g in sweeps.groupby("sweep", sort=False):
        done = g[(g["state"] == "COMPLETE") & g[y].notna()]
        if done.empty:
            continue
        best = done.sort_values(y, ascending=sweeps.attrs.get("direction") == "minimize").iloc[0]
        ref = done[done["origin"] == "reference"]
        rows.append(
            {
                "sweep": sweep,
                "gpus": int(g["gpus"].iloc[0]),
                "global_batch": int(g["global_batch"].iloc[0]),
                "reference_lr": float(g["lr_reference"].iloc[0]),
                "reference": float(ref[y].iloc[0]) if len(ref) else None,
                "tuned_lr": float(best["lr"]),
                "tuned_warmup_iters": best["warmup_iters"],
                "tuned_origin": best["origin"],
                "tuned": float(best[y]),
                "gain": float(best[y] - ref[y].iloc[0]) if len(ref) else None,
                "gpu_hours": float(g["gpu_hours"].sum()),
            }
        )
    if not rows:
        names = ", ".join(str(s) for s in sweeps["sweep"].unique()) if len(sweeps) else "?"
        raise NoFinishedTrials(f"none of the sweeps ({names}) has a completed trial with {y} yet")
    return pd.DataFrame(rows).sort_values("gpus", ignore_index=True)


CORE_PLOTS = {"lr", "warmup_iters", "min_lr_ratio"}  # have plots of their own above


def sweep_plots(df: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, Figure]:
    """All of a sweep's plots that its data supports, by name (the order of the table in
    docs/analysis.md, then `nds_vs_<name>` for each further searched parameter). Raises
    NoFinishedTrials when there is none; a plot the data cannot support yet (importance with
    one completed trial) is left out."""
    require_finished(df)
    makers = {
        "nds_vs_lr": lambda: nds_vs_lr(df),
        "nds_vs_warmup": lambda: nds_vs_warmup(df),
        "nds_vs_min_lr_ratio": lambda: nds_vs_min_lr_ratio(df),
        "learning_curves": lambda: learning_curves(epochs, df),
        "pareto_front": lambda: pareto_front(df),
        "param_importance": lambda: param_importance(df),
    }
    searched = (df.attrs.get("plan") or {}).get("ranges") or {}
    for p in searched:
        if p not in CORE_PLOTS and p in df:
            makers[f"nds_vs_{p}"] = lambda p=p: nds_vs_param(df, p)
    out: dict[str, Figure] = {}
    for name, make in makers.items():
        try:
            out[name] = make()
        except NoFinishedTrials:
            continue
    return out


def save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _legend(ax: Any, outside: bool = False) -> None:
    handles, labels = ax.get_legend_handles_labels()
    seen: dict[str, Any] = {}
    for h, label in zip(handles, labels, strict=True):
        seen.setdefault(label, h)
    if not seen:
        return
    if outside:
        ax.legend(
            seen.values(), seen.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1)
        )
    else:
        ax.legend(seen.values(), seen.keys(), fontsize=7, loc="best")
