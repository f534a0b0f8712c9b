"""The two squared gradient norms of a data-parallel step, read inside DDP's all-reduce.

Plain torch, shared by the mmcv and mmengine hooks. A DDP communication hook sees each
gradient bucket twice: as this rank's gradient before the all-reduce and as the mean over the
ranks after it. Summed over the buckets that gives |G_small|^2 (batch = samples per GPU) and
|G_big|^2 (batch = the global batch) of McCandlish et al.'s two-batch estimator, both before
clipping, from work the step does anyway: one squared sum per bucket on the iterations that
are logged. The ranks' local norms are averaged (one scalar all-reduce per logged iteration).

The hook does what torch's default `allreduce_hook` does (divide by the world size, all-reduce,
hand the bucket back), so training is unchanged. A model that is not DDP, or that already has
a communication hook, is left alone and logs nothing (one warning).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist


def line(iteration: int, sq_small: float, b_small: float, sq_big: float, b_big: float) -> str:
    """The text-log line (scaleout.trainers.logs.parse_grad_lines reads it back)."""
    return (
        f"grad_stats iter {iteration}: |G_local|^2 {sq_small:.6g} (B={b_small:.0f})  "
        f"|G_global|^2 {sq_big:.6g} (B={b_big:.0f})"
    )


def scalars(sq_small: float, b_small: float, sq_big: float, b_big: float) -> dict[str, float]:
    """The scalars.json keys of the same statistics (as minibev logs them)."""
    return {
        "grad_stats/grad_sq_local": sq_small,
        "grad_stats/grad_sq_global": sq_big,
        "grad_stats/batch_local": b_small,
        "grad_stats/batch_global": b_big,
    }


class GradNormCollector:
    """Arm it before an iteration's backward, collect after the optimiser step.

    `attach(model)` registers the communication hook once (before the first backward);
    `arm(iteration)` marks every `interval`-th iteration; `collect(b_small)` returns
    (|G_small|^2 averaged over ranks, |G_big|^2, world size) for an armed iteration, else None.
    Every rank must call `collect` on the same iterations (it all-reduces one scalar).
    """

    def __init__(self, interval: int = 10) -> None:
        if interval < 1:
            raise ValueError(f"interval must be a positive number of iterations, got {interval}")
        self.interval = interval
        self.active = False
        self.armed = False
        self._local: list[torch.Tensor] = []
        self._global: list[torch.Tensor] = []

    def attach(self, model: torch.nn.Module, warn: Callable[[str], None]) -> bool:
        ddp = torch.nn.parallel.DistributedDataParallel
        if not isinstance(model, ddp) or not dist.is_initialized():
            warn(
                "ScaleoutGradStatsHook: the model is not wrapped in DistributedDataParallel "
                "(one process?): the two-batch estimator needs >= 2 data-parallel ranks; "
                "no gradient statistics are logged"
            )
            return False
        if dist.get_world_size() < 2:
            warn("ScaleoutGradStatsHook: world size 1: no gradient statistics are logged")
            return False

        def hook(state, bucket):  # unannotated: DDP checks annotations against real types
            return self._hook(state, bucket)

        try:
            model.register_comm_hook(None, hook)
        except (RuntimeError, ValueError) as exc:  # one is already registered (fp16 compression)
            warn(
                f"ScaleoutGradStatsHook: cannot register a communication hook ({exc}); "
                "no gradient statistics are logged"
            )
            return False
        self.active = True
        return True

    def arm(self, iteration: int) -> None:
        """`iteration`: the runner's count before this step (0-based)."""
        self.armed = self.active and iteration % self.interval == 0
        self._local.clear()
        self._global.clear()

    def _hook(self, state: object, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        buf = bucket.buffer()
        armed = self.armed
        if armed:
            self._local.append(buf.detach().float().pow(2).sum())
        buf.div_(dist.get_world_size())
        fut = dist.all_reduce(buf, async_op=True).get_future()

        def done(f: torch.futures.Future) -> torch.Tensor:
            out = f.value()[0]
            if armed:
                self._global.append(out.detach().float().pow(2).sum())
            return out

        return fut.then(done)

    def collect(self) -> tuple[float, float, int] | None:
        if not self.armed:
            return None
        self.armed = False
        if not self._local or len(self._local) != len(self._global):
            return None  # no backward on this iteration (or it was skipped)
        local = torch.stack(self._local).sum().reshape(1)
        world = dist.get_world_size()
        dist.all_reduce(local)
        return float(local) / world, float(torch.stack(self._global).sum()), world
