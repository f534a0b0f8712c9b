"""A small mmengine training run with scaleout's hook enabled the way a user enables it (its
config's custom_hooks); started by torchrun with two gloo processes from
tests/hooks/test_mmengine_hook.py. `python -m torch.distributed.run --nproc_per_node 2
mmengine_worker.py WORK_DIR`."""

from __future__ import annotations

import sys

import torch
from torch.utils.data import Dataset

# isort: off
import scaleout.minibev  # noqa: F401  # mmengine-lite without OpenCV: minibev's cv2 stub first
from mmengine.model import BaseModel
from mmengine.runner import Runner

# isort: on

SAMPLES, PER_GPU, EPOCHS, INTERVAL = 64, 2, 2, 2


class Toy(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode="tensor"):
        out = self.lin(inputs)
        if mode == "loss":
            return {"loss": torch.nn.functional.mse_loss(out, targets)}
        return out


class Data(Dataset):
    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, generator=g)
        return {"inputs": x, "targets": x.sum(0, keepdim=True) + torch.randn(1, generator=g)}


def main(work_dir: str) -> None:
    torch.set_num_threads(1)
    cfg = dict(
        custom_imports=dict(
            imports=["scaleout.hooks.mmengine_grad_stats"], allow_failed_imports=False
        ),
        custom_hooks=[dict(type="ScaleoutGradStatsHook", interval=INTERVAL)],
    )
    from mmengine.utils import import_modules_from_strings

    import_modules_from_strings(**cfg["custom_imports"])
    import torch.distributed as dist

    # mmengine's init_dist calls torch.cuda.set_device; on a CPU start gloo first (as minibev).
    dist.init_process_group("gloo")
    runner = Runner(
        model=Toy(),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=Data(),
            sampler=dict(type="DefaultSampler", shuffle=True),
            batch_size=PER_GPU,
            collate_fn=dict(type="default_collate"),
        ),
        train_cfg=dict(by_epoch=True, max_epochs=EPOCHS),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        custom_hooks=cfg["custom_hooks"],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=100)),
        launcher="pytorch",
        env_cfg=dict(dist_cfg=dict(backend="gloo")),
        # CPU (gloo) DDP takes no device_ids, which mmengine passes by default.
        cfg=dict(model_wrapper_cfg=dict(type="MMDistributedDataParallel", device_ids=None)),
        visualizer=dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")]),
    )
    runner.train()


if __name__ == "__main__":
    main(sys.argv[1])
