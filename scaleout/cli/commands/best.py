"""`scaleout best NAME`: the winning trial's configuration, as its trainer takes it."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping
from typing import Any

from scaleout.cli.commands.common import add_workspace_arg, nonnegative_int, print_json

HELP = "print the best trial's configuration as the trainer takes it (--cfg-options, YAML, JSON)"
DESCRIPTION = """\
Print the configuration of a sweep's best completed trial (or of --trial N) in the form its
trainer takes: for BEVFormer, EasyCV, PETR and the other mmcv/mmengine trainers, the
--cfg-options that turn the recipe's config into the trial's, to train the final model
with the repo's own tools/train.py; as YAML or JSON, the trial's values with those overrides.

examples:
  scaleout best lr_scaling-160g
  python tools/train.py projects/configs/bevformer/bevformer_base.py \\
      $(scaleout best bevformer_base-160g)
  scaleout best lr_scaling-160g --format yaml
  scaleout best lr_scaling-160g --trial 4 --format json
"""
FORMATS = ("cfg-options", "yaml", "json")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "best",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="the sweep's name (scaleout list shows them)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="cfg-options",
        help="cfg-options: the trainer's --cfg-options arguments, one line; yaml, json: the "
        "trial's values, overrides and where it ran (default: cfg-options)",
    )
    p.add_argument(
        "--trial",
        type=nonnegative_int("--trial"),
        metavar="N",
        help="this trial instead of the best completed one (default: the best)",
    )
    add_workspace_arg(p)
    p.set_defaults(run=run)


def pick(store: Any, number: int | None) -> Any:
    """The best completed trial of the sweep in `store`, or trial `number`."""
    from scaleout.core.errors import StateError, UsageError
    from scaleout.sweep.workspace import best_first

    records = store.records()
    if number is not None:
        found = next((r for r in records if r.number == number), None)
        if found is None:
            raise UsageError(
                f"--trial {number}: sweep {store.name} has no started trial {number} "
                f"(trials: {', '.join(str(r.number) for r in records) or 'none yet'})"
            )
        if not found.params:
            raise StateError(f"trial {number} of sweep {store.name} has no recorded values yet")
        return found
    ranked = best_first(records, store.direction)
    best = next((r for rank, r in ranked if rank == 1), None)
    if best is None:
        counts = {s: sum(r.state == s for r in records) for s in ("RUNNING", "PRUNED", "FAIL")}
        have = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) or "no trials"
        raise StateError(
            f"sweep {store.name} has no completed trial yet ({have})",
            hint=f"scaleout status {store.name} shows where it stands; --trial N picks one",
        )
    return best


def trial_params(record: Any, meta: Mapping[str, Any]) -> Any:
    """The TrialParams the trial ran with, rebuilt from its stored `params` (the batch from
    sweep.json where an older record leaves it out)."""
    from scaleout.core.job import TrialParams

    stored = {
        "gpus": meta["gpus"],
        "samples_per_gpu": meta["samples_per_gpu"],
        **record.params,
    }
    return TrialParams.from_dict(stored)


def overrides(trainer: Any, params: Any) -> list[tuple[str, Any]]:
    """(dotted key, value) pairs the trainer's --cfg-options takes to turn its config into the
    trial's: the mmcv adapter's own `overrides_for`; for mmengine configs, the keys where
    the trial's config differs from the recipe's."""
    from scaleout.core.errors import UsageError

    if hasattr(trainer, "overrides_for"):
        return list(trainer.overrides_for(params))
    if hasattr(trainer, "trial_config"):
        base, trial = _plain(trainer.cfg), _plain(trainer.trial_config(params))
        return config_diff(base, trial)
    raise UsageError(
        f"the {trainer.name} trainer takes its profile's arguments, not --cfg-options",
        hint="--format yaml or --format json prints the trial's values",
    )


def _plain(cfg: Any) -> dict[str, Any]:
    to_dict = getattr(cfg, "to_dict", None)
    return to_dict() if callable(to_dict) else dict(cfg)


def config_diff(base: Any, trial: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """The dotted keys (list items by index, as mmengine's merge_from_dict takes them) whose
    value differs between two configs; a key the trial dropped reads None. A list whose length
    changed cannot be spelled as --cfg-options: UsageError."""
    from scaleout.core.errors import UsageError

    out: list[tuple[str, Any]] = []
    if isinstance(base, Mapping) and isinstance(trial, Mapping):
        for key in dict.fromkeys([*trial, *base]):
            sub = f"{prefix}{key}"
            if key not in trial:
                out.append((sub, None))
            elif key not in base:
                out.extend(_spell(sub, trial[key]))
            else:
                out.extend(config_diff(base[key], trial[key], sub + "."))
        return out
    key = prefix.rstrip(".")
    if _is_list(base) and _is_list(trial) and any(_nested(v) for v in [*base, *trial]):
        if len(base) != len(trial):
            raise UsageError(
                f"the trial's config changes the length of {key} ({len(base)} -> "
                f"{len(trial)} items), which --cfg-options cannot say",
                hint="train from the config the trial ran (trial_config.py in its work dir; "
                "--format yaml names it)",
            )
        for i, (b, t) in enumerate(zip(base, trial, strict=True)):
            out.extend(config_diff(b, t, f"{prefix}{i}."))
        return out
    if base != trial or type(base) is not type(trial):
        out.extend(_spell(key, trial))
    return out


def _spell(key: str, value: Any) -> list[tuple[str, Any]]:
    """A new value as --cfg-options pairs: a dict one key at a time."""
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _spell(f"{key}.{k}", v)]
    return [(key, value)]


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _nested(value: Any) -> bool:
    return isinstance(value, (Mapping, list, tuple))


def format_value(value: Any) -> str:
    """A value as mmcv's and mmengine's DictAction parse it back (exact floats, None, lists)."""
    from scaleout.trainers.mmcv import format_value as scalar

    if _is_list(value):
        inner = ",".join(format_value(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return scalar(value)


def cfg_options(pairs: list[tuple[str, Any]]) -> str:
    return " ".join(["--cfg-options", *(shlex.quote(f"{k}={format_value(v)}") for k, v in pairs)])


def describe(store: Any, record: Any, trainer: Any, pairs: list[tuple[str, Any]] | None) -> dict:
    """The trial as --format yaml/json print it."""
    meta = store.meta
    params = trial_params(record, meta)
    work = record.work_dir
    # The mmengine adapter's TRIAL_CONFIG and the mmcv adapter's GENERATED_CONFIG: the file the
    # trial's job trained from, where the trainer writes one.
    config = work / "trial_config.py" if work is not None else None
    out: dict[str, Any] = {
        "sweep": store.name,
        "trial": record.number,
        "origin": record.origin,
        "state": record.state,
        "objective": {
            "metric": store.objective,
            "direction": store.direction,
            "value": record.value,
        },
        "trainer": meta["trainer"],
        "params": params.to_dict(),
    }
    if pairs is not None:
        out["overrides"] = {k: v for k, v in pairs}
        if getattr(trainer, "overrides", "cfg-options") == "cfg-options":
            out["cfg_options"] = cfg_options(pairs)
    out["work_dir"] = str(work) if work else None
    out["config"] = str(config) if config is not None and config.exists() else None
    out["mlflow_run_id"] = record.run_id
    return out


def run(args: argparse.Namespace) -> int:
    from scaleout.cli.commands.common import sweep_trainer
    from scaleout.core.errors import ScaleoutError
    from scaleout.sweep.workspace import SweepStore

    store = SweepStore.open(args.name, args.workspace)
    record = pick(store, args.trial)
    params = trial_params(record, store.meta)
    if args.format == "cfg-options":
        trainer = sweep_trainer(store.meta)
        pairs = overrides(trainer, params)
        _takes_cfg_options(trainer, record)
        print(cfg_options(pairs))
        _epochs_note(store, params)
        return 0
    try:  # the values print without the trainer; its overrides need its config
        trainer = sweep_trainer(store.meta)
        pairs = overrides(trainer, params)
    except ScaleoutError as exc:
        print(f"scaleout: note: no overrides: {exc}", file=sys.stderr)
        trainer, pairs = None, None
    data = describe(store, record, trainer, pairs)
    if args.format == "json":
        print_json(data)
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False, width=1_000_000), end="")
    return 0


def _takes_cfg_options(trainer: Any, record: Any) -> None:
    """EasyCV's train.py has no --cfg-options: its trials train from a generated config that
    inherits the recipe (the mmcv adapter's `overrides: config`)."""
    from scaleout.core.errors import UsageError

    if getattr(trainer, "overrides", "cfg-options") != "config":
        return
    config = record.work_dir / "trial_config.py" if record.work_dir is not None else None
    where = f" ({config})" if config is not None and config.exists() else ""
    raise UsageError(
        f"the {trainer.name} trainer's train script takes no --cfg-options: its trials train "
        f"from a generated config that inherits the recipe{where}",
        hint="--format yaml or --format json lists the keys that config sets",
    )


def _epochs_note(store: Any, params: Any) -> None:
    """On stderr (stdout stays the arguments): a trial shorter than the recipe's schedule."""
    ran = params.get("epochs")
    recipe = (store.plan.get("reference") or {}).get("epochs")
    if ran is not None and recipe is not None and int(ran) < int(recipe):
        print(
            f"scaleout: note: the trial ran {ran} of the recipe's {recipe} epochs (the "
            "sweep's search.fixed.epochs); these overrides keep that length",
            file=sys.stderr,
        )
