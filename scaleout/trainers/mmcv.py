"""The mmcv 1.x trainer family: BEVFormer, PETR (mmdet3d 0.17 style) and EasyCV.

The recipe is read from the config as data (configread), a trial is the repo's own
`tools/train.py` launched the way `tools/dist_train.sh` launches it, with the trial's values
as `--cfg-options` (or, for EasyCV, whose train.py has no `--cfg-options`, a small generated
config that inherits the original). `--autoscale-lr` is never passed: scaleout sets lr.
fp16 configs run the way their repos run them (BEVFormer's tools/fp16/train.py, EasyCV's
`--fp16`), and a train script that spawns its own per-GPU workers (HFAiLab's) is started
once per node. Metrics come from the `{timestamp}.log.json` files mmcv writes, the text
log as fallback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaleout.core.errors import StateError, UsageError
from scaleout.core.job import Layout, TrialMetrics, TrialParams, TrialSpec
from scaleout.trainers import configread, datasets, failures, logs
from scaleout.trainers.base import Failure
from scaleout.trainers.optimizer import KNOB_KEYS, optimizer_overrides, optimizer_reference
from scaleout.trainers.options import arg_list, clean_float

SUPPORTED_POLICIES = ("CosineAnnealing",)
SUPPORTED_WARMUPS = ("linear", None)
CHECKPOINT = "latest.pth"
GENERATED_CONFIG = "trial_config.py"


@dataclass(frozen=True)
class Flavor:
    """How one codebase's tools/train.py spells things."""

    name: str
    work_dir_flag: str = "--work-dir"
    resume_flag: str = "--resume-from"
    overrides: str = "cfg-options"  # or "config": a generated config inheriting the original
    fp16_script: str | None = None  # the fp16 entry point (BEVFormer's tools/fp16/train.py)
    fp16_flag: str | None = None  # or a flag of train.py (EasyCV's --fp16)
    deterministic: bool = False  # what the repo's dist_train.sh passes
    eval_key: str = "evaluation"  # the EvalHook's settings (EasyCV: eval_config)


FLAVORS = {
    # BEVFormer's dist_train.sh always adds --deterministic; fp16 configs have their own script.
    "bevformer": Flavor("bevformer", fp16_script="tools/fp16/train.py", deterministic=True),
    "petr": Flavor("petr"),
    # EasyCV's train.py: --work_dir / --resume_from / --fp16, and no --cfg-options.
    "easycv": Flavor(
        "easycv",
        work_dir_flag="--work_dir",
        resume_flag="--resume_from",
        overrides="config",
        fp16_flag="--fp16",
        eval_key="eval_config",
    ),
}
LAUNCH_MODULES = ("torch.distributed.launch", "torch.distributed.run")
LAUNCHES = ("torch", "self")
# A train script that starts its own per-GPU workers (HFAiLab/BEVFormer's tools/train.py ends
# in `torch.multiprocessing.spawn(main, ..., nprocs=torch.cuda.device_count())`).
_SPAWNS_WORKERS = re.compile(r"^[^#\n]*\b(?:multiprocessing|mp)\.spawn\(", re.MULTILINE)
# What such a script reads to join the others (HFAiLab's: nodes, this node, the rendezvous).
SELF_LAUNCH_ENV = (
    ("WORLD_SIZE", "{nnodes}"),
    ("RANK", "{node_rank}"),
    ("MASTER_ADDR", "{master_addr}"),
    ("MASTER_PORT", "{master_port}"),
)


@dataclass(frozen=True)
class Schedule:
    """The config keys a trial sets, in the config's own spelling."""

    lr: float
    warmup: str | None
    warmup_iters: int
    warmup_ratio: float
    min_lr_key: str  # "min_lr_ratio" or "min_lr" (absolute)
    min_lr_ratio: float
    batch_key: str | None  # "samples_per_gpu" or "imgs_per_gpu"
    samples_per_gpu: int | None
    epoch_keys: tuple[str, ...]  # "total_epochs", "runner.max_epochs"
    epochs: int | None


class MMCVTrainer:
    """An mmcv 1.x config in a trainer repo. See docs/trainers.md.

    `config` is the path as the user types it (relative to `repo`, or absolute); `repo` is
    the checkout holding tools/train.py (found above the config when omitted). Nothing
    here imports the repo's code.
    """

    # The search.fixed keys overrides_for and render write (scaleout.trainers.base).
    fixed_keys = frozenset({"epochs", "eval_interval", "seed", "warmup_ratio"})
    # The knobs overrides_for writes (optimizer.weight_decay / betas, the epochs, the batch).
    knob_keys = KNOB_KEYS

    def __init__(
        self,
        config: str | Path,
        *,
        repo: str | Path | None = None,
        flavor: str = "bevformer",
        reference_gpus: int | None = None,
        python: str = "python",
        launch_module: str = "torch.distributed.launch",
        launcher: str = "pytorch",
        deterministic: bool | None = None,
        train_script: str | None = None,
        overrides: str | None = None,
        container: str | None = None,
        fp16: bool | None = None,
        extra_args: Sequence[str] | str | None = None,
        launch: str | None = None,
    ) -> None:
        if flavor not in FLAVORS:
            raise UsageError(f"unknown mmcv flavor {flavor!r}; known: {', '.join(FLAVORS)}")
        if launch_module not in LAUNCH_MODULES:
            raise UsageError(
                f"launch_module {launch_module!r}: use one of {', '.join(LAUNCH_MODULES)}"
            )
        if launcher not in ("pytorch", "slurm"):
            raise UsageError(f"launcher {launcher!r}: use pytorch (torch launcher) or slurm")
        if launch not in (None, *LAUNCHES):
            raise UsageError(
                f"launch {launch!r}: use torch (one process per GPU, started by "
                "torch.distributed) or self (the train script starts its own workers)"
            )
        if launch == "self" and launcher == "slurm":
            raise UsageError(
                "launch self with launcher slurm: a train script that starts its own workers "
                "runs once per node, not once per GPU as `--launcher slurm` would"
            )
        self.flavor = FLAVORS[flavor]
        self.name = flavor
        self.config_path = configread.resolve_config_path(config, repo)
        self.repo = (
            Path(repo).expanduser().resolve() if repo is not None else _find_repo(self.config_path)
        )
        self.config_arg = _as_typed(config, self.config_path, self.repo)
        self.reference_gpus = reference_gpus
        self.python = python
        self.launch_module = launch_module
        self.launcher = launcher
        self.deterministic = self.flavor.deterministic if deterministic is None else deterministic
        self.train_script = train_script
        self.overrides = overrides or self.flavor.overrides
        if self.overrides not in ("cfg-options", "config"):
            raise UsageError(f"overrides {self.overrides!r}: use cfg-options or config")
        self.container = container
        self.fp16_option = fp16
        self.extra_args = arg_list(extra_args)
        self.launch_option = launch
        self._cfg: Any = None

    # ---- reading the recipe -------------------------------------------------------------

    @property
    def cfg(self) -> Any:
        if self._cfg is None:
            self._cfg = configread.load_config(self.config_path, repo=self.repo)
        return self._cfg

    @property
    def fp16(self) -> bool:
        """fp16 as the space file says (`trainer.options.fp16`), else as the config says:
        an `fp16` block (BEVFormer), or a loss scale for EasyCV's AMP optimizer hook."""
        if self.fp16_option is not None:
            return self.fp16_option
        if self.cfg.get("fp16") is not None:
            return True
        loss_scale = configread.lookup(self.cfg, "optimizer_config.loss_scale")
        return self.flavor.fp16_flag is not None and loss_scale not in (configread.MISSING, None)

    @property
    def launch(self) -> str:
        """ "self" when the train script starts its own per-GPU workers, else "torch"."""
        if self.launch_option is not None:
            return self.launch_option
        if self.repo is None or self.train_script_path is None:
            return "torch"
        try:
            text = self.train_script_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "torch"
        return "self" if _SPAWNS_WORKERS.search(text) else "torch"

    @property
    def train_script_path(self) -> Path | None:
        if self.repo is None:
            return None
        path = self.repo / self._script_name()
        return path if path.is_file() else None

    def schedule(self) -> Schedule:
        return read_schedule(self.cfg, self.config_arg)

    def reference(self) -> dict[str, Any]:
        s = self.schedule()
        where = self.config_arg
        values: dict[str, Any] = {
            "lr": s.lr,
            "warmup_iters": s.warmup_iters,
            "warmup_ratio": s.warmup_ratio,
            "min_lr_ratio": s.min_lr_ratio,
        }
        sources = {
            "lr": f"{where}: optimizer.lr",
            "warmup_iters": f"{where}: lr_config.warmup_iters",
            "warmup_ratio": f"{where}: lr_config.warmup_ratio",
            "min_lr_ratio": f"{where}: lr_config.{s.min_lr_key}"
            + (" / optimizer.lr" if s.min_lr_key == "min_lr" else ""),
        }
        if s.warmup is None:
            sources["warmup_iters"] = f"{where}: lr_config.warmup (None: no warmup)"
        if s.samples_per_gpu is not None:
            values["samples_per_gpu"] = s.samples_per_gpu
            sources["samples_per_gpu"] = f"{where}: data.{s.batch_key}"
        if s.epochs is not None:
            values["epochs"] = s.epochs
            sources["epochs"] = f"{where}: {s.epoch_keys[0]}"
        if self.reference_gpus is not None:
            values["gpus"] = self.reference_gpus
            sources["gpus"] = "--reference-gpus"
        optim, optim_sources = self.optimizer_reference()
        values.update(optim)
        sources.update(optim_sources)
        size = datasets.train_samples(
            configread.lookup(self.cfg, "data.train"),
            key="data.train",
            where=where,
            repo=self.repo,
        )
        if size is not None:
            values["train_samples"], sources["train_samples"] = size.samples, size.source
        values["evaluation"] = self.evaluation()
        values["_sources"] = sources
        return values

    def evaluation(self) -> dict[str, Any]:
        """When the EvalHook runs: every `interval` epochs from `start` (mmcv's default 1);
        mmcv's hook has no extra evaluation at the last epoch."""
        key = self.flavor.eval_key
        block = self.cfg.get(key)
        where = self.config_arg
        if not isinstance(block, dict) or block.get("interval") is None:
            return {
                "interval": 1,
                "start": None,
                "by_epoch": True,
                "last_epoch": False,
                "source": f"{where}: no {key}.interval (mmcv's default: every epoch)",
            }
        return {
            "interval": int(block["interval"]),
            "start": int(block["start"]) if block.get("start") is not None else None,
            "by_epoch": bool(block.get("by_epoch", True)),
            "last_epoch": False,
            "source": f"{where}: {key}.interval",
        }

    def optimizer_reference(self) -> tuple[dict[str, float], dict[str, str]]:
        return optimizer_reference(self.cfg.get("optimizer"), "optimizer", self.config_arg)

    # ---- rendering a trial --------------------------------------------------------------

    def overrides_for(self, params: TrialParams) -> list[tuple[str, Any]]:
        """(dotted key, value) pairs that turn the recipe into this trial, config spelling."""
        s = self.schedule()
        lr, warmup = params["lr"], params["warmup_iters"]
        items: list[tuple[str, Any]] = [("optimizer.lr", lr)]
        if warmup > 0:
            if s.warmup is None:
                items.append(("lr_config.warmup", "linear"))
            items.append(("lr_config.warmup_iters", warmup))
            if params.get("warmup_ratio") is not None:
                items.append(("lr_config.warmup_ratio", params["warmup_ratio"]))
        elif s.warmup is not None:
            items.append(("lr_config.warmup", None))
        if s.min_lr_key == "min_lr":
            items.append(("lr_config.min_lr", clean_float(lr * params["min_lr_ratio"])))
        else:
            items.append(("lr_config.min_lr_ratio", params["min_lr_ratio"]))
        items.append((f"data.{s.batch_key or 'samples_per_gpu'}", params.samples_per_gpu))
        optim = optimizer_overrides(params, self.optimizer_reference()[0])
        items += [(f"optimizer.{key}", value) for key, value in optim.items()]
        if params.get("epochs") is not None:
            for key in s.epoch_keys or ("total_epochs", "runner.max_epochs"):
                items.append((key, params["epochs"]))
        if params.get("eval_interval") is not None:
            items.append((f"{self.flavor.eval_key}.interval", int(params["eval_interval"])))
        return items

    def render(
        self, params: TrialParams, layout: Layout, work_dir: Path, *, resume: bool, name: str
    ) -> TrialSpec:
        if layout.world_size != params.gpus:
            raise UsageError(
                f"{self.config_arg}: mmcv trainers run one process per GPU; the trial stands "
                f"for {params.gpus} GPUs but the layout has {layout.world_size} processes"
            )
        work_dir = Path(work_dir)
        script = self._script()
        repo = self.repo
        files = {logs.TRIAL_FILE: logs.trial_file_text(name, params, layout)}
        config = self.config_arg
        if self.overrides == "config":
            # Absolute: EasyCV's loader reads a relative config path against its package.
            # Without symlinks: EasyCV pops `..` off the path as text, the OS follows links.
            trial_config = Path(os.path.realpath(work_dir)) / GENERATED_CONFIG
            files[GENERATED_CONFIG] = generated_config(
                self.config_path.resolve(), self.overrides_for(params), name, child=trial_config
            )
            config = str(trial_config)

        args = [config]
        if self.launcher == "slurm":
            args += [f"{self.flavor.work_dir_flag}={work_dir}", "--launcher=slurm"]
        else:
            args += ["--launcher", "pytorch", self.flavor.work_dir_flag, str(work_dir)]
        if resume:
            checkpoint = work_dir / CHECKPOINT
            if not checkpoint.exists():
                # train.py would silently start from scratch; refuse instead.
                raise StateError(f"{checkpoint}: resume requested but the checkpoint is missing")
            args += [self.flavor.resume_flag, str(checkpoint)]
        if params.get("seed") is not None:
            args += ["--seed", str(params["seed"])]
        if self.deterministic:
            args.append("--deterministic")
        if self.flavor.fp16_flag and self.fp16:
            args.append(self.flavor.fp16_flag)
        # Before --cfg-options, whose values run to the end of the line.
        args += self.extra_args
        if self.overrides == "cfg-options":
            args += ["--cfg-options"] + [
                f"{k}={format_value(v)}" for k, v in self.overrides_for(params)
            ]

        if self.launcher == "slurm":
            argv = [self.python, "-u", script, *args]
        elif self.launch == "self":
            # One process per node, which spawns one worker per visible GPU and finds the
            # others through these variables (filled per node like any argv placeholder).
            env = [f"{k}={v.replace('{nnodes}', str(layout.nnodes))}" for k, v in SELF_LAUNCH_ENV]
            argv = ["env", *env, self.python, script, *args]
        else:
            argv = [
                self.python,
                "-m",
                self.launch_module,
                *self._launch_flags(layout),
                script,
                *args,
            ]
        return TrialSpec(
            name=name,
            work_dir=str(work_dir),
            argv=tuple(argv),
            layout=layout,
            env={"PYTHONPATH": str(repo)},  # as dist_train.sh does, for the plugin import
            files=files,
            resume=resume,
            container=self.container,
            cwd=str(repo),
            launch="task" if self.launcher == "slurm" else "node",
        )

    def _launch_flags(self, layout: Layout) -> list[str]:
        # One node: what dist_train.sh types. More: the node flags, filled per node.
        if layout.nnodes == 1:
            return [f"--nproc_per_node={layout.procs_per_node}", "--master_port={master_port}"]
        return [
            f"--nnodes={layout.nnodes}",
            "--node_rank={node_rank}",
            f"--nproc_per_node={layout.procs_per_node}",
            "--master_addr={master_addr}",
            "--master_port={master_port}",
        ]

    def _script_name(self) -> str:
        """The train script, relative to the repo: as given, else the fp16 entry point for an
        fp16 config where the repo has one, else tools/train.py."""
        if self.train_script is not None:
            return self.train_script
        fp16 = self.flavor.fp16_script
        if fp16 is not None and self.fp16 and self.repo is not None:
            if (self.repo / fp16).is_file():
                return fp16
            if self.fp16_option:
                raise UsageError(
                    f"{self.repo / fp16}: fp16 is asked for, but the repo has no fp16 train "
                    "script (give trainer.options.train_script, or fp16: false)"
                )
        return "tools/train.py"

    def _script(self) -> str:
        if self.repo is None:
            raise UsageError(
                f"{self.config_path}: --repo: not given, and no tools/train.py above the "
                "config; pass the trainer repository with --repo"
            )
        script = self._script_name()
        if not (self.repo / script).is_file():
            raise UsageError(f"{self.repo / script}: the train script does not exist in --repo")
        return script

    # ---- reading back -------------------------------------------------------------------

    def read_metrics(self, work_dir: Path) -> TrialMetrics:
        return read_mmcv_logs(Path(work_dir))

    def has_checkpoint(self, work_dir: Path) -> bool:
        return (Path(work_dir) / CHECKPOINT).exists()

    def failure(self, work_dir: Path, log: str) -> Failure | None:
        return failures.failure_cause(failures.read_log_tail(log) if log else "")

    def grad_stats_hint(self) -> str:
        """How this trainer's config logs the gradient statistics `scaleout probe` reads."""
        from scaleout.hooks import MMCV_CONFIG

        return (
            f"add to {self.config_arg} (scaleout importable in the trainer's environment; "
            f"docs/evidence.md):\n{MMCV_CONFIG}"
        )


def read_schedule(cfg: Any, where: str) -> Schedule:
    """The schedule keys of an mmcv 1.x config, or a UsageError naming file and key."""
    lr = configread.lookup(cfg, "optimizer.lr")
    if lr is configread.MISSING or not isinstance(lr, (int, float)):
        raise UsageError(f"{where}: optimizer.lr: missing; scaleout needs the reference lr")
    lr_config = cfg.get("lr_config")
    policy = lr_config.get("policy") if isinstance(lr_config, dict) else None
    if not isinstance(policy, str) or policy.lower() not in [p.lower() for p in SUPPORTED_POLICIES]:
        raise UsageError(
            f"{where}: lr_config.policy: {policy!r} cannot be mapped; supported: "
            f"{', '.join(SUPPORTED_POLICIES)} (with warmup='linear' or None)"
        )
    assert isinstance(lr_config, dict)
    warmup = lr_config.get("warmup")
    if warmup not in SUPPORTED_WARMUPS:
        raise UsageError(
            f"{where}: lr_config.warmup: {warmup!r} cannot be mapped; supported: 'linear', None"
        )
    if lr_config.get("warmup_by_epoch"):
        raise UsageError(
            f"{where}: lr_config.warmup_by_epoch: only warmup in iterations is supported"
        )
    if lr_config.get("min_lr_ratio") is not None:
        min_lr_key, min_lr_ratio = "min_lr_ratio", float(lr_config["min_lr_ratio"])
    elif lr_config.get("min_lr") is not None:
        min_lr_key, min_lr_ratio = "min_lr", clean_float(float(lr_config["min_lr"]) / float(lr))
    else:
        raise UsageError(f"{where}: lr_config.min_lr_ratio: missing (nor lr_config.min_lr)")
    batch = configread.first_of(cfg, "data.samples_per_gpu", "data.imgs_per_gpu")
    epoch_keys = tuple(
        k
        for k in ("total_epochs", "runner.max_epochs")
        if configread.lookup(cfg, k) not in (configread.MISSING, None)
    )
    return Schedule(
        lr=float(lr),
        warmup=warmup,
        warmup_iters=int(lr_config.get("warmup_iters", 0)) if warmup else 0,
        warmup_ratio=float(lr_config.get("warmup_ratio", 0.1)),  # mmcv's default
        min_lr_key=min_lr_key,
        min_lr_ratio=min_lr_ratio,
        batch_key=batch[0].split(".", 1)[1] if batch else None,
        samples_per_gpu=int(batch[1]) if batch else None,
        epoch_keys=epoch_keys,
        epochs=int(configread.lookup(cfg, epoch_keys[0])) if epoch_keys else None,
    )


def read_mmcv_logs(work_dir: Path, *, global_batch: int | None = None) -> TrialMetrics:
    """All runs in work_dir in time order (timestamps sort), log.json preferred over text."""
    runs = []
    stems = sorted(
        {
            p.name.split(".log")[0]
            for p in work_dir.glob("*.log*")
            if p.name.endswith((".log", ".log.json"))
        }
    )
    for stem in stems:
        json_path, text_path = work_dir / f"{stem}.log.json", work_dir / f"{stem}.log"
        if json_path.is_file():
            run = logs.parse_mmcv_json(logs.read_text(json_path), str(json_path))
            run.iters_per_epoch = _epoch_length(text_path)  # log.json does not say
            # Gradient statistics come from the text log: log.json rounds floats to 5 places.
            if text_path.is_file():
                run.grad = logs.parse_grad_lines(logs.read_text(text_path))
            runs.append(run)
        elif text_path.is_file():
            runs.append(logs.parse_mmcv_text(logs.read_text(text_path), str(text_path)))
    if global_batch is None:
        global_batch = logs.read_global_batch(work_dir)
    return logs.merge(runs, global_batch=global_batch)


def _epoch_length(text_log: Path) -> int | None:
    """N from the first `Epoch [e][i/N]` of the text log written beside the log.json."""
    try:
        with text_log.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if m := logs.TEXT_TRAIN.search(line):
                    return int(m.group(3))
    except OSError:
        pass
    return None


def format_value(value: Any) -> str:
    """A value as mmcv's DictAction parses it back (shortest exact float, None, ints)."""
    if value is None:
        return "None"
    if isinstance(value, float):
        return repr(value)  # shortest exact spelling; "1.0" stays a float
    if isinstance(value, tuple):  # DictAction reads "(0.9,0.98)" back as a tuple
        return "(" + ",".join(format_value(v) for v in value) + ")"
    return str(value)


def generated_config(
    base: Path, items: list[tuple[str, Any]], name: str, *, child: Path | None = None
) -> str:
    """A config that inherits `base` and sets the dotted keys (mmcv merges nested dicts).

    `child` is where the file will be written; `_base_` then names `base` the way EasyCV's
    loader finds it from there (easycv_base_path), which mmcv's own loader reads as well.
    """
    tree: dict[str, Any] = {}
    for dotted, value in items:
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    base_ref = str(base) if child is None else easycv_base_path(base, child)
    lines = [
        f"# Generated by scaleout for trial {name}: {base.name} with this trial's values.",
        f"_base_ = [{base_ref!r}]",
    ]
    for key, value in tree.items():
        lines.append(f"{key} = {_py(value)}")
    return "\n".join(lines) + "\n"


def easycv_base_path(base: Path, child: Path) -> str:
    """How a config at `child` names `base` in `_base_` so that EasyCV's loader finds it.

    EasyCV's `check_base_cfg_path` (easycv/utils/config_tools.py) does not open `_base_`
    entries relative to the including file as mmcv does. An entry that contains the word
    `configs` is joined to the part of the including file's path before `configs` (an
    absolute entry survives that join unchanged); any other entry is taken as relative to
    the including file's folder, leading `..` parts popping its folders one by one, and an
    absolute one is glued onto that folder (the trial's work dir) and not found. So: the
    absolute path when it contains `configs` (EasyCV's own layout), else the path relative
    to the child's folder, which both rules and mmcv's own loader resolve the same way.
    """
    target = os.path.realpath(base)
    if "configs" in target:
        return target
    return os.path.relpath(target, os.path.dirname(os.path.realpath(child)))


def _py(value: Any) -> str:
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{k}={_py(v)}" for k, v in value.items()) + ")"
    return repr(value)


def _find_repo(config: Path) -> Path | None:
    """The checkout above the config that holds tools/train.py (reading needs no repo)."""
    for parent in config.resolve().parents:
        if (parent / "tools" / "train.py").is_file():
            return parent
    return None


def _as_typed(config: str | Path, resolved: Path, repo: Path | None) -> str:
    """The config path as a user types it in the repo: relative when it lies inside."""
    if repo is None:
        return str(config)
    if not Path(config).is_absolute() and (repo / config).resolve() == resolved.resolve():
        return str(config)
    try:
        return str(resolved.resolve().relative_to(repo))
    except ValueError:
        return str(resolved.resolve())
