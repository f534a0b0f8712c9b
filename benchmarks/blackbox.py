"""A tabulated minibev blackbox: learning curves for any (lr, warmup, lr floor) in milliseconds.

Testing a search strategy (sampler, pruner, planner ranges) against real training costs ~1 min a
trial; against this table it costs nothing, so a strategy can be run over hundreds of seeds and
its spread measured. The table is minibev `small` at 160 virtual GPUs x 1 sample (24 epochs,
240 iterations), made by benchmarks/tabulate.py (benchmarks/data/minibev_small_160g.csv.gz and
its .json sidecar: command, minibev revision, grid, seeds, wall times).

    bb = Blackbox.load()                                   # the default table
    c = bb.curve(8.94e-3, 24, 1e-3)                        # seed-averaged, interpolated
    c = bb.curve(8.94e-3, 24, 1e-3, rng=np.random.default_rng(0))   # one "run" with seed noise
    c.nds[-1], c.map, bb.best_final(), bb.epoch_time_s

    python benchmarks/blackbox.py              # summary of the table
    python benchmarks/blackbox.py --validate   # predicted vs actual on the held-out runs

Interpolation. The runs of each grid point are first averaged over seeds, per epoch. A query is
then answered by multilinear interpolation between the 2 x 2 x 2 neighbouring grid points:
linear in log(lr), in warmup_iters, and in log(min_lr_ratio) (the coordinates the recipes are
scaled in); a coordinate outside the grid is clamped to its nearest end, so the table never
extrapolates. An axis with a single value (a partial table) is constant along it.

Seed noise. Let x[g, s] be run s of grid point g (its 24 NDS values followed by its 24 mAP
values), n_g the number of seeds of g, and m[g] their mean. The residuals r[g, s] = x[g, s] -
m[g] are pooled over every grid point with n_g >= 2 into the covariance

    C = sum_g sum_s r[g, s] r[g, s]^T / sum_g (n_g - 1),

the pooled within-point estimate (Bessel-corrected: with 2 seeds the raw rms of r is smaller by
sqrt(2)) of the covariance of one run about the true seed mean. Its diagonal gives the per-epoch
seed spread `seed_sd` (NDS) and `seed_sd_map`. With an `rng`, `curve` adds a draw from N(0, C):
one vector for the whole curve, so the noise is correlated over epochs and between NDS and mAP
as measured, not jagged; NDS and mAP are then clipped to [0, 1]. The spread is pooled over the
whole grid, so it is an average: it is larger than this at high lr and smaller at low lr.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"
TABLE = DATA / "minibev_small_160g.csv.gz"
HELD_OUT = DATA / "minibev_small_160g_heldout.csv.gz"
AXES = ("lr", "warmup_iters", "min_lr_ratio")
LOG_AXIS = {"lr": True, "warmup_iters": False, "min_lr_ratio": True}
METRICS = ("NDS", "mAP")


@dataclass(frozen=True)
class Curve:
    """Per-epoch validation metrics of one (real or emulated) run, epoch 1 first."""

    nds: list[float]
    map: list[float]

    @property
    def final_nds(self) -> float:
        return self.nds[-1]

    @property
    def final_map(self) -> float:
        return self.map[-1]


class Blackbox:
    """Seed-averaged curves on a lattice of grid points, and the measured seed noise."""

    def __init__(self, frame: pd.DataFrame, partial: bool = False) -> None:
        """`frame`: the long table (one row per run and epoch, tabulate.py's columns).

        A table must hold every combination of its axis values. `partial=True` accepts an
        unfinished one by dropping axis values until the rest is complete (the value missing
        the most points first), so a tabulation can be used while it still runs.
        """
        epochs = sorted(frame["epoch"].unique())
        sizes = frame.groupby([*AXES, "seed"]).size()
        if (sizes != len(epochs)).any():
            raise ValueError(f"every run needs epochs {epochs[0]}..{epochs[-1]}: {sizes.min()=}")
        self.epochs: list[int] = [int(e) for e in epochs]
        self.frame = frame
        runs = frame.sort_values([*AXES, "seed", "epoch"])
        by_run = runs.groupby([*AXES, "seed"], sort=True)
        self._runs = {
            key: np.concatenate([g["NDS"].to_numpy(), g["mAP"].to_numpy()]) for key, g in by_run
        }
        self.epoch_time_s: float = float(
            (runs.groupby([*AXES, "seed"])["wall_s"].first() / len(epochs)).mean()
        )
        self.axes = self._lattice(partial)
        self._mean = self._seed_means()
        self.cov = self._seed_covariance()
        vals, vecs = np.linalg.eigh(self.cov)
        self._noise_factor = vecs * np.sqrt(np.clip(vals, 0.0, None))
        n = len(self.epochs)
        self.seed_sd: np.ndarray = np.sqrt(np.diag(self.cov)[:n])
        self.seed_sd_map: np.ndarray = np.sqrt(np.diag(self.cov)[n:])

    @classmethod
    def load(cls, path: Path | str = TABLE, partial: bool = False) -> Blackbox:
        return cls(pd.read_csv(path), partial=partial)

    def _lattice(self, partial: bool) -> dict[str, np.ndarray]:
        points = {key[:3] for key in self._runs}
        axes = {a: sorted({p[i] for p in points}) for i, a in enumerate(AXES)}
        while True:
            missing = [
                (lr, w, m)
                for lr in axes["lr"]
                for w in axes["warmup_iters"]
                for m in axes["min_lr_ratio"]
                if (lr, w, m) not in points
            ]
            if not missing:
                return {a: np.array(v, dtype=float) for a, v in axes.items()}
            if not partial:
                raise ValueError(f"{len(missing)} grid points missing, e.g. {missing[0]}")
            counts = {
                (i, v): sum(p[i] == v for p in missing)
                for i, a in enumerate(AXES)
                for v in axes[a]
                if len(axes[a]) > 1
            }
            if not counts:
                raise ValueError("no complete lattice in the table")
            i, v = max(counts, key=lambda k: (counts[k], -k[0]))
            axes[AXES[i]].remove(v)

    def _seed_means(self) -> np.ndarray:
        """(n_lr, n_warmup, n_min_lr, 2 * n_epochs): NDS then mAP, averaged over seeds."""
        shape = [len(self.axes[a]) for a in AXES]
        mean = np.empty([*shape, 2 * len(self.epochs)])
        for idx in np.ndindex(*shape):
            point = tuple(self.axes[a][i] for a, i in zip(AXES, idx, strict=True))
            mean[idx] = np.mean([x for k, x in self._runs.items() if k[:3] == point], axis=0)
        return mean

    def _seed_covariance(self) -> np.ndarray:
        """C of the module docstring, over every point with 2+ seeds (kept or not)."""
        groups: dict[tuple, list[np.ndarray]] = {}
        for key, x in self._runs.items():
            groups.setdefault(key[:3], []).append(x)
        dim = 2 * len(self.epochs)
        scatter, dof = np.zeros((dim, dim)), 0
        for xs in groups.values():
            if len(xs) < 2:
                continue
            r = np.array(xs) - np.mean(xs, axis=0)
            scatter += r.T @ r
            dof += len(xs) - 1
        return scatter / dof if dof else scatter

    def _weights(self, axis: str, value: float) -> list[tuple[int, float]]:
        """Grid indices and weights of `value` on `axis`, clamped to the grid's ends."""
        grid = self.axes[axis]
        if len(grid) == 1:
            return [(0, 1.0)]
        f = np.log if LOG_AXIS[axis] else np.asarray
        xs, x = f(grid), float(np.clip(f(value), f(grid[0]), f(grid[-1])))
        i = min(int(np.searchsorted(xs, x, side="right")) - 1, len(grid) - 2)
        t = (x - xs[i]) / (xs[i + 1] - xs[i])
        return [(i, 1.0 - t), (i + 1, t)]

    def curve(
        self,
        lr: float,
        warmup_iters: float,
        min_lr_ratio: float,
        rng: np.random.Generator | None = None,
    ) -> Curve:
        """The interpolated seed-mean curve; with `rng`, one run's worth of seed noise added."""
        if lr <= 0 or min_lr_ratio <= 0:
            raise ValueError("lr and min_lr_ratio must be positive (they interpolate in log)")
        x = np.zeros(2 * len(self.epochs))
        for i, wi in self._weights("lr", lr):
            for j, wj in self._weights("warmup_iters", warmup_iters):
                for k, wk in self._weights("min_lr_ratio", min_lr_ratio):
                    x += wi * wj * wk * self._mean[i, j, k]
        if rng is not None:
            x = np.clip(x + self._noise_factor @ rng.standard_normal(len(x)), 0.0, 1.0)
        n = len(self.epochs)
        return Curve(nds=x[:n].tolist(), map=x[n:].tolist())

    def final_table(self) -> pd.DataFrame:
        """Seed-averaged final NDS/mAP, its per-point seed sd, and seeds, per grid point."""
        last = self.frame[self.frame["epoch"] == self.epochs[-1]]
        g = last.groupby(list(AXES))
        out = g[list(METRICS)].mean()
        out["NDS_sd"] = g["NDS"].std()
        out["seeds"] = g.size()
        keep = np.logical_and.reduce(
            [out.index.get_level_values(a).isin(self.axes[a]) for a in AXES]
        )
        return out[keep].reset_index()

    def best_final(self) -> dict[str, float]:
        """The grid point with the best seed-averaged final NDS: its coordinates, NDS and mAP."""
        table = self.final_table()
        row = table.loc[table["NDS"].idxmax()]
        return {c: float(row[c]) for c in [*AXES, *METRICS]}


def validate(
    table: Path | str = TABLE, held_out: Path | str = HELD_OUT, partial: bool = False
) -> pd.DataFrame:
    """Predicted (noise-free) vs actual final NDS of each held-out run, printed and returned."""
    bb = Blackbox.load(table, partial=partial)
    runs = pd.read_csv(held_out)
    final = runs[runs["epoch"] == runs["epoch"].max()]
    rows = []
    for r in final.itertuples():
        pred = bb.curve(r.lr, r.warmup_iters, r.min_lr_ratio).final_nds
        rows.append(
            dict(
                lr=r.lr,
                warmup_iters=r.warmup_iters,
                min_lr_ratio=r.min_lr_ratio,
                seed=r.seed,
                predicted=pred,
                actual=r.NDS,
                abs_error=abs(pred - r.NDS),
            )
        )
    out = pd.DataFrame(rows)
    print(out.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    sd = float(bb.seed_sd[-1])
    print(
        f"\nmean absolute error {out['abs_error'].mean():.4f} over {len(out)} held-out runs; "
        f"measured seed spread (sd of one run, final NDS) {sd:.4f}: seed noise alone would give "
        f"an expected |error| of {sd * math.sqrt(2 / math.pi):.4f} against the true mean, "
        f"{sd * math.sqrt(1.5 * 2 / math.pi):.4f} against a 2-seed mean"
    )
    return out


def rank_correlation(
    bb: Blackbox, lr_range: tuple[float, float] = (7.155e-3, 5e-2)
) -> pd.DataFrame:
    """Spearman's rank correlation between NDS after epoch e and the final NDS, for every e:
    over single runs (each seed its own run, what a pruner sees) and over seed-averaged grid
    points (the recipe's own rank), and over the runs whose lr lies in `lr_range` (default:
    the shipped lr_scaling.yaml's lr range at 160 GPUs, the trials a pruner there compares,
    where the easy far-off lrs do not inflate the figure). A pruner that stops trials at
    epoch e can trust that epoch's ranking only as far as this correlation goes."""
    from scipy.stats import spearmanr

    last = bb.epochs[-1]
    runs = bb.frame.pivot_table(index=[*AXES, "seed"], columns="epoch", values="NDS")
    points = runs.groupby(level=list(AXES)).mean()
    lr = runs.index.get_level_values("lr")
    inside = runs[(lr >= lr_range[0]) & (lr <= lr_range[1])]
    rows = []
    for e in bb.epochs:
        rho_run = spearmanr(runs[e], runs[last]).statistic
        rho_point = spearmanr(points[e], points[last]).statistic
        # The share of the top-10% final runs that rank in the top half at epoch e: what a
        # median pruner at e would keep of the best.
        top = runs[last] >= runs[last].quantile(0.9)
        kept = (runs.loc[top, e] >= runs[e].median()).mean()
        rho_in = spearmanr(inside[e], inside[last]).statistic
        rows.append(
            dict(
                epoch=e,
                spearman_runs=rho_run,
                spearman_points=rho_point,
                spearman_runs_in_range=rho_in,
                top10_kept=kept,
            )
        )
    return pd.DataFrame(rows)


def summary(bb: Blackbox) -> None:
    """Final NDS by lr for each (warmup, floor) slice, the seed spread, best point, epoch time."""
    t = bb.final_table()
    wide = t.pivot_table(index="lr", columns=["warmup_iters", "min_lr_ratio"], values="NDS")
    print("seed-averaged final NDS (rows: lr; columns: warmup_iters, min_lr_ratio)")
    print(wide.to_string(float_format=lambda v: f"{v:.3f}"))
    grid = {a: [float(f"{v:.4g}") for v in vals] for a, vals in bb.axes.items()}
    print(f"\nruns {bb.frame.groupby([*AXES, 'seed']).ngroups} in the table; lattice used {grid}")
    n = len(bb.epochs)
    at = sorted({0, n // 4, n // 2, 3 * n // 4, n - 1})
    sd = ", ".join(f"{bb.seed_sd[i]:.3f}" for i in at)
    print(f"seed sd of NDS at epochs {', '.join(str(bb.epochs[i]) for i in at)}: {sd}")
    print(f"final mAP seed sd {bb.seed_sd_map[-1]:.3f}; best point {bb.best_final()}")
    print(f"mean wall time per epoch {bb.epoch_time_s:.2f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=Path, default=TABLE)
    p.add_argument("--held-out", type=Path, default=HELD_OUT)
    p.add_argument("--validate", action="store_true", help="predicted vs actual, held-out runs")
    p.add_argument("--partial", action="store_true", help="accept an unfinished table")
    p.add_argument(
        "--rank-correlation", action="store_true", help="Spearman of NDS@epoch vs final NDS"
    )
    args = p.parse_args()
    if args.rank_correlation:
        out = rank_correlation(Blackbox.load(args.table, partial=args.partial))
        print(out.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    elif args.validate:
        validate(args.table, args.held_out, partial=args.partial)
    else:
        summary(Blackbox.load(args.table, partial=args.partial))


if __name__ == "__main__":
    main()
