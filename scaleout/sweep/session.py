"""Opening a sweep: plan it, take its lock, check its stores, create or resume its study.

`build_plan` is light (no torch/mlflow/ray) and serves `scaleout plan`; `open_sweep` does
the rest for `scaleout sweep`. Every check of the input comes before anything is written, so
a bad command never leaves half a sweep behind; the lock comes before the slow checks of the
stores, so a second controller is refused at once and never touches a running sweep.

A new sweep is written in an order a rerun can finish from any point (docs/sweep.md,
"Resume, crashes and faults"): space.yaml, plan.json, the study with the sweep's uid, the seed
trials, the MLflow experiment and parent run, and sweep.json last. Until sweep.json exists
the same command again adopts what is there (the uid on the study keeps the MLflow experiment
the sweep's own).
"""

from __future__ import annotations

import difflib
import json
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scaleout.core.errors import SpaceError, StateError, UsageError, redact_url
from scaleout.core.plan import Plan, make_plan, plan_to_dict
from scaleout.core.rules import Reference
from scaleout.core.space import parse_space_text, read_space_text, resolve_reference
from scaleout.executors import check_executor, make_executor  # noqa: F401 - re-exported
from scaleout.sweep.faults import crash_point
from scaleout.sweep.workspace import (
    NAME_RE,
    ControllerLock,
    Sweep,
    check_name,
    check_workspace,
    default_name,
    space_digest,
    unmask,
    unwritable,
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
    strict: bool = True,
) -> tuple[Plan, Any, dict[str, Any]]:
    """Space file + reference (space over the trainer's config) + target -> plan.

    The trainer's config is read only when the space leaves reference values out (or the
    caller needs the trainer anyway). Returns (plan, trainer or None, trainer choice).
    `strict` refuses what a trial would run without or cannot run as meant (a batch larger
    than the dataset, a warmup as long as the trial, settings the trainer ignores); a resume
    passes False: its trials already ran with the space file as it is.
    """
    if space_text is None:
        space_text = read_space_text(space_file)
    space = parse_space_text(space_text, space_file)
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
    if strict:
        _check_batch_fits(space, reference, sources, gpus, samples_per_gpu)
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
    if strict:
        _check_warmup_fits(plan)
        if trainer is not None:
            check_trainer_takes(plan, trainer)
    return plan, trainer, choice


def _check_batch_fits(
    space: Any, ref: Reference, sources: dict[str, str], gpus: int, spg: int | None
) -> None:
    """A global batch larger than the training set leaves each epoch one padded iteration:
    say so in those words (the rules downstream would blame the warmup cap)."""
    per_gpu = spg or space.target.samples_per_gpu or ref.samples_per_gpu
    batch = gpus * per_gpu
    if ref.train_samples and batch > ref.train_samples:
        where = sources.get("train_samples", "the reference")
        raise UsageError(
            f"--gpus {gpus}: a global batch of {gpus} x {per_gpu} = {batch} samples is more "
            f"than the {ref.train_samples} training samples ({where}): every epoch would be "
            "one padded iteration",
            hint=f"at most {ref.train_samples // per_gpu} GPUs at {per_gpu} sample(s) per GPU",
        )


def _check_warmup_fits(plan: Plan) -> None:
    kp = plan.knobs.get("warmup_iters")
    total = plan.scale.target_total_iters
    if kp is not None and kp.fixed is not None and kp.fixed >= total:
        raise SpaceError(
            plan.space_path,
            "search.warmup_iters.fixed",
            f"{kp.fixed} iterations of warmup, but a trial has only {total} iterations "
            f"({plan.scale.trial_epochs} epochs x {plan.scale.target_iters_per_epoch} at a "
            f"global batch of {plan.scale.target_global_batch}): it would never reach its lr",
            hint=f"fix warmup_iters below {total}, or leave it to the rules",
        )


def check_trainer_takes(plan: Plan, trainer: Any) -> None:
    """Refuse what the trainer would silently ignore: a `search.fixed` key its adapter does
    not set, and an objective its logs never hold (for trainers that say which keys they set
    and which metrics they log: `scaleout.trainers.base.settable_keys`, `logs_metric`)."""
    from scaleout.core.knobs import KNOBS
    from scaleout.trainers.base import knob_keys, logs_metric, settable_keys

    takes = knob_keys(trainer)
    for name in plan.knobs:
        if takes is None or KNOBS[name].default_on or name in takes:
            continue
        spelled = (
            "{samples_per_gpu} or {global_batch}" if name == "samples_per_gpu" else f"{{{name}}}"
        )
        raise SpaceError(
            plan.space_path,
            f"search.{name}",
            f"the {trainer.name} trainer cannot take {name}: its profile's templates name no "
            f"{spelled}, so trials would run without it",
            hint=f"add {spelled.split(' or ')[0]} to the profile's argv or files "
            f"(docs/trainers.md), or drop search.{name}",
        )
    keys = settable_keys(trainer)
    if keys is not None:
        for key in plan.fixed_settings:
            if key in keys:
                continue
            close = difflib.get_close_matches(key, sorted(keys), n=1)
            mean = f"; did you mean {close[0]}?" if close else ""
            raise SpaceError(
                plan.space_path,
                f"search.fixed.{key}",
                f"the {trainer.name} trainer does not set {key!r}, so trials would run "
                f"without it{mean}",
                hint=f"the {trainer.name} trainer sets: {', '.join(sorted(keys))} "
                "(a new knob needs its adapter's mapping, docs/architecture.md)",
            )
    if logs_metric(trainer, plan.objective) is False:
        raise SpaceError(
            plan.space_path,
            "objective.metric",
            f"{plan.objective!r} is not a metric the {trainer.name} trainer logs, so no trial "
            "would ever report it",
            hint="NDS or mAP (docs/search-space.md, objective)",
        )


def check_search_options(plan: Plan) -> None:
    """Build the sampler and the pruner once, so bad `options` fail before anything is
    written (Optuna checks them when they are built)."""
    from scaleout.sweep.study import make_pruner, make_sampler

    for section, build in (("sampler", make_sampler), ("pruner", make_pruner)):
        try:
            build(plan)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{plan.space_path}: {section}.options: {exc}") from None


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
    """Create or resume the sweep `req` names. Checks the input before writing anything and
    takes the lock before the slow checks of the stores."""
    from scaleout.sweep.search import OptunaSearcher, TrialState
    from scaleout.sweep.study import create_or_load, open_storage
    from scaleout.sweep.tracking import MlflowTracker, default_artifact_root, default_tracking_uri

    root = check_workspace(workspace_root(req.workspace))
    name = _sweep_name(req)
    sweep = Sweep(root, name)
    resumed = sweep.exists()
    if req.resume and not resumed:
        sweep.read_meta()  # raises: no such sweep (exit 2), listing the ones that exist
    lock = ControllerLock(sweep)
    if resumed:
        lock.acquire()  # first: a second controller is refused before any slow check
    else:
        lock.refuse_if_held()  # another command is creating this very sweep
    made_dir: Path | None = None
    try:
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
                raise UsageError(
                    f"no sweep named {name!r} yet: give --gpus and --space to start it"
                )
            space_path = str(req.space)
            space_text = read_space_text(space_path)
            gpus, spg, trainer_flags = req.gpus, req.samples_per_gpu, req.trainer_flags
            meta = {}
        plan, trainer, choice = build_plan(
            space_path,
            gpus,
            samples_per_gpu=spg,
            trainer_flags=trainer_flags,
            need_trainer=True,
            space_text=space_text,
            strict=not resumed,
        )
        if not resumed and req.trials is not None:
            plan = replace(plan, trials=req.trials)
        check_search_options(plan)

        if resumed:
            storage_url = unmask(
                meta["storage"],
                req.storage,
                os.environ.get("SCALEOUT_STORAGE"),
                flag="--storage",
                env="SCALEOUT_STORAGE",
            )
            mlflow_uri = unmask(
                meta["mlflow_uri"],
                req.mlflow_uri,
                os.environ.get("MLFLOW_TRACKING_URI"),
                flag="--mlflow-uri",
                env="MLFLOW_TRACKING_URI",
            )
            meta.update(storage=storage_url, mlflow_uri=mlflow_uri)  # in memory only
        else:
            storage_url = req.storage or os.environ.get("SCALEOUT_STORAGE") or sweep.study_url
            mlflow_uri = default_tracking_uri(req.mlflow_uri, root)
            check_executor(req.executor, req.executor_options, plan.gpus, req.parallel)
            made_dir = _make_sweep_dir(sweep)  # the SQLite files and the lock live there
            lock.acquire()

        open_storage(storage_url)
        tracker = MlflowTracker(
            mlflow_uri, default_artifact_root(root) if mlflow_uri.startswith("sqlite:///") else None
        )
        tracker.check()

        digest = space_digest(space_text)
        if not resumed:
            _write(sweep.dir / "space.yaml", space_text)
            crash_point("after_space_file")
            _write(sweep.dir / "plan.json", json.dumps(plan_to_dict(plan), indent=2))
            crash_point("after_plan_file")
        study = create_or_load(storage_url, name, plan)
        crash_point("after_study_created")
        if not resumed:
            study = _adopt_or_reset(study, storage_url, name, plan, digest, create_or_load)
            uid = study.user_attrs.get("uid") or uuid.uuid4().hex
            for key, value in (("uid", uid), ("sweep", name), ("space_digest", digest)):
                if study.user_attrs.get(key) != value:
                    study.set_user_attr(key, value)
            study.set_user_attr("trials", plan.trials)
            crash_point("after_study_attrs")
            # From here on what is written outside the folder (the MLflow experiment) is
            # bound to the uid on the study: a failure keeps the folder for the rerun.
            made_dir = None
            meta = {
                "name": name,
                "uid": uid,
                "created": time.time(),
                "space_file": str(Path(space_path).resolve()),
                "space_digest": digest,
                "gpus": gpus,
                "samples_per_gpu": plan.samples_per_gpu,
                "trials": plan.trials,
                "trainer": choice,
                "executor": req.executor,
                "executor_options": req.executor_options,
                # sweep.json gets them without a password (Sweep.write_meta).
                "storage": storage_url,
                "mlflow_uri": mlflow_uri,
            }
        searcher = OptunaSearcher(study, plan)
        change = None
        if resumed:
            stored = int(study.user_attrs.get("trials", meta["trials"]))
            if int(meta.get("trials", stored)) != stored:  # died between the two writes
                meta["trials"] = stored
                sweep.write_meta(meta)
            started = sum(1 for t in searcher.trials() if t.state != TrialState.WAITING)
            trials = resolve_trials(name, stored, started, req.trials)
            plan = replace(plan, trials=trials)
            if trials != stored:
                change = (stored, trials)
                _record_budget(sweep, study, meta, stored, trials)
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
            crash_point("after_parent_started")
            study.set_user_attr("mlflow_parent_run_id", parent)
        else:
            tracker.start_sweep(name, meta["uid"], {}, {})  # marks the parent RUNNING again
        if not resumed:
            crash_point("before_sweep_json")
            sweep.write_meta(meta)  # last: a sweep.json means a complete, resumable sweep
    except BaseException:
        lock.release()
        if made_dir is not None:
            _remove_sweep_dir(sweep, made_dir)
        raise
    return OpenSweep(sweep, meta, plan, trainer, searcher, tracker, parent, lock, resumed, change)


def _sweep_name(req: SweepRequest) -> str:
    if req.name is not None:
        return check_name(req.name)  # an empty --name too: it never means the default
    if req.space is None or req.gpus is None:
        raise UsageError("give --gpus and --space to start a sweep, or --name NAME to resume one")
    name = default_name(req.space, req.gpus)
    if not NAME_RE.match(name):
        raise UsageError(
            f"the space file {req.space} gives the default sweep name {name!r}, which is not "
            "a usable name (letters, digits, '.', '_' and '-', at most 64)",
            hint="give --name NAME",
        )
    return name


def _make_sweep_dir(sweep: Sweep) -> Path | None:
    """Create the sweep's folder (and the workspace); returns the topmost folder this call
    created, to remove again if the sweep cannot start. A sweep folder that is there holds
    what an earlier, interrupted creation wrote: kept (None)."""
    top = sweep.dir
    while not top.parent.exists():
        top = top.parent
    try:
        sweep.dir.mkdir(parents=True)
    except FileExistsError:
        return None
    except OSError as exc:
        raise unwritable(top.parent, exc) from None
    return top


def _write(path: Path, text: str) -> None:
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise unwritable(path.parent, exc) from None


def _adopt_or_reset(study: Any, url: str, name: str, plan: Plan, digest: str, create: Any) -> Any:
    """A study without sweep.json is what an interrupted creation of this sweep left (no
    trial ran: trials start only once sweep.json is written). Adopted when it was made from
    the same space file; else deleted and made afresh, keeping its uid (the MLflow
    experiment of that name is this sweep's)."""
    had = study.user_attrs.get("space_digest")
    if had is None or had == digest:
        return study
    import optuna

    if any(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False)):
        raise StateError(
            f"the study database {redact_url(url)} already holds a sweep {name!r} with trials, "
            "started from another space file",
            hint="choose another --name or another --storage",
        )

    uid = study.user_attrs.get("uid")
    optuna.delete_study(study_name=name, storage=url)
    study = create(url, name, plan)
    if uid:
        study.set_user_attr("uid", uid)
    return study


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
    """Store a changed trial budget: the study first (the source of truth), then sweep.json
    (a resume rewrites a sweep.json that a crash left behind the study)."""
    change = {"from": old, "to": new, "at": time.time()}
    changes = [*study.user_attrs.get("budget_changes", []), change]
    study.set_user_attr("budget_changes", changes)
    study.set_user_attr("trials", new)
    crash_point("after_budget_study")
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
        text = read_space_text(req.space)
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


def _remove_sweep_dir(sweep: Sweep, top: Path) -> None:
    """Remove the folders this command created for a sweep it could not start."""
    import shutil

    if sweep.dir.is_dir() and not sweep.meta_path.exists():
        shutil.rmtree(top, ignore_errors=True)
