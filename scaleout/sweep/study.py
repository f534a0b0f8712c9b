"""The parts of the Optuna study behind a sweep, built from the plan: the storage (SQLite in
WAL), the sampler, the pruner and the distributions. Optuna's public API only; the searcher
(`scaleout.sweep.search`) is the one module that reaches past it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from scaleout.core.errors import StateError, UsageError, scrub
from scaleout.core.plan import Plan

optuna.logging.set_verbosity(optuna.logging.WARNING)
# The reference seed runs outside the lr range on purpose (plan note); Optuna warns for it.
warnings.filterwarnings("ignore", message=r"Fixed parameter .* is out of range")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The RDB storage, or a clear error naming the URL before any trial starts."""
    try:
        if url.startswith("sqlite:///"):
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": 30}}
            )
            _sqlite_wal(storage)
            return storage
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:  # sqlalchemy raises many kinds; the user needs the URL and why
        raise StateError(
            scrub(f"cannot open the study database {url}: {type(exc).__name__}: {exc}", url),
            hint="check --storage (a SQLAlchemy URL) and that the server answers",
        ) from None


def _sqlite_wal(storage: optuna.storages.RDBStorage) -> None:
    """WAL journal with synchronous=NORMAL: a commit no longer waits for an fsync (the
    controller makes dozens per trial), readers (`scaleout status`) never block the writer,
    and a process killed at any point leaves a consistent database. Only a power loss can
    drop the last commits; it cannot corrupt the file."""
    from sqlalchemy import event

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections opened before the listener get the pragmas too


def create_or_load(url: str, name: str, plan: Plan) -> optuna.Study:
    """The sweep's study, created on first use. Its sampler is the searcher's to set:
    `OptunaSearcher` seeds it from the trials already in the study."""
    storage = open_storage(url)
    direction = "maximize" if plan.direction == "maximize" else "minimize"
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=direction,
        sampler=optuna.samplers.RandomSampler(),  # replaced by the searcher
        pruner=make_pruner(plan),
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise StateError(
            f"the study {name} was created to {study.direction.name.lower()} "
            f"{plan.objective}, the space now says {direction}"
        )
    return study


def sampler_seed(seed: int | None, trials: int) -> int | None:
    """The sampler's seed when the study already holds `trials` trials.

    A sampler seeded alike on every open restarts its random stream, and a sweep resumed while
    the sampler still draws at random proposed the very point it drew first (docs/sweep.md).
    Deriving the seed from (seed, trials) continues deterministically instead: the same sweep
    resumed at the same point proposes the same next trials. A new study keeps `seed` itself.
    """
    if seed is None or trials == 0:
        return seed
    return int(np.random.SeedSequence([seed, trials]).generate_state(1)[0])


def make_sampler(plan: Plan, trials: int = 0) -> optuna.samplers.BaseSampler:
    """The space's sampler, for a study that holds `trials` trials (see `sampler_seed`)."""
    spec = plan.space.sampler
    opts = dict(spec.options)
    # QMC keeps its position in the sequence in the study; its seed only scrambles the
    # sequence, which must stay the same across a resume.
    seed = spec.seed if spec.type == "qmc" else sampler_seed(spec.seed, trials)
    try:
        if spec.type == "tpe":
            opts.setdefault("n_startup_trials", max(len(plan.seeds) + 1, 4))
            return optuna.samplers.TPESampler(seed=seed, **opts)
        if spec.type == "random":
            return optuna.samplers.RandomSampler(seed=seed, **opts)
        if spec.type == "qmc":
            opts.setdefault("qmc_type", "sobol")
            opts.setdefault("scramble", True)
            return optuna.samplers.QMCSampler(seed=seed, **opts)
        if spec.type == "grid":
            return optuna.samplers.GridSampler(grid_space(plan, opts), seed=seed)
        if spec.type == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, **opts)
        if spec.type == "gp":
            return optuna.samplers.GPSampler(seed=seed, **opts)
    except TypeError as exc:
        raise UsageError(f"{plan.space_path}: sampler.options: {exc}") from None
    raise UsageError(f"{plan.space_path}: sampler.type: unknown {spec.type!r}")


def grid_space(plan: Plan, opts: dict[str, Any]) -> dict[str, list[Any]]:
    """Grid points: `options.points` per parameter (default 3), spaced on the range's scale,
    or explicit lists in `options.values`."""
    values = dict(opts.get("values", {}))
    points = int(opts.get("points", 3))
    for name, rng in plan.ranges.items():
        if name in values:
            continue
        if points == 1:
            grid = [math.sqrt(rng.low * rng.high) if rng.log else (rng.low + rng.high) / 2]
        elif rng.log:
            step = (math.log(rng.high) - math.log(rng.low)) / (points - 1)
            grid = [math.exp(math.log(rng.low) + i * step) for i in range(points)]
            grid[0], grid[-1] = rng.low, rng.high  # exact ends: exp(log(x)) may leave the range
        else:
            step = (rng.high - rng.low) / (points - 1)
            grid = [rng.low + i * step for i in range(points)]
        values[name] = sorted({round(v) for v in grid}) if rng.integer else grid
    return values


def make_pruner(plan: Plan) -> optuna.pruners.BasePruner:
    spec = plan.space.pruner
    opts = dict(spec.options)
    try:
        if spec.type == "none":
            return optuna.pruners.NopPruner()
        if spec.type == "median":
            return optuna.pruners.MedianPruner(**opts)
        if spec.type == "asha":
            opts.setdefault("min_resource", 1)
            return optuna.pruners.SuccessiveHalvingPruner(**opts)
        if spec.type == "hyperband":
            opts.setdefault("min_resource", 1)
            opts.setdefault("max_resource", plan.max_trial_epochs)  # the longest trial
            return optuna.pruners.HyperbandPruner(**opts)
    except TypeError as exc:
        raise UsageError(f"{plan.space_path}: pruner.options: {exc}") from None
    raise UsageError(f"{plan.space_path}: pruner.type: unknown {spec.type!r}")


def distributions(plan: Plan) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {}
    for name, rng in plan.ranges.items():
        if rng.integer:
            out[name] = IntDistribution(int(rng.low), int(rng.high), log=rng.log)
        else:
            out[name] = FloatDistribution(rng.low, rng.high, log=rng.log)
    return out
