"""Any command-line trainer, described by a YAML profile (docs/trainers.md has the format).

A profile gives an argv template with placeholders (`{lr}`, `{samples_per_gpu}`,
`{node_rank}`, ...), optional generated files (a small config that inherits the trainer's
own), the reference recipe (values, or keys to read from the trainer's YAML config), and
rules that pull metrics out of the trainer's log (regexes with named groups, or JSON
lines). Every template is checked when the profile loads, so a typo fails before a sweep.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from scaleout.core.errors import UsageError
from scaleout.core.job import NODE_PLACEHOLDERS, Layout, TrialMetrics, TrialParams, TrialSpec
from scaleout.trainers import failures, logs
from scaleout.trainers.base import Failure
from scaleout.trainers.options import arg_list, clean_float

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
PLACEHOLDERS = {
    "lr": "the trial's peak learning rate",
    "warmup_iters": "warmup length in iterations",
    "warmup_ratio": "warmup start lr / lr",
    "warmup_start_lr": "lr x warmup_ratio",
    "min_lr_ratio": "final lr / lr",
    "min_lr": "lr x min_lr_ratio",
    "weight_decay": "the optimizer's weight decay (trial, else reference)",
    "beta1": "Adam's beta1 (trial, else reference)",
    "beta2": "Adam's beta2 (trial, else reference)",
    "samples_per_gpu": "per-GPU batch",
    "global_batch": "gpus x samples_per_gpu",
    "gpus": "data-parallel GPUs of the trial",
    "nnodes": "nodes",
    "procs_per_node": "processes (GPUs) per node",
    "gpu_ids": "0,1,...,procs_per_node-1",
    "node_rank": "filled per node by the executor",
    "master_addr": "filled by the executor",
    "master_port": "filled by the executor",
    "work_dir": "the trial's work dir",
    "repo": "--repo, absolute",
    "config": "--config, absolute",
    "name": "the trial's name",
    "seed": "the trial's seed (optional_argv only unless always set)",
    "eval_interval": "epochs between evaluations (search.fixed.eval_interval; optional_argv)",
    "epochs": "training epochs (trial, else reference)",
    "train_samples": "training-set size (reference)",
    "iters_per_epoch": "ceil(train_samples / global_batch)",
    "total_iters": "iters_per_epoch x epochs",
}
REFERENCE_FIELDS = (
    "gpus", "samples_per_gpu", "lr", "warmup_iters", "warmup_ratio", "min_lr_ratio",
    "epochs", "train_samples", "wall_time_h", "sample_time_s", "weight_decay", "beta1", "beta2",
)  # fmt: skip
# Keys of the trainer's own config that convert to reference fields.
DERIVED_KEYS = {"min_lr": "min_lr_ratio", "warmup_start_lr": "warmup_ratio"}


@dataclass(frozen=True)
class MetricRules:
    files: tuple[str, ...]
    format: str  # "regex" or "jsonl"
    objective: str
    train: tuple[re.Pattern[str], ...] = ()
    val: tuple[re.Pattern[str], ...] = ()
    iter_is_global: bool = True
    epoch_key: str = "epoch"


@dataclass(frozen=True)
class Profile:
    path: str
    name: str
    argv: tuple[str, ...]
    resume_argv: tuple[str, ...] = ()
    optional_argv: dict[str, tuple[str, ...]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    reference_keys: dict[str, str] = field(default_factory=dict)
    checkpoint: str | None = None
    metrics: MetricRules | None = None
    description: str = ""
    failure_logs: tuple[str, ...] = ()  # globs in the work dir: the workers' own output


def profile_path(profile: str) -> Path:
    """A profile file, or the name of a shipped one (`paddle3d_petrv2`)."""
    path = Path(profile).expanduser()
    if path.is_file():
        return path
    shipped = PROFILES_DIR / f"{profile}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
    raise UsageError(f"{profile}: --profile: no such file, nor a shipped profile ({known})")


def load_profile(profile: str | Path) -> Profile:
    path = profile_path(str(profile))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a profile is a mapping with name, argv and metrics")
    where = str(path)
    known = {
        "name", "description", "argv", "resume_argv", "optional_argv", "env", "cwd", "files",
        "reference", "reference_keys", "checkpoint", "metrics", "failure_logs",
    }  # fmt: skip
    for key in data:
        if key not in known:
            raise UsageError(f"{where}: {key}: unknown key; known: {', '.join(sorted(known))}")

    def str_list(key: str, value: Any, *, required: bool = False) -> tuple[str, ...]:
        if value is None and not required:
            return ()
        if not isinstance(value, list) or (not value and required):
            raise UsageError(f"{where}: {key}: expected a non-empty list of strings")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise UsageError(f"{where}: {key}[{i}]: expected a string")
            _check_template(str(item), where, f"{key}[{i}]")
            out.append(str(item))
        return tuple(out)

    def str_map(key: str, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise UsageError(f"{where}: {key}: expected a mapping")
        for k, v in value.items():
            _check_template(str(v), where, f"{key}.{k}")
        return {str(k): str(v) for k, v in value.items()}

    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{where}: name: required (a string)")
    optional = data.get("optional_argv") or {}
    if not isinstance(optional, dict):
        raise UsageError(f"{where}: optional_argv: expected a mapping placeholder -> list")
    for key in optional:
        if key not in PLACEHOLDERS:
            raise UsageError(f"{where}: optional_argv.{key}: unknown placeholder")
    reference = data.get("reference") or {}
    reference_keys = data.get("reference_keys") or {}
    for block, allowed in (
        ("reference", REFERENCE_FIELDS),
        ("reference_keys", (*REFERENCE_FIELDS, *DERIVED_KEYS)),
    ):
        value = data.get(block) or {}
        if not isinstance(value, dict):
            raise UsageError(f"{where}: {block}: expected a mapping")
        for key in value:
            if key not in allowed:
                raise UsageError(f"{where}: {block}.{key}: unknown; allowed: {', '.join(allowed)}")
    cwd = data.get("cwd")
    if cwd is not None:
        _check_template(str(cwd), where, "cwd")
    checkpoint = data.get("checkpoint")
    if checkpoint is not None:
        _check_template(str(checkpoint), where, "checkpoint")
    return Profile(
        path=where,
        name=name,
        description=str(data.get("description") or ""),
        argv=str_list("argv", data.get("argv"), required=True),
        resume_argv=str_list("resume_argv", data.get("resume_argv")),
        optional_argv={
            k: str_list(f"optional_argv.{k}", v, required=True) for k, v in optional.items()
        },
        env=str_map("env", data.get("env")),
        cwd=str(cwd) if cwd is not None else None,
        files=str_map("files", data.get("files")),
        reference=dict(reference),
        reference_keys={str(k): str(v) for k, v in reference_keys.items()},
        checkpoint=str(checkpoint) if checkpoint is not None else None,
        metrics=_metric_rules(data.get("metrics"), where),
        failure_logs=str_list("failure_logs", data.get("failure_logs")),
    )


def _check_template(text: str, where: str, key: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        raise UsageError(f"{where}: {key}: bad template {text!r}: {e} (write {{{{ for {{)") from e
    for f in fields:
        name = re.split(r"[.\[]", f, maxsplit=1)[0]
        if name not in PLACEHOLDERS:
            raise UsageError(
                f"{where}: {key}: unknown placeholder {{{f}}}; known: {', '.join(PLACEHOLDERS)}"
            )


def _metric_rules(data: Any, where: str) -> MetricRules:
    if not isinstance(data, dict):
        raise UsageError(f"{where}: metrics: required: files, format, objective and rules")
    files = data.get("files")
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files:
        raise UsageError(f"{where}: metrics.files: expected globs relative to the work dir")
    fmt = data.get("format", "regex")
    if fmt not in ("regex", "jsonl"):
        raise UsageError(f"{where}: metrics.format: {fmt!r}; use regex or jsonl")
    objective = data.get("objective")
    if not isinstance(objective, str) or not objective:
        raise UsageError(f"{where}: metrics.objective: required (the metric to maximise)")

    def patterns(key: str) -> tuple[re.Pattern[str], ...]:
        out = []
        for i, text in enumerate(data.get(key) or []):
            try:
                out.append(re.compile(str(text)))
            except re.error as e:
                raise UsageError(f"{where}: metrics.{key}[{i}]: bad regex: {e}") from e
        return tuple(out)

    train, val = patterns("train"), patterns("val")
    if fmt == "regex":
        groups = {g for p in val for g in p.groupindex}
        if objective not in groups:
            raise UsageError(
                f"{where}: metrics.objective: {objective!r} is not a named group of any "
                "metrics.val regex, so the log would never report it"
            )
    return MetricRules(
        files=tuple(str(f) for f in files),
        format=fmt,
        objective=objective,
        train=train,
        val=val,
        iter_is_global=bool(data.get("iter_is_global", True)),
        epoch_key=str(data.get("epoch_key", "epoch")),
    )


class CommandTrainer:
    """A trainer launched by a profile's argv template. See load_profile."""

    def __init__(
        self,
        profile: str | Path | Profile,
        *,
        repo: str | Path | None = None,
        config: str | Path | None = None,
        reference_gpus: int | None = None,
        container: str | None = None,
        extra_args: Any = None,
    ) -> None:
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        # Appended to the profile's argv as they are (no placeholders: they are the user's).
        self.extra_args = arg_list(extra_args)
        self.name = self.profile.name
        self.repo = Path(repo).expanduser().resolve() if repo is not None else None
        if self.repo is not None and not self.repo.is_dir():
            raise UsageError(f"{repo}: --repo: the trainer repository does not exist")
        self.config: Path | None = None
        if config is not None:
            path = Path(config).expanduser()
            if not path.is_absolute() and self.repo is not None:
                path = self.repo / path
            if not path.is_file():
                raise UsageError(f"{config}: --config: the config file does not exist")
            self.config = path.resolve()
        self.reference_gpus = reference_gpus
        self.container = container

    def reference(self) -> dict[str, Any]:
        p = self.profile
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if self.reference_gpus is not None:
            values["gpus"], sources["gpus"] = self.reference_gpus, "--reference-gpus"
        if p.reference_keys and self.config is not None:
            cfg = read_yaml_config(self.config)
            raw = {}
            for key, dotted in p.reference_keys.items():
                value = _lookup(cfg, dotted)
                if value is not None:
                    raw[key] = (float(value), f"{self.config}: {dotted}")
            for key, (value, source) in raw.items():
                if key in DERIVED_KEYS:
                    if "lr" in raw and raw["lr"][0]:
                        field_name = DERIVED_KEYS[key]
                        values.setdefault(field_name, clean_float(value / raw["lr"][0]))
                        sources.setdefault(field_name, f"{source} / lr")
                elif key not in values:
                    is_int = key in ("gpus", "samples_per_gpu", "warmup_iters", "epochs",
                                     "train_samples")  # fmt: skip
                    values[key] = int(value) if is_int else value
                    sources[key] = source
        for key, value in p.reference.items():
            if key not in values:
                values[key] = value
                sources[key] = f"{p.path}: reference.{key}"
        values["_sources"] = sources
        return values

    def placeholder_values(
        self, params: TrialParams, layout: Layout, work_dir: Path, name: str
    ) -> dict[str, Any]:
        ref = self.reference()
        epochs = params.get("epochs", ref.get("epochs"))
        train_samples = params.get("train_samples", ref.get("train_samples"))
        iters_per_epoch = math.ceil(train_samples / params.global_batch) if train_samples else None
        warmup_ratio = params.get("warmup_ratio", ref.get("warmup_ratio"))
        lr = params["lr"]
        return {
            # Every value of the trial is a placeholder ({lr}, {weight_decay}, ...); the derived
            # ones below spell them the way trainers often take them.
            **params.values,
            "warmup_ratio": warmup_ratio,
            "warmup_start_lr": clean_float(lr * warmup_ratio) if warmup_ratio is not None else None,
            "min_lr": clean_float(lr * params["min_lr_ratio"]),
            "samples_per_gpu": params.samples_per_gpu,
            "global_batch": params.global_batch,
            "gpus": params.gpus,
            "nnodes": layout.nnodes,
            "procs_per_node": layout.procs_per_node,
            "gpu_ids": ",".join(str(i) for i in range(layout.procs_per_node)),
            **{p.strip("{}"): p for p in NODE_PLACEHOLDERS},  # left for the executor
            "work_dir": str(work_dir),
            "repo": str(self.repo) if self.repo else None,
            "config": str(self.config) if self.config else None,
            "name": name,
            "seed": params.get("seed"),
            **{k: params.get(k, ref.get(k)) for k in ("weight_decay", "beta1", "beta2")},
            "epochs": epochs,
            "train_samples": train_samples,
            "iters_per_epoch": iters_per_epoch,
            "total_iters": iters_per_epoch * epochs if iters_per_epoch and epochs else None,
        }

    def render(
        self, params: TrialParams, layout: Layout, work_dir: Path, *, resume: bool, name: str
    ) -> TrialSpec:
        p = self.profile
        if layout.world_size != params.gpus:
            raise UsageError(
                f"{p.path}: a command trainer runs one process per GPU; the trial stands for "
                f"{params.gpus} GPUs but the layout has {layout.world_size} processes"
            )
        work_dir = Path(work_dir)
        values = self.placeholder_values(params, layout, work_dir, name)

        def fill(text: str, key: str) -> str:
            return _fill(text, values, p.path, key)

        argv = [fill(a, f"argv[{i}]") for i, a in enumerate(p.argv)]
        for key, fragment in p.optional_argv.items():
            if values.get(key) is not None:
                argv += [fill(a, f"optional_argv.{key}[{i}]") for i, a in enumerate(fragment)]
        if resume:
            argv += [fill(a, f"resume_argv[{i}]") for i, a in enumerate(p.resume_argv)]
        argv += self.extra_args
        files = {fill(k, f"files.{k}"): fill(v, f"files.{k}") for k, v in p.files.items()}
        files[logs.TRIAL_FILE] = logs.trial_file_text(name, params, layout)
        return TrialSpec(
            name=name,
            work_dir=str(work_dir),
            argv=tuple(argv),
            layout=layout,
            env={k: fill(v, f"env.{k}") for k, v in p.env.items()},
            files=files,
            resume=resume,
            container=self.container,
            cwd=fill(p.cwd, "cwd") if p.cwd else (str(self.repo) if self.repo else None),
        )

    def read_metrics(self, work_dir: Path) -> TrialMetrics:
        work_dir = Path(work_dir)
        rules = self.profile.metrics
        assert rules is not None
        runs = []
        for pattern in rules.files:
            for path in sorted(work_dir.glob(pattern)):
                runs.append(parse_with_rules(logs.read_text(path), rules, str(path)))
        return logs.merge(runs, global_batch=logs.read_global_batch(work_dir))

    def fixed_keys(self) -> frozenset[str]:
        """The trial's values the profile's templates use (a value no template names
        reaches no trainer), with those the derived placeholders are made from."""
        p = self.profile
        texts = [*p.argv, *p.resume_argv, *p.env.values(), *p.files.values(), *p.files]
        texts += [a for fragment in p.optional_argv.values() for a in fragment]
        used = {
            f.split(".")[0].split("[")[0]
            for text in [*texts, p.cwd or ""]
            for _, f, _, _ in string.Formatter().parse(text)
            if f
        }
        for derived, source in (
            ("warmup_start_lr", "warmup_ratio"),
            ("total_iters", "epochs"),
            ("total_iters", "train_samples"),
            ("iters_per_epoch", "train_samples"),
        ):
            if derived in used:
                used.add(source)
        return frozenset(used)

    def knob_keys(self) -> frozenset[str]:
        """The knobs a trial of this profile can carry: those its templates name (the batch
        through {samples_per_gpu} or {global_batch}); lr, warmup and min_lr always."""
        used = set(self.fixed_keys())
        if "global_batch" in used:
            used.add("samples_per_gpu")
        return frozenset(used | {"lr", "warmup_iters", "min_lr_ratio"})

    def knows_metric(self, name: str) -> bool | None:
        """Regex rules name every metric they read; JSON lines may hold any key."""
        rules = self.profile.metrics
        if rules is None or rules.format != "regex":
            return None
        return name in {g for pattern in (*rules.val, *rules.train) for g in pattern.groupindex}

    def has_checkpoint(self, work_dir: Path) -> bool:
        pattern = self.profile.checkpoint
        if pattern is None:
            return False
        return any(Path(work_dir).glob(pattern.replace("{work_dir}/", "")))

    def failure(self, work_dir: Path, log: str) -> Failure | None:
        """The job log's cause; where it shows none (Paddle's launcher prints only which rank
        aborted), the workers' own logs (`failure_logs`, e.g. log/workerlog.N), the failing
        rank's first."""
        text = failures.read_log_tail(log) if log else ""
        found = failures.failure_cause(text)
        if found is not None and found.kind != "signal":
            return found
        rank = failures.failing_rank(text)
        paths = sorted(
            {p for pattern in self.profile.failure_logs for p in Path(work_dir).glob(pattern)}
        )
        paths.sort(key=lambda p: rank is None or re.search(rf"\D{rank}$", p.name) is None)
        for path in paths:
            cause = failures.failure_cause(failures.read_log_tail(path))
            if cause is not None:
                return replace(cause, rank=rank if cause.rank is None else cause.rank)
        return found


def _fill(text: str, values: dict[str, Any], where: str, key: str) -> str:
    fields = {f.split(".")[0] for _, f, _, _ in string.Formatter().parse(text) if f}
    missing = sorted(f for f in fields if values.get(f) is None)
    if missing:
        raise UsageError(
            f"{where}: {key}: no value for {', '.join('{' + m + '}' for m in missing)} "
            "(give it in the trial, the profile's reference block, or --config/--repo)"
        )
    return _FORMATTER.vformat(text, (), values)


class _Formatter(string.Formatter):
    """Floats without a format spec in their shortest exact form, spelled so YAML 1.1
    (PyYAML, which Paddle3D uses) reads them as floats: 1e-07 becomes 1.0e-07."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        if isinstance(value, float) and not format_spec:
            text = repr(value)
            if "e" in text and "." not in text:
                text = text.replace("e", ".0e", 1)
            return text
        return super().format_field(value, format_spec)


_FORMATTER = _Formatter()


def parse_with_rules(text: str, rules: MetricRules, source: str = "") -> logs.Run:
    """One log file read with a profile's rules (pure)."""
    run = logs.Run(source, global_iters=rules.iter_is_global)
    if rules.format == "jsonl":
        for record in logs.json_records(text):
            values = {
                k: float(v) for k, v in record.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }  # fmt: skip
            if rules.objective in values:
                epoch = int(values.pop(rules.epoch_key, len(run.val) + 1))
                run.val.setdefault(epoch, {}).update(logs.canonical(values))
            elif values:
                run.train.append(values)
        return run
    epoch = 0
    for line in logs.complete_lines(text):
        for pattern in rules.train:
            if m := pattern.search(line):
                values = _groups(m)
                epoch = int(values.get("epoch", epoch))
                run.train.append(values)
                break
        for pattern in rules.val:
            if m := pattern.search(line):
                values = _groups(m)
                at = int(values.pop("epoch", epoch or 1))
                run.val.setdefault(at, {}).update(logs.canonical(values))
    return run


def _groups(m: re.Match[str]) -> dict[str, float]:
    out = {}
    for k, v in m.groupdict().items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def read_yaml_config(path: Path) -> dict[str, Any]:
    """A YAML trainer config with Paddle-style `_base_` (one path, nested dicts merged)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"{path}: cannot read the config: {e}") from e
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the config is not a mapping")
    base = data.pop("_base_", None)
    if base is None:
        return data
    return _merge(data, read_yaml_config((path.parent / str(base)).resolve()))


def _merge(child: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    if child.get("_inherited_", True) is False:
        return {k: v for k, v in child.items() if k != "_inherited_"}
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(value, out[key])
        else:
            out[key] = value
    return out


def _lookup(cfg: dict[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None
