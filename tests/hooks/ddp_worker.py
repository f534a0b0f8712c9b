"""One rank of the DDP test (tests/hooks/test_grad_noise_hook.py), started by torchrun:
four SGD steps with the communication hook armed every second one; saves what it collected
and the weights to OUT.<rank>."""

from __future__ import annotations

import sys

import torch

WORLD = 2


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * step + rank)
    return torch.randn(4, 6, generator=g), torch.randn(4, 1, generator=g)


def main(out: str) -> None:
    import torch.distributed as dist

    from scaleout.hooks.grad_noise import GradNormCollector

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    # A tiny bucket cap: several buckets, whose norms are summed.
    ddp = torch.nn.parallel.DistributedDataParallel(model(), bucket_cap_mb=0.0001)
    collector = GradNormCollector(interval=2)
    assert collector.attach(ddp, print)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    results = []
    for step in range(4):
        collector.arm(step)
        x, y = batch(rank, step)
        opt.zero_grad()
        torch.nn.functional.mse_loss(ddp(x), y).backward()
        results.append(collector.collect())
        opt.step()
    torch.save({"results": results, "state": ddp.module.state_dict()}, f"{out}.{rank}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
