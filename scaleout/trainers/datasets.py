"""The training-set size a config implies: its annotation file counted, or a known split.

mmcv and mmengine configs name the training set's annotation file (BEVFormer:
`data.train.ann_file = 'data/nuscenes/nuscenes_infos_temporal_train.pkl'`) but not its
length, and the plan needs the length for iterations per epoch (docs/trainers.md). When the
file is there, its infos are counted; when it is not (planning on a laptop, far from the
data), the known size of the nuScenes split the file name states is used, and the source
says which of the two it was.

Counting never runs the pickle's code: every class the file names is replaced by an inert
stand-in, so the arrays inside are never built (no numpy, no memory for them) and nothing
the file names is imported.
"""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Samples (keyframes) per split of nuScenes v1.0 (the devkit's splits; 850 scenes in
# trainval: 700 train, 150 val; v1.0-mini: 8 train and 2 val scenes).
NUSCENES_SPLITS = {
    "train": 28130,
    "val": 6019,
    "trainval": 34149,
    "mini_train": 323,
    "mini_val": 81,
}
# nuscenes_infos_train.pkl, nuscenes_infos_temporal_train.pkl (BEVFormer),
# mmdet3d_nuscenes_30f_infos_train.pkl (PETR): the split is the last word.
_NUSCENES_INFOS = re.compile(r"nuscenes.*infos.*_(train|val|trainval)\.pkl$", re.IGNORECASE)
# Wrappers whose length is not the wrapped dataset's in a way a count can follow.
_RESAMPLING_WRAPPERS = ("CBGSDataset", "ClassBalancedDataset")


@dataclass(frozen=True)
class DatasetSize:
    samples: int
    source: str


def train_samples(
    dataset: Any, *, key: str, where: str, repo: Path | None, joins_data_root: bool = False
) -> DatasetSize | None:
    """The length of the training dataset config `dataset` (found at `key` in `where`).

    Follows `dataset=` wrappers (RepeatDataset's `times` multiplies) to the `ann_file`.
    mmengine datasets join a relative ann_file to their `data_root` (`joins_data_root`);
    mmcv 1.x datasets open it as written (their configs spell `data_root + '...pkl'`).
    A relative path is relative to the repo, where the trainer runs. None when the config
    names no annotation file, or resamples it (CBGS) so that its length is no count of it.
    """
    times = 1
    while isinstance(dataset, dict) and isinstance(dataset.get("dataset"), dict):
        kind = str(dataset.get("type", ""))
        if kind in _RESAMPLING_WRAPPERS:
            return None
        times *= int(dataset.get("times", 1)) if kind == "RepeatDataset" else 1
        dataset, key = dataset["dataset"], f"{key}.dataset"
    if not isinstance(dataset, dict):
        return None
    ann_key = f"{key}.ann_file"
    ann = dataset.get("ann_file")
    if ann is None and isinstance(dataset.get("data_source"), dict):  # EasyCV
        ann, ann_key = dataset["data_source"].get("ann_file"), f"{key}.data_source.ann_file"
    if not isinstance(ann, str) or not ann:
        return None
    root = dataset.get("data_root")
    path = Path(ann)
    if joins_data_root and isinstance(root, str) and root and not path.is_absolute():
        path = Path(root) / ann
    if not path.is_absolute() and repo is not None:
        path = repo / path
    interval = int(dataset.get("load_interval", 1) or 1)
    named = f"{where}: {ann_key} = {ann}"
    why_not_counted = f"not found under {repo}" if repo is not None else "no --repo to find it in"
    if path.is_file():
        try:
            n = count_infos(path)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
            why_not_counted = f"unreadable: {e}"
        else:
            samples = math.ceil(n / interval) * times
            return DatasetSize(samples, f"{named}: {samples:,} samples counted in {path}")
    split = nuscenes_split(ann)
    if split is None:
        return None
    samples = math.ceil(NUSCENES_SPLITS[split] / interval) * times
    return DatasetSize(
        samples,
        f"{named} ({why_not_counted}): the known size of the nuScenes "
        f"{split.replace('_', ' ')} split, {samples:,} samples",
    )


def nuscenes_split(ann_file: str) -> str | None:
    """The nuScenes split an annotation file's name states: train, val, mini_train, ..."""
    m = _NUSCENES_INFOS.search(Path(ann_file).name)
    if m is None:
        return None
    split = m.group(1).lower()
    if "mini" in ann_file.lower():  # data/nuscenes-mini/..., v1.0-mini
        return f"mini_{split}" if f"mini_{split}" in NUSCENES_SPLITS else None
    return split


def count_infos(path: Path) -> int:
    """len(infos) (mmdet3d 0.x, BEVFormer) or len(data_list) (mmdet3d 1.x) of an infos pkl."""
    with path.open("rb") as f:
        data = _InertUnpickler(f).load()
    if isinstance(data, dict):
        for key in ("infos", "data_list"):
            if isinstance(data.get(key), list):
                return len(data[key])
    if isinstance(data, list):
        return len(data)
    raise ValueError("neither an `infos` nor a `data_list` list at its top level")


class _Inert:
    """Stands for any object the pickle names; takes whatever it is given and keeps nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _Inert

    def persistent_load(self, pid: Any) -> Any:
        return _Inert()
