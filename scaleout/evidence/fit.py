"""lr_opt as a function of the global batch, from sweeps already run (docs/evidence.md).

Each sweep gives one point: the geometric mean of its top trials' lr (the best completed
trials by the objective, not only the argmax) with the spread of their ln lr as its
uncertainty. Through the points:

- power: ln(lr_opt / lr_ref) = alpha ln k, weighted least squares through the reference recipe
  (k = 1 at its lr: the form `{rule: power, alpha: A}` predicts), 1 parameter;
- power_free: ln lr_opt = ln c + alpha ln k with both free, a check that the reference lies on
  the line;
- surge (Li et al. 2024, arXiv 2405.14578, the Adam-style optimum):
  lr_opt(B) = lr_max / (0.5 (sqrt(B_peak / B) + sqrt(B / B_peak))), fitted only where the
  points rise and then fall.

Intervals are 95%: the parameter's standard error from the weights, scaled by the residuals
where they exceed the weights (sqrt(chi2/dof) when above 1), times Student's t for the residual
degrees of freedom. Fits are compared by AIC (chi2 + 2 x parameters). numpy only; pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SIGMA_FLOOR = 0.1  # ln units (~10%): the least uncertainty one sweep's optimum is given
GRID_SAMPLES = 400
# Student's t, 97.5th percentile, by degrees of freedom (1.96 beyond the table).
_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042,
}  # fmt: skip


def t975(dof: int) -> float:
    if dof <= 0:
        return 1.96
    known = [d for d in _T975 if d <= dof]
    return _T975[max(known)] if dof <= 30 else 1.96


@dataclass(frozen=True)
class Point:
    """One sweep's optimum."""

    sweep: str
    global_batch: int
    k: float
    lr_opt: float
    sigma_ln: float
    lr_best: float
    objective_best: float
    trial_best: int
    top: tuple[dict, ...]
    completed: int
    warmup_best: float | None = None
    warmup_opt: float | None = None

    def to_dict(self) -> dict:
        return {
            "sweep": self.sweep,
            "global_batch": self.global_batch,
            "k": self.k,
            "lr_opt": self.lr_opt,
            "lr_opt_interval": [
                self.lr_opt * math.exp(-1.96 * self.sigma_ln),
                self.lr_opt * math.exp(1.96 * self.sigma_ln),
            ],
            "sigma_ln_lr": self.sigma_ln,
            "lr_best": self.lr_best,
            "objective_best": self.objective_best,
            "trial_best": self.trial_best,
            "warmup_iters_best": self.warmup_best,
            "warmup_iters_opt": self.warmup_opt,
            "top_trials": list(self.top),
            "completed_trials": self.completed,
        }


def optimum(
    sweep: str,
    rows: Sequence[dict],
    *,
    global_batch: int,
    k: float,
    maximize: bool = True,
    top: int = 3,
) -> Point:
    """The optimum of one sweep from its completed trials (dicts with trial, lr, objective and
    optionally warmup_iters). Raises ValueError with fewer than two."""
    done = [r for r in rows if _finite(r.get("lr")) and _finite(r.get("objective"))]
    if len(done) < 2:
        raise ValueError(
            f"sweep {sweep}: {len(done)} completed trial(s) with an lr and an objective; "
            "an optimum with an uncertainty needs at least 2"
        )
    ranked = sorted(done, key=lambda r: -r["objective"] if maximize else r["objective"])
    best = ranked[: max(2, min(top, len(ranked)))]
    logs = np.log([r["lr"] for r in best])
    sigma = max(float(np.std(logs, ddof=1)), SIGMA_FLOOR)
    warm = [r.get("warmup_iters") for r in best if _finite(r.get("warmup_iters"))]
    first = ranked[0]
    return Point(
        sweep=sweep,
        global_batch=int(global_batch),
        k=float(k),
        lr_opt=float(np.exp(logs.mean())),
        sigma_ln=sigma,
        lr_best=float(first["lr"]),
        objective_best=float(first["objective"]),
        trial_best=int(first["trial"]),
        top=tuple(
            {"trial": int(r["trial"]), "lr": float(r["lr"]), "objective": float(r["objective"])}
            for r in best
        ),
        completed=len(done),
        warmup_best=float(first["warmup_iters"]) if _finite(first.get("warmup_iters")) else None,
        warmup_opt=float(np.exp(np.log(warm).mean())) if warm and min(warm) > 0 else None,
    )


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _arrays(points: Sequence[Point]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.log([p.k for p in points])
    y = np.log([p.lr_opt for p in points])
    w = 1.0 / np.square([p.sigma_ln for p in points])
    return x, y, w


def _scale(chi2: float, dof: int) -> float:
    return math.sqrt(max(1.0, chi2 / dof)) if dof > 0 else 1.0


def fit_power(points: Sequence[Point], lr_ref: float) -> dict:
    """lr_opt = lr_ref x k^alpha through the reference recipe (1 parameter)."""
    x, y, w = _arrays(points)
    y = y - math.log(lr_ref)
    sxx = float(np.sum(w * x * x))
    if sxx <= 0:
        raise ValueError("every sweep is at the reference's global batch: nothing to fit")
    alpha = float(np.sum(w * x * y) / sxx)
    chi2 = float(np.sum(w * (y - alpha * x) ** 2))
    dof = len(points) - 1
    se = _scale(chi2, dof) / math.sqrt(sxx)
    t = t975(dof)
    return {
        "form": "lr_opt = lr_ref x k^alpha (through the reference recipe)",
        "lr_ref": lr_ref,
        "alpha": alpha,
        "se": se,
        "interval": [alpha - t * se, alpha + t * se],
        "chi2": chi2,
        "dof": dof,
        "aic": chi2 + 2 * 1,
    }


def fit_power_free(points: Sequence[Point]) -> dict | None:
    """ln lr_opt = ln c + alpha ln k, both free (None with fewer than two batches)."""
    x, y, w = _arrays(points)
    if len(set(np.round(x, 12))) < 2:
        return None
    X = np.stack([np.ones_like(x), x], axis=1)
    A = X.T @ (w[:, None] * X)
    cov = np.linalg.inv(A)
    beta = cov @ (X.T @ (w * y))
    chi2 = float(np.sum(w * (y - X @ beta) ** 2))
    dof = len(points) - 2
    cov = cov * _scale(chi2, dof) ** 2
    t = t975(dof)
    se = float(math.sqrt(cov[1, 1]))
    return {
        "form": "lr_opt = c x k^alpha (both free)",
        "lr_at_k1": float(math.exp(beta[0])),
        "alpha": float(beta[1]),
        "se": se,
        "interval": [float(beta[1]) - t * se, float(beta[1]) + t * se],
        "chi2": chi2,
        "dof": dof,
        "aic": chi2 + 2 * 2,
        "_beta": beta.tolist(),
        "_cov": cov.tolist(),
    }


def has_peak(points: Sequence[Point]) -> bool:
    """Whether lr_opt rises and then falls with the global batch: its largest value strictly
    between the smallest and the largest batch (at least three batches)."""
    by_batch = sorted(points, key=lambda p: p.global_batch)
    if len({p.global_batch for p in by_batch}) < 3:
        return False
    top = max(range(len(by_batch)), key=lambda i: by_batch[i].lr_opt)
    return 0 < top < len(by_batch) - 1


def surge_lr(b: np.ndarray | float, lr_max: float, b_peak: float) -> np.ndarray | float:
    """Li et al. 2024's Adam-style optimum: lr_max at B = b_peak, ~sqrt(B) below it."""
    return lr_max / (0.5 * (np.sqrt(b_peak / b) + np.sqrt(b / b_peak)))


def fit_surge(points: Sequence[Point]) -> dict:
    """lr_max and B_peak by weighted least squares in ln lr (a grid over ln B_peak, lr_max in
    closed form at each)."""
    b = np.array([p.global_batch for p in points], dtype=float)
    y = np.log([p.lr_opt for p in points])
    w = 1.0 / np.square([p.sigma_ln for p in points])
    grid = np.exp(np.linspace(math.log(b.min() / 10), math.log(b.max() * 10), GRID_SAMPLES))

    def solve(peak: float) -> tuple[float, float]:
        shape = -np.log(0.5 * (np.sqrt(peak / b) + np.sqrt(b / peak)))
        ln_max = float(np.sum(w * (y - shape)) / np.sum(w))
        return float(np.sum(w * (y - ln_max - shape) ** 2)), ln_max

    fits = [solve(p) for p in grid]
    i = int(np.argmin([f[0] for f in fits]))
    chi2, ln_max = fits[i]
    dof = len(points) - 2
    return {
        "form": "lr_opt = lr_max / (0.5 (sqrt(B_peak/B) + sqrt(B/B_peak))) (Li et al. 2024)",
        "lr_max": float(math.exp(ln_max)),
        "b_peak": float(grid[i]),
        "chi2": chi2,
        "dof": dof,
        "aic": chi2 + 2 * 2,
    }


def predict(fit: dict, kind: str, k: float, global_batch: int) -> dict:
    """A fit's lr at the target with its 95% interval (surge: no interval)."""
    if kind == "power":
        lr = fit["lr_ref"] * k ** fit["alpha"]
        ends = sorted(fit["lr_ref"] * k**a for a in fit["interval"])
        return {"lr": lr, "interval": ends}
    if kind == "power_free":
        x = math.log(k)
        beta, cov = np.array(fit["_beta"]), np.array(fit["_cov"])
        v = np.array([1.0, x])
        se = float(math.sqrt(v @ cov @ v))
        centre = float(v @ beta)
        t = t975(fit["dof"])
        return {
            "lr": math.exp(centre),
            "interval": [math.exp(centre - t * se), math.exp(centre + t * se)],
        }
    return {
        "lr": float(surge_lr(float(global_batch), fit["lr_max"], fit["b_peak"])),
        "interval": None,
    }
