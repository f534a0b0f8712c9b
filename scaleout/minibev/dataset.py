"""The mmengine side of the data: a dataset over a fixed synthetic split, its collate function,
and the batch sampler that makes one process do the work of several virtual GPUs.

Rendering costs a few milliseconds per sample, which would dominate a 10-second run, so a split
is rendered once and cached as an .npz keyed by everything that determines it (written to a
temporary name and renamed, so concurrent runs never read a half-written file).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.registry import DATA_SAMPLERS, DATASETS, FUNCTIONS
from torch.utils.data import Dataset, Sampler

from scaleout.minibev.geometry import make_rig
from scaleout.minibev.scenes import N_FIELDS, SceneConfig, make_sample

SPLITS = {"train": 0, "val": 1}
CACHE_VERSION = 2  # bump whenever scenes.py changes what a seed renders


def cache_dir() -> Path:
    return Path(os.environ.get("SCALEOUT_MINIBEV_CACHE", Path.home() / ".cache/scaleout/minibev"))


def build_split(
    seed: int, split: str, num_samples: int, image_size: Sequence[int], scene: SceneConfig
) -> dict[str, np.ndarray]:
    """All samples of a split as arrays; objects padded to scene.max_objects rows."""
    key = dict(v=CACHE_VERSION, seed=seed, split=split, n=num_samples, hw=list(image_size))
    key.update(asdict(scene))
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{split}-{num_samples}-{digest}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    rig = make_rig(*image_size)
    samples = [make_sample(seed, SPLITS[split], i, rig, scene) for i in range(num_samples)]
    objects = np.zeros((num_samples, scene.max_objects, N_FIELDS), dtype=np.float32)
    counts = np.zeros(num_samples, dtype=np.int64)
    for i, s in enumerate(samples):
        counts[i] = len(s["objects"])
        objects[i, : counts[i]] = s["objects"]
    arrays = {
        "imgs": np.stack([s["imgs"] for s in samples]),
        "objects": objects,
        "counts": counts,
        "prev2cur": np.stack([s["prev2cur"] for s in samples]).astype(np.float32),
        "lidar2img": rig.lidar2img.astype(np.float32),
    }
    _save_atomic(path, arrays)
    return arrays


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # the cache is an optimisation; a read-only home must not stop training


@DATASETS.register_module(name="MiniBEVDataset")
class MiniBEVDataset(Dataset):
    """A fixed split of synthetic scenes. `seed` fixes the split itself, not the training run."""

    def __init__(
        self,
        split: str,
        num_samples: int,
        image_size: Sequence[int] = (16, 32),
        seed: int = 0,
        scene: dict[str, Any] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        self.split = split
        self.scene = SceneConfig(**(scene or {}))
        self.arrays = build_split(seed, split, num_samples, image_size, self.scene)
        self.lidar2img = torch.from_numpy(self.arrays["lidar2img"])

    def __len__(self) -> int:
        return len(self.arrays["counts"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = int(self.arrays["counts"][index])
        return {
            "imgs": torch.from_numpy(self.arrays["imgs"][index]),
            "prev2cur": torch.from_numpy(self.arrays["prev2cur"][index]),
            "lidar2img": self.lidar2img,
            "gt": torch.from_numpy(self.arrays["objects"][index, :n]),
            "sample_idx": f"{self.split}-{index}",
        }


@FUNCTIONS.register_module(name="minibev_collate")
def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors; ground truth stays a list (object counts differ per sample)."""
    inputs = {k: torch.stack([b[k] for b in batch]) for k in ("imgs", "prev2cur", "lidar2img")}
    samples = [{"gt": b["gt"], "sample_idx": b["sample_idx"]} for b in batch]
    return {"inputs": inputs, "data_samples": samples}


@DATA_SAMPLERS.register_module(name="VirtualGPUBatchSampler")
class VirtualGPUBatchSampler(Sampler):
    """Batches of (virtual_gpus / world_size) x batch_size samples from this rank's indices.

    With mmengine's DefaultSampler each rank reads a disjoint stride of one seeded
    permutation, so the union over ranks of their i-th batches is the same set of samples
    whatever the world size: the global batch of step i does not depend on how many real
    processes share the virtual GPUs. Incomplete last batches are dropped, as a data-parallel
    job with drop_last would.
    """

    def __init__(self, sampler: Sampler, batch_size: int, virtual_gpus: int) -> None:
        world = get_world_size()
        if virtual_gpus % world:
            raise ValueError(f"virtual_gpus={virtual_gpus} does not divide over {world} processes")
        self.sampler = sampler
        self.samples_per_gpu = batch_size
        self.per_process = virtual_gpus // world * batch_size
        self.batch_size = self.per_process  # what mmengine reads as the loader's batch size

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for idx in self.sampler:
            batch.append(idx)
            if len(batch) == self.per_process:
                yield batch
                batch = []

    def __len__(self) -> int:
        return len(self.sampler) // self.per_process  # type: ignore[arg-type]
