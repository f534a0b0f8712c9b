"""`scaleout fit`: the sweeps' frames -> one optimum per sweep -> the fits -> one document.

Reads finished sweeps through the results layer's frame (scaleout.results.frame.load_sweep),
checks they are one recipe at two or more global batches, and builds the `scaleout.fit/1`
document (docs/evidence.md) with the space-file rule it recommends. Writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from scaleout.core.errors import UsageError
from scaleout.evidence import fit as F

SCHEMA = "scaleout.fit/1"
# What must be the same in every sweep of one fit (the reference recipe, the trainer, the
# objective); the space file's text is compared by its digest.
_SAME = ("reference", "trainer", "objective")


def check_same_recipe(frames: Sequence[Any]) -> None:
    """UsageError naming the first sweeps that differ in their space file, reference recipe,
    trainer or objective, or when fewer than two global batches are among them."""
    names = [f.attrs["sweep"] for f in frames]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UsageError(f"sweep {', '.join(twice)} named twice: name each sweep once")
    first = frames[0]
    for other in frames[1:]:
        a, b = first.attrs, other.attrs
        da, db = a["meta"].get("space_digest"), b["meta"].get("space_digest")
        if da and db and da != db:
            raise UsageError(
                f"sweeps {a['sweep']} and {b['sweep']} come from different space files "
                f"({a['meta'].get('space_file')}, {b['meta'].get('space_file')}): a fit "
                "compares one recipe at several global batches",
                hint="fit sweeps run from the same space file at different --gpus",
            )
        for key in _SAME:
            va = a["plan"].get(key) if key != "trainer" else a["meta"].get(key)
            vb = b["plan"].get(key) if key != "trainer" else b["meta"].get(key)
            if json.dumps(va, sort_keys=True) != json.dumps(vb, sort_keys=True):
                raise UsageError(
                    f"sweeps {a['sweep']} and {b['sweep']} differ in their {key} "
                    f"({_short(va)} vs {_short(vb)}): a fit compares one recipe at several "
                    "global batches"
                )
    batches = sorted({int(f.attrs["plan"]["target"]["global_batch"]) for f in frames})
    if len(batches) < 2:
        raise UsageError(
            f"{'sweep' if len(frames) == 1 else 'sweeps'} {', '.join(names)}: one global batch "
            f"only ({batches[0]}); a fit of lr_opt against the global batch needs sweeps at two "
            "or more",
            hint="add a sweep of the same space file at another --gpus",
        )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def points_of(frames: Sequence[Any], top: int) -> list[F.Point]:
    """One optimum per sweep (UsageError for a sweep with fewer than two completed trials)."""
    out = []
    for f in frames:
        plan = f.attrs["plan"]
        done = f[(f["state"] == "COMPLETE") & f["objective"].notna() & f["lr"].notna()]
        cols = [c for c in ("trial", "lr", "objective", "warmup_iters") if c in done]
        rows = [
            {c: (None if _na(r[c]) else float(r[c])) for c in cols}
            for r in done[cols].to_dict("records")
        ]
        try:
            out.append(
                F.optimum(
                    f.attrs["sweep"],
                    rows,
                    global_batch=int(plan["target"]["global_batch"]),
                    k=float(plan["scale"]["k"]),
                    maximize=f.attrs.get("direction", "maximize") == "maximize",
                    top=top,
                )
            )
        except ValueError as exc:
            raise UsageError(
                str(exc), hint="wait for the sweep to finish, or leave it out"
            ) from None
    return out


def _na(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def fit_document(
    frames: Sequence[Any], *, top: int = 3, target_gpus: int | None = None,
    target_samples_per_gpu: int | None = None,
) -> tuple[dict[str, Any], list[F.Point]]:  # fmt: skip
    """The fit of sweeps of one recipe; (document, points). Raises UsageError for bad input."""
    check_same_recipe(frames)
    points = points_of(frames, top)
    plan = frames[0].attrs["plan"]
    ref_lr = float(plan["reference"]["lr"])
    ref_batch = int(plan["scale"]["reference_global_batch"])
    power = F.fit_power(points, ref_lr)
    free = F.fit_power_free(points)
    if F.has_peak(points):
        surge = {"fitted": True, **F.fit_surge(points)}
    else:
        surge = {
            "fitted": False,
            "why": "no peak in the data: lr_opt does not rise and then fall over three or more "
            "global batches (below its peak the surge form is sqrt scaling)",
        }
    fits = {"power": power, "power_free": free, "surge": surge if surge["fitted"] else None}
    aics = {n: f["aic"] for n, f in fits.items() if f is not None}
    better = min(aics, key=aics.get)  # type: ignore[arg-type]
    names = [p.sweep for p in points]
    alpha = float(f"{power['alpha']:.3g}")
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "sweeps": [p.to_dict() for p in points],
        "reference": {"lr": ref_lr, "global_batch": ref_batch, "gpus": plan["reference"]["gpus"]},
        "objective": dict(plan["objective"]),
        "top_trials": top,
        "optimum_method": (
            f"geometric mean of the lr of each sweep's {top} best completed trials; its "
            f"uncertainty the sd of their ln lr (at least {F.SIGMA_FLOOR:g})"
        ),
        "power": power,
        "power_free": _public(free),
        "surge": surge,
        "better": better,
        "better_by": "AIC (chi2 + 2 x parameters, lower is better)",
        "rule": {"rule": "power", "alpha": alpha, "from": names},
        "rule_yaml": f"{{rule: power, alpha: {alpha:g}, from: [{', '.join(names)}]}}",
    }
    if target_gpus is not None:
        spg = target_samples_per_gpu or int(plan["target"]["samples_per_gpu"])
        batch = target_gpus * spg
        k = batch / ref_batch
        target: dict[str, Any] = {
            "gpus": target_gpus,
            "samples_per_gpu": spg,
            "global_batch": batch,
            "k": k,
            "basis": "predicted from the fit (95% interval)",
            "power": F.predict(power, "power", k, batch),
        }
        if free is not None:
            target["power_free"] = F.predict(free, "power_free", k, batch)
        if surge["fitted"]:
            target["surge"] = F.predict(surge, "surge", k, batch)
        doc["target"] = target
    return doc, points


def _public(fit: dict | None) -> dict | None:
    return None if fit is None else {k: v for k, v in fit.items() if not k.startswith("_")}
