"""Hooks that log what a scaling study needs besides the loss: the virtual and real layout,
throughput per epoch, and the two gradient norms a noise-scale estimate is built from.

They write through the runner's visualizer, so everything lands in the same
`{work_dir}/{timestamp}/vis_data/scalars.json` as mmengine's own scalars (one JSON object per
line, `step` = iteration), and in the text log.
"""

from __future__ import annotations

import time

from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _module(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def layout_of(runner) -> dict[str, int]:
    virtual = int(runner.cfg.get("virtual_gpus", get_world_size()))
    per_gpu = int(runner.cfg.train_dataloader.batch_size)
    world = get_world_size()
    return {
        "virtual_gpus": virtual,
        "samples_per_gpu": per_gpu,
        "global_batch": virtual * per_gpu,
        "world_size": world,
        "samples_per_process": virtual // world * per_gpu,
    }


@HOOKS.register_module(name="MiniBEVLayoutHook")
class LayoutHook(Hook):
    """Says once, at the start of training, which layout is emulated and which one runs."""

    priority = "VERY_LOW"

    def before_train(self, runner) -> None:
        lay = layout_of(runner)
        micro = getattr(_module(runner), "micro_batch", None)
        runner.logger.info(
            f"virtual layout: {lay['virtual_gpus']} GPUs x {lay['samples_per_gpu']} samples = "
            f"global batch {lay['global_batch']}; real layout: {lay['world_size']} process(es) x "
            f"{lay['samples_per_process']} samples "
            f"(micro-batch {micro or lay['samples_per_process']})"
        )
        runner.visualizer.add_scalars({f"layout/{k}": v for k, v in lay.items()}, step=runner.iter)


@HOOKS.register_module(name="MiniBEVThroughputHook")
class ThroughputHook(Hook):
    """Samples/s and mean iteration time of each training epoch (validation excluded)."""

    priority = "LOW"

    def before_train_epoch(self, runner) -> None:
        self._start, self._iters = time.perf_counter(), 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._iters += 1

    def after_train_epoch(self, runner) -> None:
        elapsed = time.perf_counter() - self._start
        iters = max(self._iters, 1)
        samples = iters * layout_of(runner)["global_batch"]
        scalars = {
            "epoch_stats/epoch": runner.epoch + 1,
            "epoch_stats/iter_time_s": elapsed / iters,
            "epoch_stats/samples_per_s": samples / max(elapsed, 1e-9),
            "epoch_stats/epoch_time_s": elapsed,
        }
        runner.logger.info(
            f"Epoch(train) [{runner.epoch + 1}] throughput: "
            f"{scalars['epoch_stats/samples_per_s']:.1f} "
            f"samples/s, iter_time {scalars['epoch_stats/iter_time_s']:.4f} s over {iters} iters"
        )
        runner.visualizer.add_scalars(scalars, step=runner.iter)


@HOOKS.register_module(name="MiniBEVGradStatsHook")
class GradStatsHook(Hook):
    """Every `interval` iterations, log |G_local|^2 (one virtual GPU, before the all-reduce) and
    |G_global|^2 (after it, before clipping) with both batch sizes (McCandlish et al. 2018)."""

    priority = "LOW"

    def __init__(self, interval: int = 10) -> None:
        self.interval = interval

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.interval > 0:
            _module(runner).collect_grad_stats = runner.iter % self.interval == 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        module = _module(runner)
        stats, module.grad_stats = module.grad_stats, None
        module.collect_grad_stats = False
        if stats is None:
            return
        # step = iteration count after this one, like the train lines of LoggerHook.
        runner.visualizer.add_scalars(
            {f"grad_stats/{k}": v for k, v in stats.items()}, step=runner.iter + 1
        )
        runner.logger.info(
            f"grad_stats iter {runner.iter + 1}: |G_local|^2 {stats['grad_sq_local']:.6g} "
            f"(B={stats['batch_local']:.0f})  |G_global|^2 {stats['grad_sq_global']:.6g} "
            f"(B={stats['batch_global']:.0f})"
        )
