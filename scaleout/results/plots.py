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
    """Completed trials filled, pruned ones hollow; one colour per origin; labelled tNNN
    where a label has room (`place_labels`)."""
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
    place_labels(ax, [(r[x], r[y], f"t{int(r['trial']):03d}") for _, r in done.iterrows()])


# Where a label may sit around its point (offset in points, horizontal alignment), tried in
# this order until one overlaps no label placed before it.
_LABEL_SPOTS = (
    ((4, 4), "left"),
    ((4, -10), "left"),
    ((-4, 4), "right"),
    ((-4, -10), "right"),
    ((0, 11), "center"),
    ((0, -17), "center"),
    ((10, 14), "left"),
    ((-10, 14), "right"),
    ((10, -20), "left"),
    ((-10, -20), "right"),
)


def place_labels(ax: Any, points: list[tuple[Any, Any, str]], *, fontsize: float = 7) -> list[Any]:
    """Label points without overlap: each label (in the order given: put the ones that
    matter first) takes the first spot around its point where it overlaps no earlier label
    and stays inside the axes; a label with no free spot is left out. Returns the labels
    drawn. The figure is laid out first, and the labels stay out of the layout, so what is
    checked here is where they are drawn."""
    fig = ax.figure
    fig.canvas.draw()  # the layout engine places the axes; labels then fit that layout
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    boxes: list[Any] = []
    for px, py, text in points:
        if px is None or py is None or px != px or py != py:
            continue
        for offset, ha in _LABEL_SPOTS:
            ann = ax.annotate(
                text,
                (px, py),
                textcoords="offset points",
                xytext=offset,
                ha=ha,
                fontsize=fontsize,
                color="#444",
                annotation_clip=True,
            )
            ann.set_in_layout(False)
            box = ann.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(b) for b in boxes):
                placed.append(ann)
                boxes.append(box)
                break
            ann.remove()
    return placed


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
    """The metric per epoch, one line per trial; pruned trials dashed and ending in an x.
    The best completed trial is drawn over the others, thick and dark, and labelled."""
    y = metric or (df.attrs.get("objective") if df is not None else None) or "NDS"
    if df is not None:
        require_finished(df)
    data = epochs[epochs["metric"] == y]
    if data.empty:
        raise NoFinishedTrials(f"no trial has reported {y} for an epoch yet: no learning curves")
    best = _best_number(df, data, y)
    fig, ax = _figure(f"{y} per epoch")
    for trial, g in data.groupby("trial"):
        g = g.sort_values("epoch")
        state, origin = g["state"].iloc[0], g["origin"].iloc[0]
        color = ORIGIN_COLORS.get(origin, "#9467bd")
        pruned = state == "PRUNED"
        is_best = trial == best
        label = f"t{int(trial):03d} {origin}" + (" (pruned)" if pruned else "")
        ax.plot(
            g["epoch"],
            g["value"],
            ls="--" if pruned else "-",
            marker="o",
            ms=4 if is_best else 3,
            lw=2.8 if is_best else 1.1,
            color=BEST_COLOR if is_best else color,
            alpha=1.0 if is_best else (0.45 if pruned else 0.7),
            zorder=4 if is_best else 2,
            label=f"best: {label}" if is_best else label,
        )
        if pruned:
            ax.plot(g["epoch"].iloc[-1], g["value"].iloc[-1], "x", color="#d62728", ms=8, mew=2)
        if is_best:
            last = g.iloc[-1]
            ax.annotate(
                f"best: t{int(trial):03d} {last['value']:.3f}",
                (last["epoch"], last["value"]),
                textcoords="offset points",
                xytext=(-8, -13),  # beside the line's end, inside the axes
                ha="right",
                fontsize=8,
                fontweight="bold",
                color=BEST_COLOR,
                zorder=5,
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel(y)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _legend(ax, outside=data["trial"].nunique() > 8)
    return fig


BEST_COLOR = "#111111"


def _best_number(df: pd.DataFrame | None, data: pd.DataFrame, y: str) -> int | None:
    """The best completed trial: the frame's rank 1, else the completed curve that ends
    best."""
    if df is not None and "rank" in df and (df["rank"] == 1).any():
        return int(df.loc[df["rank"] == 1, "trial"].iloc[0])
    done = data[data["state"] == "COMPLETE"].sort_values("epoch").groupby("trial").last()
    if done.empty:
        return None
    asc = df is not None and df.attrs.get("direction") == "minimize"
    return int(done["value"].sort_values(ascending=asc).index[0])


def cost_axis(df: pd.DataFrame) -> tuple[str, str]:
    """The per-trial cost a plot puts on its axis, and its label: GPU-hours at the target
    (estimated or measured, as the frame says), else the compute spent here (where the plan
    has no cost basis), else trial-equivalents."""
    gpus = int(df["gpus"].dropna().iloc[0]) if "gpus" in df and df["gpus"].notna().any() else None
    at = f"at {gpus} GPUs" if gpus else "at the target"
    if "target_gpu_hours" in df and df["target_gpu_hours"].notna().any():
        basis = (
            set(df["target_gpu_hours_basis"].dropna()) if "target_gpu_hours_basis" in df else set()
        )
        how = (
            " (estimated)"
            if basis == {"estimated"}
            else (" (measured)" if basis == {"measured"} else "")
        )
        return "target_gpu_hours", f"GPU-hours {at} per trial{how}"
    if "compute_hours_here" in df and df["compute_hours_here"].notna().any():
        units = set(df["compute_unit_here"].dropna()) if "compute_unit_here" in df else set()
        unit = units.pop() if len(units) == 1 else "compute-hours"
        return "compute_hours_here", f"{unit} spent here per trial"
    return "trial_equivalents", "trial-equivalents per trial (a full-length trial = 1)"


def pareto_front(df: pd.DataFrame, *, metric: str | None = None) -> Figure:
    """The metric against the cost of each trial (`cost_axis`), with the Pareto front of the
    completed trials (none both cheaper and better). Pruned trials are drawn apart, grey, at
    their last value: they stopped early, so their cost is not a finished trial's and they
    are never on the front."""
    y = _metric(df, metric)
    x, xlabel = cost_axis(df)
    done = _values(require_finished(df), y)
    done = done[done[x].notna()] if x in done else done.iloc[0:0]
    complete = done[done["state"] == "COMPLETE"]
    if complete.empty:
        raise NoFinishedTrials(f"no completed trial records its cost ({x}): no Pareto front")
    maximize = df.attrs.get("direction", "maximize") == "maximize"
    fig, ax = _figure(f"{y} against cost (Pareto front of the completed trials)")
    front = pareto(complete, x, y, maximize=maximize)
    # The front as a staircase to the most expensive completed trial, its members ringed.
    xs = [*front[x], complete[x].max()]
    ys = [*front[y], front[y].iloc[-1]]
    ax.step(xs, ys, where="post", color="#d62728", lw=1.2, alpha=0.7, zorder=2)
    ax.scatter(
        front[x],
        front[y],
        s=170,
        facecolors="none",
        edgecolors="#d62728",
        linewidths=1.2,
        label="Pareto front (completed trials)",
        zorder=2,
    )
    for origin, sub in complete.groupby("origin", sort=False):
        color = ORIGIN_COLORS.get(str(origin), "#9467bd")
        ax.scatter(sub[x], sub[y], s=48, color=color, label=str(origin), zorder=3)
    pruned = done[done["state"] == "PRUNED"]
    if len(pruned):
        ax.scatter(
            pruned[x],
            pruned[y],
            s=44,
            marker="X",
            color="#9a9a9a",
            label="pruned (stopped early; not on the front)",
            zorder=3,
        )
    # Front members first: where labels crowd, theirs are the ones kept.
    order = [*front.index, *(i for i in complete.index if i not in front.index), *pruned.index]
    place_labels(
        ax, [(done.at[i, x], done.at[i, y], f"t{int(done.at[i, 'trial']):03d}") for i in order]
    )
    ax.set_xlabel(xlabel)
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
    n = int(((df["state"] == "COMPLETE") & df["objective"].notna()).sum())
    few = n < IMPORTANCE_MIN_TRIALS
    fig, ax = _figure(
        f"parameter importance for {y} (fANOVA)" + (" - a rough guide" if few else "")
    )
    names = list(imp)[::-1]
    ax.barh(names, [imp[k] for k in names], color="#9ecae1" if few else "#1f77b4")
    for i, k in enumerate(names):
        ax.text(imp[k], i, f" {imp[k]:.2f}", va="center", fontsize=8)
    ax.set_xlabel("importance (sums to 1)")
    ax.set_xlim(0, 1.1)
    if few:
        ax.text(
            0.98,
            0.04,
            importance_caveat(n),
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="#8a5a00",
            bbox={"boxstyle": "round", "facecolor": "#fff6d6", "edgecolor": "#e0c060"},
            wrap=True,
        )
    return fig


# fANOVA fits a random forest to the completed trials: from fewer, its split is mostly noise.
IMPORTANCE_MIN_TRIALS = 20


def importance_caveat(n: int) -> str:
    return (
        f"caveat: from {n} completed trial{'s' if n != 1 else ''} only;\n"
        f"fewer than ~{IMPORTANCE_MIN_TRIALS} make this importance a rough guide"
    )


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
    """The metric per GPU count: the reference recipe run unchanged and the best trial at each
    sweep's scale, and the reference recipe at its own scale (the plan's `reference.metric`)
    as a level to win back, where the plan states it. Takes one sweep's frame or several
    (`load_sweeps`)."""
    y = _metric(sweeps, metric)
    table = scaling_table(sweeps, metric=y)
    fig, ax = _figure(f"{y} against GPU count: the reference recipe's drop, and the sweep's best")
    _log_x(ax)
    levels = table.dropna(subset=["reference_own", "reference_gpus"])
    levels = levels.drop_duplicates(["reference_gpus", "reference_own"])
    for _, r in levels.iterrows():
        ax.axhline(
            r["reference_own"],
            color=ORIGIN_COLORS["reference"],
            ls=":",
            lw=1.2,
            label=f"reference recipe at its {int(r['reference_gpus'])} GPUs: "
            f"{r['reference_own']:.3f}",
        )
        ax.plot(
            [r["reference_gpus"]],
            [r["reference_own"]],
            "s",
            color=ORIGIN_COLORS["reference"],
            ms=7,
        )
    if table["reference"].notna().any():
        # From the recipe at its own scale (where the plan states it) to where it drops.
        start = levels[~levels["reference_gpus"].isin(table["gpus"])]
        xs = [*start["reference_gpus"], *table["gpus"]]
        ys = [*start["reference_own"], *table["reference"]]
        ax.plot(
            xs,
            ys,
            "o--",
            color=ORIGIN_COLORS["reference"],
            label="reference recipe run unchanged (lr as at its scale)",
        )
    ax.plot(table["gpus"], table["tuned"], "o-", color="#d62728", label="best trial (tuned)")
    for _, r in table.iterrows():
        note = f"lr {r['tuned_lr']:.1e}"
        if r["recovered_share"] == r["recovered_share"] and r["recovered_share"] is not None:
            note += f", {100 * r['recovered_share']:.0f}% of the drop recovered"
        ax.annotate(
            note,
            (r["gpus"], r["tuned"]),
            textcoords="offset points",
            xytext=(-4, -13),
            ha="right",
            fontsize=7,
        )
    ticks = sorted({*table["gpus"], *levels["reference_gpus"]})
    ax.set_xticks(ticks, [str(int(g)) for g in ticks])
    lo, hi = min(ticks), max(ticks)
    ax.set_xlim(lo / 1.6, hi * 1.3)
    ax.set_xlabel("GPUs (log)")
    ax.set_ylabel(y)
    _legend(ax)
    return fig


def scaling_table(sweeps: pd.DataFrame, *, metric: str | None = None) -> pd.DataFrame:
    """One row per sweep: GPUs, global batch, the reference recipe's metric at its own scale
    (`reference_own`, the plan's `reference.metric`, at `reference_gpus`) and run unchanged at
    the sweep's scale (`reference`), the best trial's metric and lr, the gain, the share of the
    drop recovered, and the cost (the shape of the published 8/80/160-GPU table)."""
    y = _metric(sweeps, metric)
    plans = sweeps.attrs.get("plans") or {}
    if not plans and sweeps.attrs.get("plan") is not None:  # one sweep's frame
        plans = {sweeps.attrs.get("sweep"): sweeps.attrs["plan"]}
    rows = []
    for sweep, g in sweeps.groupby("sweep", sort=False):
        done = g[(g["state"] == "COMPLETE") & g[y].notna()]
        if done.empty:
            continue
        best = done.sort_values(y, ascending=sweeps.attrs.get("direction") == "minimize").iloc[0]
        ref = done[done["origin"] == "reference"]
        plan = plans.get(sweep) or {}
        own = ((plan.get("reference") or {}).get("metric") or {}).get(y)
        seed = float(ref[y].iloc[0]) if len(ref) else None
        tuned = float(best[y])
        drop = None if own is None or seed is None else own - seed
        worse = drop is not None and (
            drop > 0 if sweeps.attrs.get("direction") != "minimize" else drop < 0
        )
        rows.append(
            {
                "sweep": sweep,
                "gpus": int(g["gpus"].iloc[0]),
                "global_batch": int(g["global_batch"].iloc[0]),
                "reference_gpus": (plan.get("reference") or {}).get("gpus"),
                "reference_own": None if own is None else float(own),
                "reference_lr": float(g["lr_reference"].iloc[0]),
                "reference": seed,
                "tuned_lr": float(best["lr"]),
                "tuned_warmup_iters": best["warmup_iters"],
                "tuned_origin": best["origin"],
                "tuned": tuned,
                "gain": tuned - seed if seed is not None else None,
                "recovered_share": (tuned - seed) / drop if worse else None,  # type: ignore[operator]
                "trial_equivalents": _sum(g, "trial_equivalents"),
                "target_gpu_hours": _sum(g, "target_gpu_hours"),
            }
        )
    if not rows:
        names = ", ".join(str(s) for s in sweeps["sweep"].unique()) if len(sweeps) else "?"
        raise NoFinishedTrials(f"none of the sweeps ({names}) has a completed trial with {y} yet")
    return pd.DataFrame(rows).sort_values("gpus", ignore_index=True)


def _sum(g: pd.DataFrame, col: str) -> float | None:
    return float(g[col].sum()) if col in g and g[col].notna().any() else None


CORE_PLOTS = {"lr", "warmup_iters", "min_lr_ratio"}  # have plots of their own above


def sweep_plots(df: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, Figure]:
    """All of a sweep's plots that its data supports, by name (the order of the table in
    docs/analysis.md; `nds_vs_gpus` shows the reference recipe's drop from its own scale;
    then `nds_vs_<name>` for each further searched parameter). Raises
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
        "nds_vs_gpus": lambda: nds_vs_gpus(df),
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
