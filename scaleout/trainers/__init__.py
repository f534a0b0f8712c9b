"""Trainer adapters: one module per trainer family (see base.Trainer).

`get_trainer` turns the CLI's `--trainer/--config/--repo/--preset/--profile` into one
(scaleout.core.space.resolve_reference then merges the space file's reference over the
trainer config's). Adapter modules load lazily: `scaleout plan` pays only for the one
it uses.
"""

from __future__ import annotations

from typing import Any

from scaleout.core.errors import UsageError
from scaleout.trainers.base import Trainer

TRAINERS = ("minibev", "mmengine", "bevformer", "mmcv", "easycv", "petr", "command")


def get_trainer(
    name: str,
    *,
    config: str | None = None,
    repo: str | None = None,
    preset: str | None = None,
    profile: str | None = None,
    reference_gpus: int | None = None,
    container: str | None = None,
    **options: Any,
) -> Trainer:
    """The adapter for `--trainer NAME`; extra `options` go to its constructor.

    minibev: `preset` (tiny/small/base). mmengine: `config` (+ `repo` for mmdet3d).
    bevformer (alias mmcv), easycv, petr: `config` (relative to `repo`, or absolute).
    command: `profile` (a YAML file or a shipped name), optional `repo` and `config`.
    """
    if name == "minibev":
        from scaleout.trainers.mmengine import minibev

        return minibev(preset or "small", reference_gpus=reference_gpus)
    if name == "mmengine":
        from scaleout.trainers.mmengine import MMEngineTrainer

        _need(config, name, "--config")
        _check_options(MMEngineTrainer, options, name)
        return MMEngineTrainer(
            config, repo=repo, reference_gpus=reference_gpus, container=container, **options
        )
    if name in ("bevformer", "mmcv", "easycv", "petr"):
        from scaleout.trainers.mmcv import MMCVTrainer

        _need(config, name, "--config")
        _check_options(MMCVTrainer, options, name)
        flavor = "bevformer" if name == "mmcv" else name
        return MMCVTrainer(
            config,
            repo=repo,
            flavor=flavor,
            reference_gpus=reference_gpus,
            container=container,
            **options,
        )
    if name == "command":
        from scaleout.trainers.command import CommandTrainer

        _need(profile, name, "--profile")
        _check_options(CommandTrainer, options, name)
        return CommandTrainer(
            profile,
            repo=repo,
            config=config,
            reference_gpus=reference_gpus,
            container=container,
            **options,
        )
    raise UsageError(f"--trainer: unknown trainer {name!r}; known: {', '.join(TRAINERS)}")


def _check_options(cls: type, options: dict[str, Any], trainer: str) -> None:
    """trainer.options that the adapter does not take, named before anything is read."""
    import inspect

    taken = {
        n
        for n, p in inspect.signature(cls).parameters.items()
        if p.kind == p.KEYWORD_ONLY
        and n not in ("repo", "reference_gpus", "container", "flavor", "config")
    }
    unknown = sorted(set(options) - taken)
    if unknown:
        raise UsageError(
            f"trainer.options: {', '.join(unknown)}: not an option of the {trainer} trainer; "
            f"it takes {', '.join(sorted(taken))}"
        )


def _need(value: Any, trainer: str, flag: str) -> None:
    if not value:
        raise UsageError(f"--trainer {trainer}: {flag} is required")
