"""`ScaleoutGradStatsHook` for mmengine runners (mmdetection3d 1.x): every `interval`
iterations, the two squared gradient norms of the noise-scale estimate in the trainer's logs.

Enable it in the trainer's config (docs/evidence.md); nothing in the trainer is patched:

    custom_imports = dict(imports=['scaleout.hooks.mmengine_grad_stats'],
                          allow_failed_imports=False)
    custom_hooks = [dict(type='ScaleoutGradStatsHook', interval=10)]

It writes `grad_stats/*` scalars through the runner's visualizer (into
`{timestamp}/vis_data/scalars.json`, `step` = iteration, as minibev does) and a line to the text
log. Imports torch and mmengine only.
"""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from scaleout.hooks.grad_noise import GradNormCollector, line, scalars


@HOOKS.register_module(name="ScaleoutGradStatsHook")
class ScaleoutGradStatsHook(Hook):
    """`samples_per_gpu`: the samples one rank's gradient is averaged over per step (default:
    the train loader's batch size times the optim wrapper's accumulative_counts)."""

    priority = "NORMAL"

    def __init__(self, interval: int = 10, samples_per_gpu: int | None = None) -> None:
        self.collector = GradNormCollector(interval)
        self.samples_per_gpu = samples_per_gpu

    def before_train(self, runner) -> None:
        self.collector.attach(runner.model, runner.logger.warning)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.collector.arm(runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        got = self.collector.collect()
        if got is None:
            return
        sq_small, sq_big, world = got
        b_small = self.samples_per_gpu or _samples_per_step(runner)
        b_big = b_small * world
        runner.visualizer.add_scalars(
            scalars(sq_small, b_small, sq_big, b_big), step=runner.iter + 1
        )
        runner.logger.info(line(runner.iter + 1, sq_small, b_small, sq_big, b_big))


def _samples_per_step(runner) -> int:
    batch = int(runner.train_dataloader.batch_size)
    counts = getattr(runner.optim_wrapper, "_accumulative_counts", 1) or 1
    return batch * int(counts)
