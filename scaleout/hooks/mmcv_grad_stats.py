"""`ScaleoutGradStatsHook` for mmcv 1.x runners (BEVFormer, PETR, EasyCV): every `interval`
iterations, the two squared gradient norms of the noise-scale estimate in the text log.

Enable it in the trainer's config (docs/evidence.md); nothing in the trainer is patched:

    custom_imports = dict(imports=['scaleout.hooks.mmcv_grad_stats'], allow_failed_imports=False)
    custom_hooks = [dict(type='ScaleoutGradStatsHook', interval=10)]

The line goes to the runner's text log (`{work_dir}/{timestamp}.log`), not to log.json, which
rounds floats to 5 decimals: `grad_stats iter N: |G_local|^2 X (B=b)  |G_global|^2 Y (B=B)`.
Imports torch and mmcv only.
"""

from __future__ import annotations

from mmcv.runner import HOOKS, Hook

from scaleout.hooks.grad_noise import GradNormCollector, line


@HOOKS.register_module(name="ScaleoutGradStatsHook")
class ScaleoutGradStatsHook(Hook):
    """`samples_per_gpu`: the samples one rank's gradient is averaged over per step (default:
    the train loader's batch size; give it where gradients accumulate over several batches)."""

    # After OptimizerHook (ABOVE_NORMAL), whose after_train_iter runs the backward.
    priority = "NORMAL"

    def __init__(self, interval: int = 10, samples_per_gpu: int | None = None) -> None:
        self.collector = GradNormCollector(interval)
        self.samples_per_gpu = samples_per_gpu

    def before_run(self, runner) -> None:
        self.collector.attach(runner.model, runner.logger.warning)

    def before_train_iter(self, runner) -> None:
        self.collector.arm(runner.iter)

    def after_train_iter(self, runner) -> None:
        got = self.collector.collect()
        if got is None:
            return
        sq_small, sq_big, world = got
        b_small = self.samples_per_gpu or runner.data_loader.batch_size
        runner.logger.info(line(runner.iter + 1, sq_small, b_small, sq_big, b_small * world))
