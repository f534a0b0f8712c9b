"""Train minibev like a real mmengine trainer:

    python -m scaleout.minibev.train CONFIG --work-dir DIR [--cfg-options k=v ...] [--resume]
        [--launcher none|pytorch]

and under torchrun with several processes (gloo on CPU, nccl on GPU) as real DDP.

Everything the user can get wrong is checked before the Runner exists, so a bad config key, a
virtual GPU count that does not divide over the processes, a missing work dir or an unreadable
checkpoint ends with one clear message, exit code 2, and no file written or overwritten.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path
from typing import Any

from scaleout.core.errors import UsageError

SPEED_DEFAULTS = dict(
    amp=None, compile=False, channels_last=False, fused_adamw=False, pin_memory=False
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(
        prog="python -m scaleout.minibev.train", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("config", help="an mmengine config file, e.g. scaleout/minibev/configs/small.py")
    p.add_argument("--work-dir", required=True, help="where logs, scalars.json and checkpoints go")
    p.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default={},
        help="override existing config keys, e.g. optim_wrapper.optimizer.lr=1e-3",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in --work-dir"
    )
    p.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _lookup(cfg: Any, dotted: str) -> None:
    """Raise UsageError unless `dotted` names an existing key (list items by index)."""
    node, path = getattr(cfg, "_cfg_dict", cfg), []
    for part in dotted.split("."):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            where = ".".join(path) or "the top level"
            keys = [str(k) for k in node] if isinstance(node, dict) else []
            near = difflib.get_close_matches(part, keys, n=1)
            hint = f"did you mean {'.'.join([*path, near[0]])!r}?" if near else None
            raise UsageError(f"unknown config key {dotted!r}: {where} has no {part!r}", hint=hint)
        path.append(part)


def world_size(launcher: str) -> int:
    return int(os.environ.get("WORLD_SIZE", "1")) if launcher == "pytorch" else 1


def load_config(args: argparse.Namespace):
    from mmengine.config import Config

    path = Path(args.config)
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    try:
        cfg = Config.fromfile(str(path))
    except Exception as e:  # a syntax error or a bad _base_ in the user's file
        raise UsageError(f"cannot read config {path}: {e}") from e
    for key in args.cfg_options:
        _lookup(cfg, key)
    cfg.merge_from_dict(args.cfg_options)
    for key in (
        "virtual_gpus",
        "train_dataloader.batch_size",
        "train_cfg.max_epochs",
        "optim_wrapper.optimizer.lr",
        "param_scheduler",
    ):
        _lookup(cfg, key)
    _check_layout(cfg, world_size(args.launcher))
    _sync_cosine(cfg)
    _apply_speed(cfg)
    cfg.work_dir = str(Path(args.work_dir))
    cfg.launcher = args.launcher
    cfg.resume = bool(args.resume)
    cfg.load_from = None
    return cfg


def _check_layout(cfg, world: int) -> None:
    virtual, per_gpu = cfg.virtual_gpus, cfg.train_dataloader.batch_size
    for name, value in (("virtual_gpus", virtual), ("train_dataloader.batch_size", per_gpu)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")
    if virtual % world:
        raise UsageError(
            f"virtual_gpus={virtual} does not divide over {world} processes",
            hint="use a process count that divides virtual_gpus (each emulates an equal share)",
        )
    train_samples = cfg.train_dataloader.dataset.get("num_samples")
    if isinstance(train_samples, int) and virtual * per_gpu > train_samples:
        raise UsageError(
            f"global batch {virtual} x {per_gpu} = {virtual * per_gpu} exceeds the "
            f"{train_samples} training samples"
        )
    # Each process builds batches of its share; the model reads one virtual GPU's size.
    cfg.train_dataloader.batch_sampler = dict(type="VirtualGPUBatchSampler", virtual_gpus=virtual)
    cfg.model.samples_per_gpu = per_gpu


def _sync_cosine(cfg) -> None:
    """The cosine must end where training ends, even when only max_epochs was overridden."""
    epochs = cfg.train_cfg.max_epochs
    for sched in cfg.param_scheduler:
        if sched.get("type") == "CosineAnnealingLR" and sched.get("by_epoch", True):
            sched.update(begin=0, end=epochs, T_max=epochs)


def _apply_speed(cfg) -> None:
    import torch

    speed = {**SPEED_DEFAULTS, **cfg.get("speed", {})}
    unknown = set(speed) - set(SPEED_DEFAULTS)
    if unknown:
        raise UsageError(
            f"unknown speed switch(es) {sorted(unknown)}; known: {sorted(SPEED_DEFAULTS)}"
        )
    cuda = torch.cuda.is_available()
    if speed["amp"] not in (None, "bf16", "fp16"):
        raise UsageError(f"speed.amp must be None, 'bf16' or 'fp16', got {speed['amp']!r}")
    if speed["amp"] and cuda:  # mmengine's AmpOptimWrapper needs a GPU; on CPU AMP is a no-op
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.dtype = "bfloat16" if speed["amp"] == "bf16" else "float16"
    if speed["fused_adamw"] and cuda:
        cfg.optim_wrapper.optimizer.fused = True
    cfg.train_dataloader.pin_memory = bool(speed["pin_memory"] and cuda)
    cfg.model.channels_last = bool(speed["channels_last"])
    cfg.model.compile = bool(speed["compile"])


def check_work_dir(work_dir: Path, resume: bool) -> None:
    """Refuse to resume from nothing and to start afresh over someone's checkpoints."""
    has_ckpt = work_dir.is_dir() and (
        (work_dir / "last_checkpoint").exists() or any(work_dir.glob("*.pth"))
    )
    if not resume:
        if has_ckpt:
            raise UsageError(
                f"work dir {work_dir} already holds checkpoints",
                hint="pass --resume to continue that run, or choose a new --work-dir",
            )
        return
    if not work_dir.is_dir():
        raise UsageError(
            f"--resume: work dir {work_dir} does not exist", hint="run without --resume"
        )
    marker = work_dir / "last_checkpoint"
    if not marker.exists():
        raise UsageError(f"--resume: no checkpoint in {work_dir}", hint="run without --resume")
    ckpt = Path(marker.read_text().strip())
    ckpt = ckpt if ckpt.is_absolute() else work_dir / ckpt.name
    _check_checkpoint(ckpt)


def _check_checkpoint(path: Path) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file
    except Exception as e:
        raise UsageError(
            f"--resume: checkpoint {path} is unreadable ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(state, dict) or not {"meta", "state_dict", "optimizer"} <= set(state):
        raise UsageError(f"--resume: {path} is not a minibev training checkpoint")


def main(argv: list[str] | None = None) -> int:
    # mmengine 0.10.7 loads its own checkpoints with torch.load's pre-2.6 default; torch >= 2.6
    # refuses them (docs/trainers.md). We only ever load checkpoints this trainer wrote.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    args = parse_args(argv)
    try:
        cfg = load_config(args)
        check_work_dir(Path(cfg.work_dir), cfg.resume)
    except UsageError as e:
        print(f"minibev.train: error: {e}", file=sys.stderr)
        return e.exit_code
    runner = build_runner(cfg)
    runner.train()
    return 0


def build_runner(cfg):
    import torch
    import torch.distributed as dist
    from mmengine.runner import Runner

    import scaleout.minibev.components  # noqa: F401  (registers the minibev types)

    if cfg.launcher == "pytorch" and not torch.cuda.is_available() and not dist.is_initialized():
        # mmengine's init_dist calls torch.cuda.set_device; on a CPU machine start gloo ourselves.
        dist.init_process_group("gloo")
    cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})
    cfg.env_cfg.dist_cfg.backend = "nccl" if torch.cuda.is_available() else "gloo"
    # Late in training some activations and Adam moments get tiny; denormal arithmetic is
    # many times slower on x86 CPUs and would make run times depend on the lr schedule.
    torch.set_flush_denormal(True)
    return Runner.from_cfg(cfg)


if __name__ == "__main__":
    sys.exit(main())
