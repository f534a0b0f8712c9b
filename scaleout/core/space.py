"""Search-space files: YAML validated into typed objects.

Every error names the file, the key path and what is allowed (exit code 2 in the CLI).
The format is documented in docs/search-space.md; keep the two in step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from scaleout.core.errors import SpaceError
from scaleout.core.knobs import KNOBS, PosFloat, PosInt, SpecModel
from scaleout.core.rules import Reference

SAMPLERS = ("tpe", "random", "qmc", "grid", "cmaes", "gp")
PRUNERS = ("none", "median", "asha", "hyperband")
SEEDS = ("reference", "sqrt", "linear")

_Model = SpecModel


def _fixed_epochs(cls: Any, v: dict[str, Any]) -> dict[str, Any]:
    # Pinned epochs change every trial's length, which the plan accounts for; so does the
    # evaluation interval (the epochs at which a trial reports its objective).
    for key in ("epochs", "eval_interval"):
        e = v.get(key)
        if e is not None and (isinstance(e, bool) or not isinstance(e, int) or e < 1):
            raise ValueError(f"{key} must be a positive whole number of epochs, got {e!r}")
    return v


def _section(k: Any) -> tuple[Any, Any]:
    if k.default_on:
        return (k.spec, Field(default_factory=k.spec))
    return (k.spec | None, None)  # off unless the space file names it


# `search:` has one section per registered knob (core/knobs.py) and `fixed:` for values the
# trainer should run with unchanged (its seed, epochs, ...).
Search = create_model(
    "Search",
    __base__=SpecModel,
    __validators__={"_epochs": field_validator("fixed")(classmethod(_fixed_epochs))},
    **{name: _section(k) for name, k in KNOBS.items()},
    fixed=(dict[str, Union[int, float, str, bool]], Field(default_factory=dict)),  # noqa: UP007
)


class Objective(_Model):
    metric: str = "NDS"
    direction: Literal["maximize", "minimize"] = "maximize"


class Budget(_Model):
    trials: PosInt | None = 12
    gpu_hours: PosFloat | None = None

    @model_validator(mode="after")
    def _some(self) -> Budget:
        if self.trials is None and self.gpu_hours is None:
            raise ValueError("give trials, gpu_hours or both")
        return self


class Sampler(_Model):
    type: Literal["tpe", "random", "qmc", "grid", "cmaes", "gp"] = "tpe"
    seed: int | None = 0
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _grid_options(self) -> Sampler:
        # The grid's options are ours (scaleout.sweep.study.grid_space), not Optuna's: checked
        # here, where the other samplers' options are checked by constructing them.
        if self.type != "grid":
            return self
        unknown = sorted(set(self.options) - {"points", "values"})
        if unknown:
            raise ValueError(
                f"options.{unknown[0]}: unknown for the grid sampler; known: points, values"
            )
        points = self.options.get("points", 3)
        if isinstance(points, bool) or not isinstance(points, int) or points < 1:
            raise ValueError(f"options.points must be a positive whole number, got {points!r}")
        values = self.options.get("values", {})
        if not isinstance(values, dict) or not all(
            isinstance(v, list) and v for v in values.values()
        ):
            raise ValueError("options.values maps a parameter to a non-empty list of values")
        return self


class Pruner(_Model):
    type: Literal["none", "median", "asha", "hyperband"] = "none"
    options: dict[str, Any] = Field(default_factory=dict)


class Retries(_Model):
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 2


class ReferenceSpec(_Model):
    gpus: PosInt | None = None
    samples_per_gpu: PosInt | None = None
    lr: PosFloat | None = None
    warmup_iters: Annotated[int, Field(ge=0)] | None = None
    warmup_ratio: Annotated[float, Field(gt=0, le=1)] | None = None
    min_lr_ratio: Annotated[float, Field(ge=0, lt=1)] | None = None
    epochs: PosInt | None = None
    train_samples: PosInt | None = None
    wall_time_h: PosFloat | None = None
    sample_time_s: PosFloat | None = None
    # What the recipe scores at its own scale, e.g. {NDS: 0.517, mAP: 0.416}: the level the
    # share of the drop recovered is measured against.
    metric: dict[str, Annotated[float, Field(ge=0)]] | None = None
    # The optimizer's settings the co-scaled knobs scale (search.weight_decay, beta1, beta2);
    # read from the trainer's config where left out (betas: Adam's default 0.9, 0.999).
    weight_decay: Annotated[float, Field(ge=0)] | None = None
    beta1: Annotated[float, Field(ge=0, lt=1)] | None = None
    beta2: Annotated[float, Field(ge=0, lt=1)] | None = None


class Target(_Model):
    samples_per_gpu: PosInt | None = None
    efficiency: Annotated[float, Field(gt=0, le=1)] = 1.0


class TrainerSpec(_Model):
    name: str = "minibev"
    preset: str | None = None
    config: str | None = None
    repo: str | None = None
    profile: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class SearchSpace(_Model):
    version: Literal[1] = 1
    description: str | None = None
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec)
    target: Target = Field(default_factory=Target)
    search: Search = Field(default_factory=Search)
    objective: Objective = Field(default_factory=Objective)
    budget: Budget = Field(default_factory=Budget)
    sampler: Sampler = Field(default_factory=Sampler)
    pruner: Pruner = Field(default_factory=Pruner)
    retries: Retries = Field(default_factory=Retries)
    seeds: list[Literal["reference", "sqrt", "linear"]] = Field(
        default_factory=lambda: ["reference", "sqrt", "linear"]
    )


def _allowed_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names allowed at the parent of `loc`, for 'unknown key' messages."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):  # a list index: stay on the item type
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
        # unwrap Optional[Model] / Annotated
        for arg in getattr(current, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _describe(err: dict[str, Any]) -> tuple[str, str]:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or "-" in p)))
    key = ".".join(str(p) for p in loc) or "(top level)"
    etype = err["type"]
    if etype == "extra_forbidden":
        allowed = _allowed_at(SearchSpace, loc)
        known = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return key, f"unknown key{known}"
    if etype == "literal_error":
        return key, f"{err['msg'].replace('Input should be', 'must be')} (got {err.get('input')!r})"
    if etype == "missing":
        return key, "required key is missing"
    if etype == "value_error":
        return key, err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    return key, f"{err['msg'].replace('Input should be', 'must be')}{shown}"


def shipped_spaces_hint() -> str:
    """Where the shipped space files are, listing every one (a checkout's search_spaces/)."""
    folder = Path(__file__).resolve().parents[2] / "search_spaces"
    names = sorted(f.name for f in folder.glob("*.yaml")) if folder.is_dir() else []
    listed = f" ({', '.join(names)})" if names else ""
    return f"the shipped spaces are in search_spaces/{listed}"


def parse_space(data: Any, path: str | Path = "<space>") -> SearchSpace:
    """Validate already-loaded YAML data. Raises SpaceError naming the key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpaceError(
            path, None, f"must be a YAML mapping of sections, got {type(data).__name__}"
        )
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A union (rules: [name | {rule: ...}]) reports one error per branch; the first
        # error of the most specific location is the one a person needs.
        key, problem = _describe(errors[0])
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise SpaceError(path, key, problem + more) from None


def read_space_text(path: str | Path) -> str:
    """A space file's text, or a SpaceError saying why it cannot be one: missing, a
    directory, unreadable, or not UTF-8 text."""
    p = Path(path)
    hint = shipped_spaces_hint()
    if p.is_dir():
        raise SpaceError(p, None, "is a directory, not a space file (a YAML file)", hint=hint)
    if not p.is_file():
        raise SpaceError(p, None, "no such file", hint=hint)
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpaceError(
            p, None, f"not a text file (byte {exc.start} is not UTF-8): is it the space file?"
        ) from None
    except OSError as exc:
        raise SpaceError(p, None, f"cannot be read: {exc.strerror or exc}") from None


def parse_space_text(text: str, path: str | Path = "<space>") -> SearchSpace:
    """Validate a space file's text (YAML). Raises SpaceError naming the file, the line and
    column of a syntax error, or the key path of a bad value."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpaceError(path, None, f"YAML syntax error at {where}{problem}") from None
    return parse_space(data, path)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space file."""
    return parse_space_text(read_space_text(path), Path(path))


def resolve_reference(
    space: SearchSpace, trainer_values: dict[str, Any] | None, path: str | Path
) -> tuple[Reference, dict[str, str]]:
    """Merge the space file's reference over the trainer config's, and say where each came from.

    The space file wins: it is what the user wrote for this sweep.
    """
    trainer_values = dict(trainer_values or {})
    trainer_sources = trainer_values.pop("_sources", {})
    given = space.reference.model_dump(exclude_none=True)
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in Reference.field_names():
        if name == "metric":
            continue
        if name in given:
            merged[name] = given[name]
            sources[name] = f"{path}: reference.{name}"
        elif trainer_values.get(name) is not None:
            merged[name] = trainer_values[name]
            sources[name] = trainer_sources.get(name, "trainer config")
    # The reference's own score, key by key: the space file's over the trainer config's.
    metric: dict[str, float] = {}
    for key, value in dict(trainer_values.get("metric") or {}).items():
        metric[key] = float(value)
        sources[f"metric.{key}"] = trainer_sources.get("metric", "trainer config") + f".{key}"
    for key, value in dict(given.get("metric") or {}).items():
        metric[key] = float(value)
        sources[f"metric.{key}"] = f"{path}: reference.metric.{key}"
    merged["metric"] = metric
    missing = [n for n in Reference.required_names() if n not in merged]
    if missing:
        raise SpaceError(
            path,
            "reference",
            f"missing {', '.join(missing)}: give them under reference: in the space file "
            "or use a trainer whose config defines them"
            + (" (the GPU count also by --reference-gpus N)" if "gpus" in missing else ""),
        )
    return Reference(**merged), sources


def reference_conflicts(
    space: SearchSpace, trainer_values: dict[str, Any] | None, path: str | Path
) -> list[dict[str, Any]]:
    """The reference values the space file gives that the trainer's config states otherwise.

    resolve_reference lets the space file win; each entry says what won and what it
    overrode (`key, used, used_source, overridden, overridden_source`), so a plan can say so.
    """
    values = dict(trainer_values or {})
    sources = values.pop("_sources", {})
    given = space.reference.model_dump(exclude_none=True)
    out = []
    for name in Reference.field_names():
        if name == "metric" or name not in given or values.get(name) is None:
            continue
        mine, theirs = given[name], values[name]
        same = (
            math.isclose(float(mine), float(theirs), rel_tol=1e-9, abs_tol=0.0)
            if isinstance(mine, (int, float)) and isinstance(theirs, (int, float))
            else mine == theirs
        )
        if not same:
            out.append(
                {
                    "key": name,
                    "used": mine,
                    "used_source": f"{path}: reference.{name}",
                    "overridden": theirs,
                    "overridden_source": sources.get(name, "trainer config"),
                }
            )
    return out


__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "SEEDS",
    "SearchSpace",
    "load_space",
    "parse_space",
    "parse_space_text",
    "read_space_text",
    "reference_conflicts",
    "resolve_reference",
]
