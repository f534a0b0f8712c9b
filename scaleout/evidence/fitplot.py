"""The plot of `scaleout fit`: each sweep's lr_opt against its global batch (log-log), the
fitted power law with its 95% band, the surge form where it was fitted, and the sqrt and
linear rules through the reference recipe. A Figure on its own Agg canvas, like
scaleout.results.plots; `save_atomic` writes it whole or not at all."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scaleout.core.files import write_atomic
from scaleout.evidence.fit import Point, surge_lr


def fit_figure(doc: dict[str, Any], points: Sequence[Point]) -> Figure:
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ref = doc["reference"]
    b_ref, lr_ref = ref["global_batch"], ref["lr"]
    batches = [p.global_batch for p in points] + [b_ref]
    target = doc.get("target")
    if target:
        batches.append(target["global_batch"])
    b = np.exp(np.linspace(math.log(min(batches) / 1.3), math.log(max(batches) * 1.3), 200))
    k = b / b_ref
    ax.plot(b, lr_ref * np.sqrt(k), "--", color="#1f77b4", label="sqrt rule")
    ax.plot(b, lr_ref * k, "-.", color="#ff7f0e", label="linear rule")
    power = doc["power"]
    lo, hi = power["interval"]
    ax.plot(b, lr_ref * k ** power["alpha"], color="#2ca02c",
            label=f"fit: k^{power['alpha']:.2f} [{lo:.2f}, {hi:.2f}]")  # fmt: skip
    ax.fill_between(b, lr_ref * k**lo, lr_ref * k**hi, color="#2ca02c", alpha=0.15)
    surge = doc.get("surge") or {}
    if surge.get("fitted"):
        ax.plot(b, surge_lr(b, surge["lr_max"], surge["b_peak"]), ":", color="#9467bd",
                label=f"surge (peak at B={surge['b_peak']:.3g})")  # fmt: skip
    x = [p.global_batch for p in points]
    y = [p.lr_opt for p in points]
    err = np.array([[p.lr_opt * (1 - math.exp(-p.sigma_ln)) for p in points],
                    [p.lr_opt * (math.exp(p.sigma_ln) - 1) for p in points]])  # fmt: skip
    ax.errorbar(x, y, yerr=err, fmt="o", color="black", capsize=3, zorder=4,
                label="sweeps' lr_opt (top trials, ±1 sd)")  # fmt: skip
    for p in points:
        ax.annotate(p.sweep, (p.global_batch, p.lr_opt), textcoords="offset points",
                    xytext=(5, -12), fontsize=7)  # fmt: skip
    ax.scatter([b_ref], [lr_ref], marker="s", color="#7f7f7f", zorder=4, label="reference recipe")
    if target:
        t = doc["target"]["power"]
        ax.errorbar([target["global_batch"]], [t["lr"]],
                    yerr=[[t["lr"] - t["interval"][0]], [t["interval"][1] - t["lr"]]],
                    fmt="*", color="#d62728", markersize=11, capsize=3, zorder=5,
                    label=f"predicted at {target['gpus']} GPUs")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("global batch (samples per step)")
    ax.set_ylabel("peak lr")
    ax.set_title(f"lr_opt against the global batch ({doc['objective']['metric']}, measured)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    return fig


def save_atomic(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """The figure in the format its suffix names (png, svg, pdf), written atomically."""
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO() if fmt != "svg" else io.StringIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    write_atomic(target, buf.getvalue())
    return target
