"""The sweep's story in figures: what the reference recipe loses at the target scale, how much
of that drop the best trial wins back, and what the sweep cost (docs/analysis.md, "The
headline").

    reference recipe at 160 GPUs: NDS 0.220 (-43% vs 0.384 at 8 GPUs); best: 0.352 (t007),
    77% of the drop recovered; cost 4.6 trial-equivalents (0.15 GPU-hours at 160 GPUs,
    estimated; 0.31 CPU-hours here)

The two ends of the drop are the plan's `reference.metric` (what the reference recipe scores
at its own scale, with its source in `reference_sources`) and the reference seed trial (the
recipe run unchanged at the target). The share recovered is
(best - reference seed at target) / (reference at its scale - reference seed at target), given
only when both ends are known and the recipe does drop.

Cost has three figures, never mixed (scaleout.sweep.budget): trial-equivalents (one
full-length trial at the target = 1), GPU-hours at the target scale (estimated from the plan's
cost basis on virtual GPUs, measured on real ones) and the compute spent here.

Pure and light (no pandas): the end summary, the live bar, `scaleout leaderboard`, the report
and the MLflow parent run all take their figures from here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from scaleout.results.format import (
    fmt_gpu_hours,
    fmt_pct,
    fmt_score,
    fmt_share,
    fmt_trial,
    fmt_trial_equivalents,
)
from scaleout.sweep.budget import ESTIMATED, MEASURED
from scaleout.sweep.workspace import TrialRecord, best_first

MIXED = "mixed"  # trials priced both ways (a sweep resumed across scaleout versions)


def plan_digest(plan: Mapping[str, Any]) -> str:
    """A short fingerprint of a plan: sha256 of its canonical JSON (sorted keys)."""
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reference_score(plan: Mapping[str, Any], metric: str) -> float | None:
    """What the reference recipe scores at its own scale (the plan's `reference.metric`)."""
    value = ((plan.get("reference") or {}).get("metric") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def pct_of_reference(value: float | None, plan: Mapping[str, Any], metric: str) -> float | None:
    """`value` as a percentage of the reference recipe's score at its own scale."""
    ref = reference_score(plan, metric)
    if value is None or value != value or not ref:
        return None
    return 100.0 * float(value) / ref


def trial_epochs(plan: Mapping[str, Any]) -> int:
    """Epochs of a full-length trial at the target (one trial-equivalent)."""
    scale = plan.get("scale") or {}
    return max(1, int(scale.get("target_epochs") or scale.get("epochs") or 1))


@dataclass(frozen=True)
class TrialCost:
    """One trial's cost: trial-equivalents, GPU-hours at the target (with how they were found)
    and the compute spent here (with its unit). None where a figure is not known."""

    trial_equivalents: float
    target_gpu_hours: float | None = None
    basis: str | None = None
    compute_hours_here: float | None = None
    compute_unit_here: str | None = None


def trial_cost(r: TrialRecord, plan: Mapping[str, Any], basis: str | None = None) -> TrialCost:
    """What trial `r` cost, from its stored result; a trial without one yet (running) counts
    its epochs so far, and its GPU-hours are the plan's estimate where the sweep's are
    (`basis`, the other trials')."""
    res = r.result
    epochs = res.get("epochs")
    if epochs is None:
        epochs = max(r.intermediate, default=0)
    te = res.get("trial_equivalents")
    te = float(te) if te is not None else float(epochs or 0) / trial_epochs(plan)
    hours = res.get("gpu_hours")
    if res:
        # A result stored before the basis was recorded priced run time x GPUs: measured.
        got = res.get("gpu_hours_basis") or (MEASURED if hours is not None else None)
    else:
        got = basis
        per_trial = (plan.get("cost") or {}).get("gpu_hours_per_trial")
        hours = per_trial * te if basis == ESTIMATED and per_trial is not None else None
    return TrialCost(
        trial_equivalents=te,
        target_gpu_hours=None if hours is None else float(hours),
        basis=got if hours is not None else None,
        compute_hours_here=res.get("compute_hours_here"),
        compute_unit_here=res.get("compute_unit_here"),
    )


@dataclass(frozen=True)
class Cost:
    """What a sweep cost so far, summed over its started trials (see `TrialCost`).
    `basis` is `estimated`, `measured`, `mixed`, or None when no trial's GPU-hours at the
    target are known; likewise `compute_unit_here`."""

    trial_equivalents: float = 0.0
    target_gpu_hours: float | None = None
    basis: str | None = None
    compute_hours_here: float | None = None
    compute_unit_here: str | None = None
    planned_gpu_hours_per_trial: float | None = None

    @classmethod
    def of(cls, costs: Iterable[TrialCost], planned: float | None = None) -> Cost:
        out = cls(planned_gpu_hours_per_trial=planned)
        for c in costs:
            out = out.plus(c)
        return out

    def plus(self, c: TrialCost) -> Cost:
        return replace(
            self,
            trial_equivalents=self.trial_equivalents + c.trial_equivalents,
            target_gpu_hours=_add(self.target_gpu_hours, c.target_gpu_hours),
            basis=_merge(self.basis, c.basis if c.target_gpu_hours is not None else None),
            compute_hours_here=_add(self.compute_hours_here, c.compute_hours_here),
            compute_unit_here=_merge(
                self.compute_unit_here,
                c.compute_unit_here if c.compute_hours_here is not None else None,
            ),
        )


def _add(a: float | None, b: float | None) -> float | None:
    return a if b is None else (b if a is None else a + b)


def _merge(a: str | None, b: str | None) -> str | None:
    return a if b is None or a == b else (b if a is None else MIXED)


def sweep_basis(records: Iterable[TrialRecord]) -> str | None:
    """How the sweep's finished trials were priced (their results say)."""
    got: str | None = None
    for r in records:
        basis = r.result.get("gpu_hours_basis")
        if basis is not None:
            got = _merge(got, basis)
    return got


def sweep_cost(records: list[TrialRecord], plan: Mapping[str, Any]) -> Cost:
    """The cost of every started trial (waiting ones cost nothing)."""
    basis = sweep_basis(records)
    started = [r for r in records if r.state != "WAITING"]
    planned = (plan.get("cost") or {}).get("gpu_hours_per_trial")
    return Cost.of((trial_cost(r, plan, basis) for r in started), planned)


@dataclass(frozen=True)
class Headline:
    """The figures of the sweep's story (module docstring). Scores are the objective's."""

    metric: str
    direction: str
    gpus: int
    reference_gpus: int | None
    reference: float | None  # the reference recipe at its own scale
    reference_source: str | None
    seed: float | None  # the reference recipe run unchanged at the target
    seed_trial: int | None
    best: float | None
    best_trial: int | None
    best_origin: str | None
    cost: Cost

    @property
    def drop_share(self) -> float | None:
        """The reference seed at the target against the reference at its scale (-0.43)."""
        if self.seed is None or not self.reference:
            return None
        return (self.seed - self.reference) / self.reference

    @property
    def has_drop(self) -> bool:
        if self.seed is None or self.reference is None:
            return False
        worse = self.seed < self.reference
        return worse if self.direction == "maximize" else self.seed > self.reference

    @property
    def recovered_share(self) -> float | None:
        """(best - reference seed) / (reference - reference seed): both ends known, and a
        drop to recover."""
        if self.best is None or not self.has_drop:
            return None
        return (self.best - self.seed) / (self.reference - self.seed)  # type: ignore[operator]

    @property
    def best_pct_of_reference(self) -> float | None:
        if self.best is None or not self.reference:
            return None
        return 100.0 * self.best / self.reference

    # -- words ---------------------------------------------------------------------------
    def text(self) -> str:
        """The summary line: the drop, the best and the share recovered, the cost."""
        return "; ".join((self._reference_part(), self._best_part(), "cost " + self.cost_text()))

    def _at_ref(self) -> str:
        return f"at {self.reference_gpus} GPUs" if self.reference_gpus else "at its own scale"

    def _reference_part(self) -> str:
        head = f"reference recipe at {self.gpus} GPUs: {self.metric} "
        ref = fmt_score(self.reference)
        if self.seed is None:
            known = f"; it scores {ref} {self._at_ref()}" if self.reference is not None else ""
            return head + f"- (its seed trial has not completed{known})"
        head += fmt_score(self.seed)
        if self.reference is None:
            return head + f" (its score {self._at_ref()} is not known)"
        change = fmt_share(self.drop_share, signed=True)
        if not self.has_drop:
            return head + f" ({change} vs {ref} {self._at_ref()}: no drop to recover)"
        return head + f" ({change} vs {ref} {self._at_ref()})"

    def _best_part(self) -> str:
        if self.best is None:
            return "best: - (no completed trial yet)"
        text = f"best: {fmt_score(self.best)} ({fmt_trial(self.best_trial or 0)})"
        share = self.recovered_share
        if share is not None:
            return text + f", {fmt_share(share)} of the drop recovered"
        if self.best_pct_of_reference is not None:
            pct = fmt_pct(self.best_pct_of_reference)
            return text + f" = {pct} of the {fmt_score(self.reference)} {self._at_ref()}"
        if self.seed is not None and self.best_trial != self.seed_trial:
            return text + f", {self.best - self.seed:+.3f} over the reference recipe"
        return text

    def cost_text(self) -> str:
        """`4.6 trial-equivalents (0.15 GPU-hours at 160 GPUs, estimated; 0.31 CPU-hours
        here)`: every figure labelled by what it is."""
        c = self.cost
        parts = [self.target_text()]
        if c.compute_hours_here is not None:
            unit = c.compute_unit_here if c.compute_unit_here != MIXED else "compute-hours"
            parts.append(f"{fmt_gpu_hours(c.compute_hours_here)} {unit} here")
        te = fmt_trial_equivalents(c.trial_equivalents)
        return f"{te} trial-equivalents ({'; '.join(parts)})"

    def target_text(self, *, words: bool = False) -> str:
        """`0.15 GPU-hours at 160 GPUs, estimated`; `words`: the report's longer form,
        `0.15 GPU-hours at 160 GPUs (estimated from the plan's cost basis)`."""
        c = self.cost
        if c.target_gpu_hours is None:
            why = "the plan has no cost basis" if c.planned_gpu_hours_per_trial is None else ""
            return f"GPU-hours at {self.gpus} GPUs not known" + (f": {why}" if why else "")
        how = {ESTIMATED: "estimated", MEASURED: "measured"}.get(c.basis or "", "partly estimated")
        text = f"{fmt_gpu_hours(c.target_gpu_hours)} GPU-hours at {self.gpus} GPUs"
        if not words:
            return f"{text}, {how}"
        long = {ESTIMATED: "estimated from the plan's cost basis", MEASURED: "measured"}
        return f"{text} ({long.get(c.basis or '', how)})"

    def sentences(self) -> list[str]:
        """The story said in words (the report's headline)."""
        m, at_ref = self.metric, self._at_ref()
        out = []
        src = f" ({self.reference_source})" if self.reference_source else ""
        if self.reference is not None:
            out.append(
                f"The reference recipe scores {m} {fmt_score(self.reference)} {at_ref}{src}."
            )
        else:
            out.append(
                f"What the reference recipe scores {at_ref} is not known, so the share of the "
                f"drop recovered cannot be said: a space file states it as "
                f"reference.metric.{m}."
            )
        if self.seed is None:
            out.append(
                f"Its seed trial (the recipe run unchanged at {self.gpus} GPUs) has not "
                "completed, so the drop at this scale is not measured."
            )
        elif self.reference is not None:
            change = fmt_share(abs(self.drop_share or 0.0))
            if self.has_drop:
                out.append(
                    f"Run unchanged at {self.gpus} GPUs ({fmt_trial(self.seed_trial or 0)}) it "
                    f"scores {fmt_score(self.seed)}, {change} worse."
                )
            else:
                out.append(
                    f"Run unchanged at {self.gpus} GPUs ({fmt_trial(self.seed_trial or 0)}) it "
                    f"scores {fmt_score(self.seed)}: no drop to recover."
                )
        else:
            out.append(f"Run unchanged at {self.gpus} GPUs it scores {fmt_score(self.seed)}.")
        if self.best is None:
            out.append("No trial has completed yet.")
        else:
            best = f"The best trial, {fmt_trial(self.best_trial or 0)} ({self.best_origin}), "
            best += f"scores {fmt_score(self.best)}"
            share = self.recovered_share
            if share is not None:
                verb = "wins back" if share >= 0 else "falls below the recipe, recovering"
                best += f": it {verb} {fmt_share(share)} of that drop"
            elif self.best_pct_of_reference is not None:
                best += f", {fmt_pct(self.best_pct_of_reference)} of the reference"
            out.append(best + ".")
        c = self.cost
        here = ""
        if c.compute_hours_here is not None:
            here = f", and {fmt_gpu_hours(c.compute_hours_here)} {c.compute_unit_here} here"
        out.append(
            f"The sweep cost {fmt_trial_equivalents(c.trial_equivalents)} trial-equivalents "
            f"(one full-length trial at {self.gpus} GPUs = 1): "
            f"{self.target_text(words=True)}{here}."
        )
        return out

    # -- named fields ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The same figures under names (`leaderboard --format json`, `sweep --json`)."""
        m, c = self.metric, self.cost
        return {
            "metric": m,
            "direction": self.direction,
            "target_gpus": self.gpus,
            "reference_gpus": self.reference_gpus,
            f"reference_{m}": self.reference,
            "reference_source": self.reference_source,
            f"reference_seed_{m}": self.seed,
            "reference_seed_trial": None if self.seed_trial is None else fmt_trial(self.seed_trial),
            "drop_share": self.drop_share,
            f"best_{m}": self.best,
            "best_trial": None if self.best_trial is None else fmt_trial(self.best_trial),
            "best_origin": self.best_origin,
            "best_pct_of_reference": self.best_pct_of_reference,
            "recovered_share": self.recovered_share,
            "trial_equivalents": c.trial_equivalents,
            "target_gpu_hours": c.target_gpu_hours,
            "target_gpu_hours_basis": c.basis,
            "compute_hours_here": c.compute_hours_here,
            "compute_unit_here": c.compute_unit_here,
            "planned_gpu_hours_per_trial": c.planned_gpu_hours_per_trial,
            "text": self.text(),
        }


def headline(
    plan: Mapping[str, Any], records: list[TrialRecord], *, cost: Cost | None = None
) -> Headline:
    """The headline of a sweep from its plan (plan.json's dict) and its trials. `cost`
    replaces the cost read from the records (the live view adds the running trials')."""
    metric = plan["objective"]["metric"]
    direction = plan["objective"]["direction"]
    ranked = best_first([r for r in records if r.state != "WAITING"], direction)
    best = next((r for rank, r in ranked if rank is not None and r.value is not None), None)
    seed = next(
        (
            r
            for r in records
            if r.origin == "reference" and r.state == "COMPLETE" and r.value is not None
        ),
        None,
    )
    ref = plan.get("reference") or {}
    return Headline(
        metric=metric,
        direction=direction,
        gpus=int((plan.get("target") or {}).get("gpus") or 0),
        reference_gpus=ref.get("gpus"),
        reference=reference_score(plan, metric),
        reference_source=(plan.get("reference_sources") or {}).get(f"metric.{metric}"),
        seed=None if seed is None else float(seed.value),  # type: ignore[arg-type]
        seed_trial=None if seed is None else seed.number,
        best=None if best is None else float(best.value),  # type: ignore[arg-type]
        best_trial=None if best is None else best.number,
        best_origin=None if best is None else best.origin,
        cost=cost if cost is not None else sweep_cost(records, plan),
    )
