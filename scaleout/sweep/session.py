"""Opening a sweep: plan it, check its stores, take its lock, create or resume its study.

`build_plan` is light (no torch/mlflow/ray) and serves `scaleout plan`; `open_sweep` does
the rest for `scaleout sweep`. A sweep folder is written only after every check passed,
so a bad command never leaves half a sweep behind, and never touches a running one.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scaleout.core.errors import UsageError
from scaleout.core.plan import Plan, make_plan, plan_to_dict
from scaleout.core.rules import Reference
from scaleout.core.space import load_space, parse_space, resolve_reference
from scaleout.executors import check_executor, make_executor  # noqa: F401 - re-exported
from scaleout.sweep.workspace import (
    ControllerLock,
    Sweep,
    check_name,
    default_name,
    space_digest,
    workspace_root,
    write_atomic,
)


def trainer_from_choice(choice: dict[str, Any]) -> Any:
    from scaleout.trainers import get_trainer

    return get_trainer(
        choice["name"],
        config=choice.get("config"),
        repo=choice.get("repo"),
        preset=choice.get("preset"),
        profile=choice.get("profile"),
        **dict(choice.get("options") or {}),
    )


def merge_choice(space: Any, flags: dict[str, Any] | None) -> dict[str, Any]:
    """The trainer the user asked for: flags over the space file's trainer: section."""
    spec = space.trainer
    flags = flags or {}
    return {
        "name": flags.get("name") or spec.name,
        "preset": flags.get("preset") or spec.preset,
        "config": flags.get("config") or spec.config,
        "repo": flags.get("repo") or spec.repo,
        "profile": flags.get("profile") or spec.profile,
        "options": {
            **spec.options,
            **({"reference_gpus": flags["reference_gpus"]} if flags.get("reference_gpus") else {}),
        },
    }


def build_plan(
    space_file: str | Path,
    gpus: int,
    *,
    samples_per_gpu: int | None = None,
    trainer_flags: dict[str, Any] | None = None,
    need_trainer: bool = False,
    space_text: str | None = None,
) -> tuple[Plan, Any, dict[str, Any]]:
    """Space file + reference (space over the trainer's config) + target -> plan.

    The trainer's config is read only when the space leaves reference values out (or the
    caller needs the trainer anyway). Returns (plan, trainer or None, trainer choice).
    """
    if space_text is None:
        space = load_space(space_file)
    else:
        import yaml

        space = parse_space(yaml.safe_load(space_text), space_file)
    choice = merge_choice(space, trainer_flags)
    given = space.reference.model_dump(exclude_none=True)
    trainer = None
    values: dict[str, Any] = {}
    required = need_trainer or any(n not in given for n in Reference.required_names())
    # A trainer named on the command line is read even when the space file gives every
    # reference value: the plan lists where the two disagree, and when trials evaluate.
    # Unreadable there (no --repo on a laptop), the plan goes on from the space file alone.
    named = any((trainer_flags or {}).get(k) for k in ("name", "config", "repo", "profile"))
    if required or named:
        try:
            trainer = trainer_from_choice(choice)
            values = trainer.reference()
        except UsageError:
            if required:
                raise
            trainer, values = None, {}
    reference, sources = resolve_reference(space, values, space_file)
    plan = make_plan(
        space,
        reference,
        gpus,
        samples_per_gpu=samples_per_gpu,
        reference_sources=sources,
        space_path=space_file,
        trainer_values=values if trainer is not None else None,
        trainer=choice if trainer is not None or named else None,
    )
    return plan, trainer, choice


@dataclass
class SweepRequest:
    """What `scaleout sweep` was asked. None means: the stored value (resume) or the default."""

    space: str | None = None
    gpus: int | None = None
    name: str | None = None
    samples_per_gpu: int | None = None
    trials: int | None = None
    parallel: int | None = None
    executor: str = "local"
    executor_options: dict[str, Any] = field(default_factory=dict)
    trainer_flags: dict[str, Any] = field(default_factory=dict)
    workspace: str | None = None
    mlflow_uri: str | None = None
    storage: str | None = None
    resume: bool = False


@dataclass
class OpenSweep:
    """An opened sweep, its lock held. `budget_change` is (stored, new) trial budget when
    `--trials` changed it on this resume, else None."""

    sweep: Sweep
    meta: dict[str, Any]
    plan: Plan
    trainer: Any
    searcher: Any  # an OptunaSearcher (its study feeds the leaderboard)
    tracker: Any
    parent_run_id: str
    lock: ControllerLock
    resumed: bool
    budget_change: tuple[int, int] | None = None


def open_sweep(req: SweepRequest) -> OpenSweep:
    """Create or resume the sweep `req` names. Checks everything before writing anything."""
    from scaleout.sweep.search import OptunaSearcher, TrialState
    from scaleout.sweep.study import create_or_load, open_storage
    from scaleout.sweep.tracking import MlflowTracker, default_artifact_root, default_tracking_uri

    root = workspace_root(req.workspace)
    if req.name is None and (req.space is None or req.gpus is None):
        raise UsageError("give --gpus and --space to start a sweep, or --name NAME to resume one")
    name = check_name(req.name or default_name(req.space, req.gpus))  # type: ignore[arg-type]
    sweep = Sweep(root, name)
    resumed = sweep.exists()
    if req.resume and not resumed:
        sweep.read_meta()  # raises: no such sweep, listing the ones that exist
    if resumed:
        meta = sweep.read_meta()
        _check_same_sweep(sweep, meta, req)
        space_text = (sweep.dir / "space.yaml").read_text()
        space_path = meta["space_file"]
        gpus = meta["gpus"]
        spg = meta["samples_per_gpu"]
        trainer_flags = meta["trainer"]
    else:
        if req.space is None or req.gpus is None:
            raise UsageError(f"no sweep named {name!r} yet: give --gpus and --space to start it")
        space_path = str(req.space)
        try:
            space_text = Path(space_path).read_text()
        except OSError:
            load_space(space_path)  # raises the standard "no such file" message
            raise
        gpus, spg, trainer_flags = req.gpus, req.samples_per_gpu, req.trainer_flags
        meta = {}
    plan, trainer, choice = build_plan(
        space_path,
        gpus,
        samples_per_gpu=spg,
        trainer_flags=trainer_flags,
        need_trainer=True,
        space_text=space_text,
    )
    if not resumed and req.trials is not None:
        plan = replace(plan, trials=req.trials)

    if not resumed:
        check_executor(req.executor, req.executor_options, plan.gpus, req.parallel)

    storage_url = meta.get("storage") or req.storage or sweep.study_url
    mlflow_uri = meta.get("mlflow_uri") or default_tracking_uri(req.mlflow_uri, root)
    if not resumed:
        sweep.dir.mkdir(parents=True, exist_ok=True)  # the SQLite files live here
    try:
        open_storage(storage_url)
        tracker = MlflowTracker(
            mlflow_uri, default_artifact_root(root) if mlflow_uri.startswith("sqlite:///") else None
        )
        tracker.check()
    except Exception:
        if not resumed:
            _remove_empty_sweep_dir(sweep)
        raise

    lock = ControllerLock(sweep)
    lock.acquire()
    try:
        if not resumed:
            meta = {
                "name": name,
                "uid": uuid.uuid4().hex,
                "created": time.time(),
                "space_file": str(Path(space_path).resolve()),
                "space_digest": space_digest(space_text),
                "gpus": gpus,
                "samples_per_gpu": plan.samples_per_gpu,
                "trials": plan.trials,
                "trainer": choice,
                "executor": req.executor,
                "executor_options": req.executor_options,
                "storage": storage_url,
                "mlflow_uri": mlflow_uri,
            }
            write_atomic(sweep.dir / "space.yaml", space_text)
            import json

            write_atomic(sweep.dir / "plan.json", json.dumps(plan_to_dict(plan), indent=2))
        searcher = OptunaSearcher(create_or_load(storage_url, name, plan), plan)
        study = searcher.study
        change = None
        if resumed:
            stored = int(study.user_attrs.get("trials", meta["trials"]))
            started = sum(1 for t in searcher.trials() if t.state != TrialState.WAITING)
            trials = resolve_trials(name, stored, started, req.trials)
            plan = replace(plan, trials=trials)
            if trials != stored:
                change = (stored, trials)
                _record_budget(sweep, study, meta, stored, trials)
        else:
            study.set_user_attr("trials", plan.trials)
        # Seeds that a smaller budget left out are queued once the budget makes room.
        searcher.enqueue(plan.seeds[: plan.trials])
        parent = study.user_attrs.get("mlflow_parent_run_id")
        if not parent:
            parent = tracker.start_sweep(
                name,
                meta["uid"],
                _sweep_params(meta, plan),
                {"space": str(sweep.dir / "space.yaml"), "plan": str(sweep.dir / "plan.json")},
            )
            study.set_user_attr("mlflow_parent_run_id", parent)
            study.set_user_attr("sweep", name)
            study.set_user_attr("space_digest", meta["space_digest"])
        else:
            tracker.start_sweep(name, meta["uid"], {}, {})  # marks the parent RUNNING again
        if not resumed:
            sweep.write_meta(meta)  # last: a sweep.json means a complete, resumable sweep
    except BaseException:
        lock.release()
        raise
    return OpenSweep(sweep, meta, plan, trainer, searcher, tracker, parent, lock, resumed, change)


def resolve_trials(name: str, stored: int, started: int, asked: int | None) -> int:
    """The trial budget of a resumed sweep: the stored one, or `--trials` when given. A
    budget below the trials already started is refused: they cannot be un-run."""
    if asked is None:
        return stored
    if asked < started:
        raise UsageError(
            f"--trials {asked}: the sweep {name!r} has already started {started} trials",
            hint=f"give --trials {started} or more, or leave it out to keep the budget of {stored}",
        )
    return asked


def _record_budget(sweep: Sweep, study: Any, meta: dict[str, Any], old: int, new: int) -> None:
    """Store a changed trial budget: the study first (the source of truth), then sweep.json."""
    change = {"from": old, "to": new, "at": time.time()}
    changes = [*study.user_attrs.get("budget_changes", []), change]
    study.set_user_attr("budget_changes", changes)
    study.set_user_attr("trials", new)
    meta["trials"] = new
    meta["budget_changes"] = [*meta.get("budget_changes", []), change]
    sweep.write_meta(meta)


def _sweep_params(meta: dict[str, Any], plan: Plan) -> dict[str, Any]:
    d = plan_to_dict(plan)
    out = {
        "gpus": plan.gpus,
        "samples_per_gpu": plan.samples_per_gpu,
        "global_batch": plan.scale.target_global_batch,
        "k": plan.scale.k,
        "trials": plan.trials,
        "objective": plan.objective,
        "direction": plan.direction,
        "trainer": meta["trainer"]["name"],
        "executor": meta["executor"],
        "space_file": meta["space_file"],
        "sampler": plan.space.sampler.type,
        "pruner": plan.space.pruner.type,
    }
    for rule, value in d["rules"]["lr"].items():
        out[f"rule.lr.{rule}"] = f"{value:.4g}"
    for pname, rng in d["ranges"].items():
        out[f"range.{pname}"] = f"[{rng['low']:.4g}, {rng['high']:.4g}]"
    return out


def _check_same_sweep(sweep: Sweep, meta: dict[str, Any], req: SweepRequest) -> None:
    how = (
        f"resume it with `scaleout sweep --name {sweep.name} --resume`, or start anew "
        f"with another --name (or delete {sweep.dir})"
    )
    if req.space is not None:
        try:
            text = Path(req.space).read_text()
        except OSError:
            raise UsageError(f"--space {req.space}: no such file") from None
        if space_digest(text) != meta["space_digest"]:
            raise UsageError(
                f"the sweep {sweep.name!r} was started with a different space file "
                f"({meta['space_file']})",
                hint=how,
            )
    if req.gpus is not None and req.gpus != meta["gpus"]:
        raise UsageError(
            f"the sweep {sweep.name!r} runs at {meta['gpus']} GPUs, not --gpus {req.gpus}", hint=how
        )
    if req.trainer_flags.get("name") and req.trainer_flags["name"] != meta["trainer"]["name"]:
        raise UsageError(
            f"the sweep {sweep.name!r} uses the {meta['trainer']['name']} trainer", hint=how
        )


def _remove_empty_sweep_dir(sweep: Sweep) -> None:
    import shutil

    if sweep.dir.is_dir() and not sweep.meta_path.exists():
        shutil.rmtree(sweep.dir, ignore_errors=True)
