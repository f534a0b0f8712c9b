"""`scaleout report`: one sweep as a self-contained HTML page and as Markdown beside PNG files.

Sections: the headline (what the reference recipe loses at the target, how much of it the
best trial wins back, what it cost: `headline.Headline.sentences`), the plan (reference,
rules, ranges, seeds), the leaderboard, the plots, what the best trial changed against the
rules, failures (with the tail of their logs) and cost in labelled units. A sweep
without a finished trial still gets its report (plan, failures, cost), saying so instead of
drawing empty plots.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scaleout.results import queries
from scaleout.results.format import fmt_counts, fmt_trial, fmt_value
from scaleout.results.frame import epoch_frame, trial_frame, trial_runs
from scaleout.results.headline import Headline, headline
from scaleout.sweep.workspace import SweepStore, TrialRecord

PLOT_TITLES = {
    "nds_vs_lr": "Objective against lr, with the sqrt and linear rules",
    "nds_vs_warmup": "Objective against warmup",
    "nds_vs_min_lr_ratio": "Objective against min_lr_ratio",
    "learning_curves": "Learning curves (pruned trials dashed, the best one drawn thick)",
    "pareto_front": "Objective against cost: the Pareto front of the completed trials",
    "param_importance": "Parameter importance",
    "nds_vs_gpus": "Objective per GPU count: the reference recipe's drop, and the best trial",
}


@dataclass
class Report:
    html: Path
    markdown: Path
    plots: list[Path] = field(default_factory=list)
    finished: int = 0


def html_table(df: pd.DataFrame, *, index: bool = False) -> str:
    cols = list(df.columns)
    head = "".join(
        f"<th>{html.escape(str(c))}</th>" for c in ([df.index.name or ""] if index else []) + cols
    )
    body = []
    for idx, row in df.iterrows():
        cells = [f"<td class='text'>{html.escape(str(idx))}</td>"] if index else []
        for c in cols:
            v = row[c]
            cls = " class='text'" if isinstance(v, str) else ""
            cells.append(f"<td{cls}>{html.escape(fmt_value(v, str(c)))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def md_table(df: pd.DataFrame, *, index: bool = False) -> str:
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        cells = [str(idx)] if index else []
        cells += [fmt_value(row[c], str(c)).replace("|", "\\|") for c in df.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_report(
    name: str,
    workspace: str | Path | None = None,
    *,
    out: str | Path | None = None,
    mlflow_uri: str | None = None,
) -> Report:
    """Write report.html (plots embedded as base64 PNG) and report.md (+ PNG files) to `out`
    (default: <sweep>/report/)."""
    from scaleout.results import plots

    store = SweepStore.open(name, workspace)
    runs = trial_runs(store, store.mlflow_uri(mlflow_uri))
    records = store.records()
    df = trial_frame(store, records, runs)
    out_dir = Path(out) if out else store.dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    done = queries.finished(df)
    figures: dict[str, Any] = {}
    if not done.empty:
        figures = plots.sweep_plots(df, epoch_frame(store, records, runs))
    pngs: dict[str, bytes] = {}
    paths = []
    for key, fig in figures.items():
        pngs[key] = plots.png_bytes(fig)
        path = out_dir / f"{key}.png"
        path.write_bytes(pngs[key])
        paths.append(path)

    sections = _sections(df, done, records, headline(store.plan, records))
    html_path = out_dir / "report.html"
    md_path = out_dir / "report.md"
    html_path.write_text(_html(name, sections, pngs))
    md_path.write_text(_markdown(name, sections, list(pngs)))
    return Report(html_path, md_path, paths, len(done))


def plot_title(key: str) -> str:
    return PLOT_TITLES.get(key) or f"Objective against {key.removeprefix('nds_vs_')}"


def leaderboard_page(df: pd.DataFrame) -> str:
    """A standalone HTML page of the leaderboard (the one logged to MLflow)."""
    title = html.escape(f"Leaderboard: sweep {df.attrs.get('sweep', '')}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{TABLE_CSS}</style></head><body><h1>{title}</h1>"
        f"{html_table(queries.leaderboard(df))}</body></html>"
    )


TABLE_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td.text{text-align:left}"
)


def _sections(
    df: pd.DataFrame, done: pd.DataFrame, records: list[TrialRecord], story: Headline
) -> dict[str, Any]:
    plan, meta = df.attrs["plan"], df.attrs["meta"]
    objective = df.attrs["objective"]
    ref = plan["reference"]
    ref_keys = [k for k in ("gpus", "samples_per_gpu", *queries.knobs(df), "epochs") if k in ref]
    overview = pd.DataFrame(
        {
            "value": [
                meta["gpus"],
                plan["target"]["samples_per_gpu"],
                plan["target"]["global_batch"],
                f"{plan['scale']['k']:g}",
                f"{meta['trainer']['name']}"
                + (f" ({meta['trainer'].get('preset')})" if meta["trainer"].get("preset") else ""),
                meta["executor"],
                f"{objective} ({plan['objective']['direction']})",
                fmt_counts(queries.totals(df)) or "none",
                meta.get("trials"),
                meta.get("space_file"),
            ]
        },
        index=pd.Index(
            [
                "GPUs",
                "samples per GPU",
                "global batch",
                "k (global batch / reference's)",
                "trainer",
                "executor",
                "objective",
                "trials",
                "budget",
                "space file",
            ],
            name="",
        ),
    )
    names = {"gpus": "GPUs", "samples_per_gpu": "samples per GPU"}
    reference = pd.DataFrame(
        {"value": [ref[k] for k in ref_keys]},
        index=pd.Index([names.get(k, k) for k in ref_keys], name=""),
    )
    rules = pd.DataFrame(
        [
            {"parameter": p, "rule": r, "prediction": v}
            for p, preds in plan["rules"].items()
            for r, v in preds.items()
        ]
    )
    ranges = pd.DataFrame(
        [
            {"parameter": p, "low": r["low"], "high": r["high"], "log": r["log"]}
            for p, r in plan["ranges"].items()
        ]
    )
    seeds = pd.DataFrame(plan["seed_trials"])
    best = None
    best_note = "no completed trial yet"
    if not df[df["state"] == "COMPLETE"].empty:
        best = queries.best_vs_rules(df)
        b = queries.best_trial(df)
        head = f"best: {fmt_trial(b['trial'])} ({b['origin']}), {objective} "
        head += fmt_value(b["objective"], "objective")
        if pd.notna(b["lr_vs_sqrt"]) and pd.notna(b["lr_vs_linear"]):
            head += (
                f" at lr {fmt_value(b['lr'], 'lr')} = {b['lr_vs_sqrt']:.2f}x the sqrt rule and "
                f"{b['lr_vs_linear']:.2f}x the linear rule"
            )
        best_note = head
    failed = df[df["state"] == "FAIL"]
    failures = []
    if len(failed):
        by_number = {r.number: r for r in records}
        for _, r in failed.iterrows():
            rec = by_number.get(int(r["trial"]))
            info = rec.failure if rec is not None else {}
            failures.append(
                {
                    "trial": int(r["trial"]),
                    "origin": r["origin"],
                    "attempts": r["attempts"],
                    "job": r["job_name"],
                    "reason": info.get("reason") or r["failure"] or "unknown",
                    "log_tail": info.get("log_tail") or "",
                }
            )
    c = queries.cost(df)
    gpus = meta["gpus"]
    how = {"estimated": "estimated from the plan's cost basis", "measured": "measured"}
    basis = how.get(c["target_gpu_hours_basis"] or "", "partly estimated")
    if c["target_gpu_hours"] is None:
        basis = "not known: the plan has no cost basis"
    unit = c["compute_unit_here"] or "compute-hours"
    by_state = ", ".join(
        f"{k.lower()} {fmt_value(v, 'gpu_hours')}"
        for k, v in c["target_gpu_hours_by_state"].items()
    )
    rows = [
        (
            f"trial-equivalents (one full-length trial at {gpus} GPUs = 1)",
            c["trial_equivalents"],
            "trial_equivalents",
        ),
        (f"GPU-hours at {gpus} GPUs ({basis})", c["target_gpu_hours"], "gpu_hours"),
        (f"GPU-hours at {gpus} GPUs by state", by_state or "-", ""),
        (
            f"{unit} spent here (what this machine ran)",
            c["compute_hours_here"],
            "compute_hours_here",
        ),
        ("trial wall time (sum)", c["trial_wall_time_s"], "trial_wall_time_s"),
        ("sweep wall time", c["sweep_wall_time_s"], "sweep_wall_time_s"),
        (
            f"planned GPU-hours per trial at {gpus} GPUs",
            c["planned_gpu_hours_per_trial"],
            "gpu_hours",
        ),
        (
            f"planned GPU-hours at {gpus} GPUs for the budget",
            c["planned_gpu_hours_total"],
            "gpu_hours",
        ),
    ]
    cost = pd.DataFrame(
        {"value": [v for _, v, _ in rows]}, index=pd.Index([label for label, _, _ in rows], name="")
    )
    cost_keys = [k for _, _, k in rows]
    return {
        "headline": story.sentences(),
        "headline_text": story.text(),
        "overview": overview,
        "reference": reference,
        "rules": rules,
        "ranges": ranges,
        "seeds": seeds,
        "notes": plan.get("notes") or [],
        "leaderboard": queries.leaderboard(df) if len(df) else None,
        "finished": len(done),
        "best": best,
        "best_note": best_note,
        "failures": failures,
        "cost": cost,
        "cost_keys": cost_keys,
    }


def _cost_table(cost: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"value": [fmt_value(v, k) if k else v for v, k in zip(cost["value"], keys, strict=True)]},
        index=cost.index,
    )


CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;"
    "padding:0 1em}h1{margin-bottom:0}.sub{color:#666;margin-top:.3em}"
    "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.2em}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
    "td.text{text-align:left}figure{margin:1em 0}figcaption{color:#555;font-size:13px}"
    "img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:.6em;"
    "font-size:12px;overflow:auto;max-height:22em}.note{background:#fff6d6;padding:.5em 1em}"
    ".headline{font-size:16px;line-height:1.5;border-left:4px solid #d62728;padding:.3em 1em}"
)


def _html(name: str, s: dict[str, Any], pngs: dict[str, bytes]) -> str:
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Sweep {e(name)}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>Sweep {e(name)}</h1><p class='sub'>{e(s['best_note'])}</p>",
        f"<p class='headline'>{e(' '.join(s['headline']))}</p>",
        "<h2>Plan</h2>",
        html_table(s["overview"], index=True),
        "<h3>Reference recipe</h3>",
        html_table(s["reference"], index=True),
        "<h3>Scaling rules</h3>",
        html_table(s["rules"]),
        "<h3>Searched ranges</h3>",
        html_table(s["ranges"]),
        "<h3>Seed trials</h3>",
        html_table(s["seeds"]),
    ]
    parts += [f"<p class='note'>{e(n)}</p>" for n in s["notes"]]
    parts.append("<h2>Leaderboard</h2>")
    parts.append(
        html_table(s["leaderboard"]) if s["leaderboard"] is not None else "<p>No trials yet.</p>"
    )
    parts.append("<h2>Plots</h2>")
    if not s["finished"]:
        parts.append("<p class='note'>No finished trials yet, so no plots.</p>")
    for key, data in pngs.items():
        b64 = base64.b64encode(data).decode()
        parts.append(
            f"<figure><img alt='{e(key)}' src='data:image/png;base64,{b64}'>"
            f"<figcaption>{e(plot_title(key))}</figcaption></figure>"
        )
    parts.append("<h2>Best trial against the rules</h2>")
    parts.append(
        html_table(s["best"], index=True)
        if s["best"] is not None
        else "<p>No completed trial yet.</p>"
    )
    parts.append("<h2>Failures</h2>")
    if not s["failures"]:
        parts.append("<p>None.</p>")
    for f in s["failures"]:
        parts.append(
            f"<h3>{fmt_trial(f['trial'])} ({e(str(f['origin']))}), {e(fmt_value(f['attempts']))} "
            "attempt(s), "
            f"job {e(str(f['job']))}</h3><p>{e(f['reason'])}</p>"
            + (f"<pre>{e(f['log_tail'])}</pre>" if f["log_tail"] else "")
        )
    parts.append("<h2>Cost</h2>")
    parts.append(html_table(_cost_table(s["cost"], s["cost_keys"]), index=True))
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(name: str, s: dict[str, Any], plot_keys: list[str]) -> str:
    parts = [
        f"# Sweep {name}",
        "",
        s["best_note"],
        "",
        " ".join(s["headline"]),
        "",
        "## Plan",
        "",
        md_table(s["overview"], index=True),
        "",
        "### Reference recipe",
        "",
        md_table(s["reference"], index=True),
        "",
        "### Scaling rules",
        "",
        md_table(s["rules"]),
        "",
        "### Searched ranges",
        "",
        md_table(s["ranges"]),
        "",
        "### Seed trials",
        "",
        md_table(s["seeds"]),
        "",
    ]
    parts += [f"> {n}\n" for n in s["notes"]]
    parts += ["## Leaderboard", ""]
    parts.append(md_table(s["leaderboard"]) if s["leaderboard"] is not None else "No trials yet.")
    parts += ["", "## Plots", ""]
    if not s["finished"]:
        parts.append("No finished trials yet, so no plots.\n")
    for key in plot_keys:
        parts += [f"![{plot_title(key)}]({key}.png)", ""]
    parts += ["## Best trial against the rules", ""]
    parts.append(
        md_table(s["best"], index=True) if s["best"] is not None else "No completed trial yet."
    )
    parts += ["", "## Failures", ""]
    if not s["failures"]:
        parts.append("None.")
    for f in s["failures"]:
        parts += [
            f"### {fmt_trial(f['trial'])} ({f['origin']}), {fmt_value(f['attempts'])} attempt(s), "
            f"job {f['job']}",
            "",
            f["reason"],
            "",
        ]
        if f["log_tail"]:
            parts += ["```", f["log_tail"], "```", ""]
    parts += ["", "## Cost", "", md_table(_cost_table(s["cost"], s["cost_keys"]), index=True), ""]
    return "\n".join(parts)
