"""The mmengine trainer family: mmdetection3d 1.x configs, and minibev as one instance.

A trial is the config loaded as data with the trial's keys set (optim_wrapper lr, the
LinearLR warmup and CosineAnnealingLR floor in param_scheduler, train_dataloader batch,
auto_scale_lr off), dumped whole as `trial_config.py` in the work dir, and launched with
torchrun (or plain python for one process). Metrics come from
`{work_dir}/{timestamp}/vis_data/scalars.json`, which the LocalVisBackend writes; render
adds that backend when the config has only others (DETR3D's has TensorBoard only).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaleout.core.errors import UsageError
from scaleout.core.job import Layout, TrialMetrics, TrialParams, TrialSpec
from scaleout.trainers import configread, datasets, failures, logs
from scaleout.trainers.base import Failure
from scaleout.trainers.optimizer import KNOB_KEYS, optimizer_overrides, optimizer_reference
from scaleout.trainers.options import arg_list

TRIAL_CONFIG = "trial_config.py"
CHECKPOINT_MARKER = "last_checkpoint"
WARMUP_TYPES = ("LinearLR",)
DECAY_TYPES = ("CosineAnnealingLR",)
MINIBEV_ENTRY = ("-m", "scaleout.minibev.train")
# The search.fixed keys trial_config writes (scaleout.trainers.base.settable_keys).
FIXED_KEYS = frozenset({"epochs", "eval_interval", "seed", "warmup_ratio"})


@dataclass(frozen=True)
class Schedule:
    """Where the schedule lives in param_scheduler, and its values."""

    lr: float
    warmup_index: int | None
    warmup_iters: int
    warmup_ratio: float | None
    cosine_index: int
    min_lr_key: str  # "eta_min_ratio" or "eta_min"
    min_lr_ratio: float


class MMEngineTrainer:
    """An mmengine config, run by `entry` (a module for `python -m`, or a train script).

    `repo` is the checkout of the trainer (mmdet3d 1.x): the command runs there, with it on
    PYTHONPATH, and `mmdet3d::` bases resolve under `{repo}/configs`. Without a repo the
    entry must be importable from the environment (minibev).
    """

    fixed_keys = FIXED_KEYS
    # The knobs trial_config writes (optim_wrapper.optimizer.*, train_cfg.max_epochs, the batch).
    knob_keys = KNOB_KEYS

    def __init__(
        self,
        config: str | Path,
        *,
        repo: str | Path | None = None,
        entry: tuple[str, ...] | None = None,
        name: str = "mmengine",
        reference_gpus: int | None = None,
        python: str = sys.executable,
        container: str | None = None,
        extra_args: Sequence[str] | str | None = None,
    ) -> None:
        self.name = name
        self.config_path = configread.resolve_config_path(config, repo)
        self.config_arg = str(config)
        self.repo = Path(repo).expanduser().resolve() if repo is not None else None
        if entry is None:
            if self.repo is None:
                raise UsageError(
                    f"{config}: --repo: the mmengine trainer needs the repo with tools/train.py"
                )
            entry = (str(self.repo / "tools" / "train.py"),)
        self.entry = tuple(entry)
        self.reference_gpus = reference_gpus
        self.python = python
        self.container = container
        self.extra_args = arg_list(extra_args)
        self._cfg: Any = None

    @property
    def cfg(self) -> Any:
        if self._cfg is None:
            self._cfg = configread.load_config(self.config_path, repo=self.repo)
        return self._cfg

    def schedule(self) -> Schedule:
        return read_schedule(self.cfg, self.config_arg)

    def reference(self) -> dict[str, Any]:
        """The `reference` block when the config has one (minibev), else the schedule keys."""
        where = self.config_arg
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}

        def put(key: str, value: Any, source: str) -> None:
            if value is not None and value is not configread.MISSING and key not in values:
                values[key] = value
                sources[key] = f"{where}: {source}"

        if self.reference_gpus is not None:
            values["gpus"], sources["gpus"] = self.reference_gpus, "--reference-gpus"
        block = self.cfg.get("reference")
        if isinstance(block, dict):
            for key, value in block.items():
                put(key, value, f"reference.{key}")
        s = self.schedule()
        put("lr", s.lr, "optim_wrapper.optimizer.lr")
        if s.warmup_index is None:
            put("warmup_iters", 0, "param_scheduler (no LinearLR warmup)")
        else:
            put("warmup_iters", s.warmup_iters, f"param_scheduler[{s.warmup_index}].end")
            put("warmup_ratio", s.warmup_ratio, f"param_scheduler[{s.warmup_index}].start_factor")
        min_lr_source = f"param_scheduler[{s.cosine_index}].{s.min_lr_key}"
        if s.min_lr_key == "eta_min":
            min_lr_source += " / optim_wrapper.optimizer.lr"
        put("min_lr_ratio", s.min_lr_ratio, min_lr_source)
        put(
            "samples_per_gpu",
            configread.lookup(self.cfg, "train_dataloader.batch_size"),
            "train_dataloader.batch_size",
        )
        put("epochs", configread.lookup(self.cfg, "train_cfg.max_epochs"), "train_cfg.max_epochs")
        optim, optim_sources = self.optimizer_reference()
        for key, value in optim.items():
            if key not in values:
                values[key], sources[key] = value, optim_sources[key]
        put("gpus", self.cfg.get("virtual_gpus"), "virtual_gpus")
        if "train_samples" not in values:
            size = datasets.train_samples(
                configread.lookup(self.cfg, "train_dataloader.dataset"),
                key="train_dataloader.dataset",
                where=where,
                repo=self.repo,
                joins_data_root=True,
            )
            if size is not None:
                values["train_samples"], sources["train_samples"] = size.samples, size.source
        values["evaluation"] = self.evaluation()
        values["_sources"] = sources
        return values

    def optimizer_reference(self) -> tuple[dict[str, float], dict[str, str]]:
        key = "optim_wrapper.optimizer"
        return optimizer_reference(configread.lookup(self.cfg, key), key, self.config_arg)

    def evaluation(self) -> dict[str, Any]:
        """When validation runs: mmengine's EpochBasedTrainLoop validates every
        `train_cfg.val_interval` epochs from `val_begin`, and at the last epoch as well."""
        train_cfg = self.cfg.get("train_cfg") or {}
        where = self.config_arg
        by_epoch = "Iter" not in str(train_cfg.get("type", "")) and train_cfg.get("by_epoch", True)
        given = train_cfg.get("val_interval")
        return {
            "interval": int(given) if given is not None else 1,
            "start": int(train_cfg["val_begin"]) if train_cfg.get("val_begin") else None,
            "by_epoch": bool(by_epoch),
            "last_epoch": True,
            "source": f"{where}: train_cfg.val_interval"
            if given is not None
            else f"{where}: no train_cfg.val_interval (mmengine's default: every epoch)",
        }

    def trial_config(self, params: TrialParams) -> Any:
        """A copy of the config with the trial's values set (pure; the file text is dumped)."""
        s = self.schedule()
        cfg = copy.deepcopy(self.cfg)
        cfg.optim_wrapper.optimizer.lr = params["lr"]
        for key, value in optimizer_overrides(params, self.optimizer_reference()[0]).items():
            cfg.optim_wrapper.optimizer[key] = value
        schedulers = list(_schedulers(cfg))
        cosine = schedulers[s.cosine_index]
        cosine.pop("eta_min", None)
        cosine["eta_min_ratio"] = params["min_lr_ratio"]
        old_epochs = configread.lookup(cfg, "train_cfg.max_epochs")
        epochs = params.get("epochs")
        if epochs is not None:
            cfg.train_cfg.max_epochs = epochs
            if cosine.get("by_epoch", True):
                for key in ("end", "T_max"):
                    if cosine.get(key) == old_epochs:
                        cosine[key] = epochs
        if s.warmup_index is not None:
            warmup = schedulers[s.warmup_index]
        else:
            warmup = dict(type="LinearLR", start_factor=1.0 / 3, by_epoch=False, begin=0)
            schedulers.insert(0, warmup)
        if params["warmup_iters"] > 0:
            warmup["end"] = int(warmup.get("begin", 0)) + params["warmup_iters"]
            if params.get("warmup_ratio") is not None:
                warmup["start_factor"] = params["warmup_ratio"]
        else:
            schedulers.remove(warmup)
        cfg.param_scheduler = schedulers
        cfg.train_dataloader.batch_size = params.samples_per_gpu
        if "virtual_gpus" in cfg:
            cfg.virtual_gpus = params.gpus
        auto = cfg.get("auto_scale_lr") or {}
        cfg.auto_scale_lr = {**auto, "enable": False}  # scaleout sets lr; never rescale it
        if params.get("seed") is not None:
            cfg.randomness = {**(cfg.get("randomness") or {}), "seed": params["seed"]}
        if params.get("eval_interval") is not None:
            train_cfg = cfg.get("train_cfg") or {}
            cfg.train_cfg = {**train_cfg, "val_interval": int(params["eval_interval"])}
        _ensure_local_vis_backend(cfg)
        return cfg

    def render(
        self, params: TrialParams, layout: Layout, work_dir: Path, *, resume: bool, name: str
    ) -> TrialSpec:
        if "virtual_gpus" not in self.cfg and layout.world_size != params.gpus:
            raise UsageError(
                f"{self.config_arg}: virtual_gpus: the config has no virtual GPUs, so the "
                f"trial's {params.gpus} GPUs need {params.gpus} processes, "
                f"not {layout.world_size}"
            )
        work_dir = Path(work_dir)
        cfg_file = str(work_dir / TRIAL_CONFIG)
        args = [*self.entry, cfg_file, "--work-dir", str(work_dir), *self.extra_args]
        if layout.world_size == 1:
            argv = [self.python, *args, "--launcher", "none"]
        else:
            argv = [
                self.python, "-m", "torch.distributed.run",
                "--nnodes", str(layout.nnodes), "--node_rank", "{node_rank}",
                "--nproc_per_node", str(layout.procs_per_node),
                "--master_addr", "{master_addr}", "--master_port", "{master_port}",
                *args, "--launcher", "pytorch",
            ]  # fmt: skip
        env: dict[str, str] = {}
        if resume:
            argv.append("--resume")
            # torch >= 2.6 loads weights-only by default and mmengine 0.10.7's resume then
            # fails (docs/trainers.md); these are checkpoints the trial itself wrote.
            env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        if self.repo is not None:
            env["PYTHONPATH"] = str(self.repo)  # for custom_imports such as projects.DETR3D
        return TrialSpec(
            name=name,
            work_dir=str(work_dir),
            argv=tuple(argv),
            layout=layout,
            env=env,
            files={
                TRIAL_CONFIG: configread.config_text(self.trial_config(params)),
                logs.TRIAL_FILE: logs.trial_file_text(name, params, layout),
            },
            resume=resume,
            container=self.container,
            cwd=str(self.repo) if self.repo is not None else None,
        )

    def read_metrics(self, work_dir: Path) -> TrialMetrics:
        return read_scalars(Path(work_dir))

    def has_checkpoint(self, work_dir: Path) -> bool:
        return (Path(work_dir) / CHECKPOINT_MARKER).is_file()

    def knows_metric(self, name: str) -> bool | None:
        """minibev's evaluator logs the nuScenes metrics (canonical names, or its raw keys);
        another config's evaluator is its own."""
        if self.name != "minibev":
            return None
        return name in logs.CANONICAL or name.startswith("NuScenes metric/")

    def failure(self, work_dir: Path, log: str) -> Failure | None:
        return failures.failure_cause(failures.read_log_tail(log) if log else "")

    def grad_stats_hint(self) -> str:
        """How this trainer's config logs the gradient statistics `scaleout probe` reads."""
        if self.name == "minibev":
            return (
                "minibev logs them with MiniBEVGradStatsHook (custom_hooks of its presets) on "
                "iterations whose global batch is larger than one GPU's: probe at --gpus 2 or "
                "more"
            )
        from scaleout.hooks import MMENGINE_CONFIG

        return (
            f"add to {self.config_arg} (scaleout importable in the trainer's environment; "
            f"docs/evidence.md):\n{MMENGINE_CONFIG}"
        )


def minibev(preset: str = "small", *, reference_gpus: int | None = None) -> MMEngineTrainer:
    """The built-in trainer: one mmengine config of scaleout.minibev, run as a module."""
    configs = Path(__file__).resolve().parent.parent / "minibev" / "configs"
    path = configs / f"{preset}.py"
    if not path.is_file():
        known = sorted(p.stem for p in configs.glob("*.py") if not p.stem.startswith("_"))
        raise UsageError(
            f"--preset: unknown minibev preset {preset!r}; known: {', '.join(known) or '(none)'}"
        )
    return MMEngineTrainer(path, entry=MINIBEV_ENTRY, name="minibev", reference_gpus=reference_gpus)


def read_scalars(work_dir: Path, *, global_batch: int | None = None) -> TrialMetrics:
    """Every run's scalars.json under work_dir, in timestamp order (later wins per epoch)."""
    runs = [
        logs.parse_mmengine_scalars(logs.read_text(p), str(p))
        for p in sorted(work_dir.glob("*/vis_data/scalars.json"))
    ]
    if global_batch is None:
        global_batch = logs.read_global_batch(work_dir)
    return logs.merge(runs, global_batch=global_batch)


def read_schedule(cfg: Any, where: str) -> Schedule:
    """The lr schedule of an mmengine config, or a UsageError naming file and key."""
    lr = configread.lookup(cfg, "optim_wrapper.optimizer.lr")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        raise UsageError(
            f"{where}: optim_wrapper.optimizer.lr: missing; scaleout needs the reference lr"
        )
    warmup_index = cosine_index = None
    for i, sched in enumerate(_schedulers(cfg, where)):
        kind = sched.get("type")
        if kind in WARMUP_TYPES and warmup_index is None and cosine_index is None:
            if sched.get("by_epoch", True):
                raise UsageError(
                    f"{where}: param_scheduler[{i}].by_epoch: the LinearLR warmup must count "
                    "iterations (by_epoch=False)"
                )
            warmup_index = i
        elif kind in DECAY_TYPES and cosine_index is None:
            cosine_index = i
        else:
            raise UsageError(
                f"{where}: param_scheduler[{i}].type: {kind!r} cannot be mapped; supported: "
                "a LinearLR warmup (by_epoch=False) then one CosineAnnealingLR"
            )
    if cosine_index is None:
        raise UsageError(
            f"{where}: param_scheduler: no CosineAnnealingLR; supported: a LinearLR warmup "
            "(by_epoch=False) then one CosineAnnealingLR"
        )
    schedulers = list(_schedulers(cfg, where))
    cosine = schedulers[cosine_index]
    if cosine.get("eta_min_ratio") is not None:
        min_lr_key, ratio = "eta_min_ratio", float(cosine["eta_min_ratio"])
    else:
        eta_min = float(cosine.get("eta_min") or 0.0)
        min_lr_key, ratio = "eta_min", float(f"{eta_min / float(lr):.12g}")
    warmup = schedulers[warmup_index] if warmup_index is not None else None
    return Schedule(
        lr=float(lr),
        warmup_index=warmup_index,
        warmup_iters=int(warmup.get("end", 0)) - int(warmup.get("begin", 0)) if warmup else 0,
        warmup_ratio=float(warmup.get("start_factor", 1.0 / 3)) if warmup else None,
        cosine_index=cosine_index,
        min_lr_key=min_lr_key,
        min_lr_ratio=ratio,
    )


def _schedulers(cfg: Any, where: str = "") -> list[Any]:
    value = cfg.get("param_scheduler")
    if isinstance(value, dict):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(s, dict) for s in value):
        return list(value)
    raise UsageError(f"{where}: param_scheduler: missing or not a list of dicts")


def _ensure_local_vis_backend(cfg: Any) -> None:
    visualizer = cfg.get("visualizer")
    if not isinstance(visualizer, dict):
        return  # none: mmengine builds one with LocalVisBackend
    backends = list(visualizer.get("vis_backends") or [])
    if not any(b.get("type") == "LocalVisBackend" for b in backends):
        backends.append(dict(type="LocalVisBackend"))
        visualizer["vis_backends"] = backends
