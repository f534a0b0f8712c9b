"""The training-set size from the config's annotation file: counted, or the known split.

BEVFormer's tools/create_data.py writes `dict(infos=[...], metadata=dict(version=...))` with
mmcv.dump (pickle protocol 2) to data/nuscenes/nuscenes_infos_temporal_{train,val}.pkl;
mmdet3d 1.x writes `dict(metainfo=..., data_list=[...])`. The pickles built here have those
shapes, numpy arrays inside as in the real infos.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from scaleout.trainers import datasets
from scaleout.trainers.mmcv import MMCVTrainer
from scaleout.trainers.mmengine import MMEngineTrainer

FIX = Path(__file__).resolve().parent.parent / "fixtures"
BEV = FIX / "bevformer"
BASE = "projects/configs/bevformer/bevformer_base.py"


def bevformer_infos(n: int) -> dict:
    info = {
        "lidar_path": "./data/nuscenes/samples/LIDAR_TOP/n015-...pcd.bin",
        "token": "ca9a282c9e77460f8360f564131a8af5",
        "prev": "",
        "next": "39586f9d59004284a7114a68825e8eec",
        "can_bus": np.zeros(18),
        "frame_idx": 0,
        "sweeps": [],
        "cams": {"CAM_FRONT": {"data_path": "x.jpg", "cam_intrinsic": np.eye(3)}},
        "scene_token": "cc8c0bf57f984915a77078b10eb33198",
        "lidar2ego_rotation": [0.7, -0.01, 0.01, -0.7],
        "timestamp": 1533201470448696,
        "gt_boxes": np.zeros((12, 7), dtype=np.float32),
        "gt_names": np.array(["car"] * 12),
        "valid_flag": np.ones(12, dtype=bool),
    }
    return {"infos": [dict(info, frame_idx=i) for i in range(n)],
            "metadata": {"version": "v1.0-trainval"}}  # fmt: skip


def repo_with_infos(tmp_path: Path, infos: dict | None) -> Path:
    repo = tmp_path / "BEVFormer"
    shutil.copytree(BEV, repo)
    if infos is not None:
        path = repo / "data" / "nuscenes" / "nuscenes_infos_temporal_train.pkl"
        path.parent.mkdir(parents=True)
        path.write_bytes(pickle.dumps(infos, protocol=2))
    return repo


def test_infos_are_counted_when_the_file_is_there(tmp_path):
    repo = repo_with_infos(tmp_path, bevformer_infos(37))
    ref = MMCVTrainer(BASE, repo=repo, reference_gpus=8).reference()
    assert ref["train_samples"] == 37
    assert ref["_sources"]["train_samples"] == (
        f"{BASE}: data.train.ann_file = data/nuscenes/nuscenes_infos_temporal_train.pkl: "
        f"37 samples counted in {repo / 'data/nuscenes/nuscenes_infos_temporal_train.pkl'}"
    )


def test_the_named_split_gives_the_known_size_when_the_file_is_not_there():
    ref = MMCVTrainer(BASE, repo=BEV, reference_gpus=8).reference()
    assert ref["train_samples"] == 28130
    source = ref["_sources"]["train_samples"]
    assert source.startswith(f"{BASE}: data.train.ann_file = data/nuscenes/")
    assert "not found under" in source
    assert source.endswith("the known size of the nuScenes train split, 28,130 samples")


def test_hfai_ffrecord_root_still_names_the_split():
    # HFAiLab's config spells ann_file = 'data_of_nuscenes_ffr' + 'nuscenes_infos_temporal_...'.
    ref = MMCVTrainer(BASE, repo=FIX / "hfai_bevformer").reference()
    assert ref["train_samples"] == 28130


def test_the_pickle_runs_no_code_and_builds_no_arrays(tmp_path):
    marker = tmp_path / "ran"
    evil = (
        b"\x80\x02}q\x00X\x05\x00\x00\x00infosq\x01]q\x02("
        b"cos\nsystem\nq\x03X" + len(f"touch {marker}").to_bytes(4, "little")
        + f"touch {marker}".encode() + b"\x85q\x04Rq\x05K\x01K\x02es."
    )  # fmt: skip
    path = tmp_path / "nuscenes_infos_train.pkl"
    path.write_bytes(evil)
    assert datasets.count_infos(path) == 3
    assert not marker.exists()
    # numpy arrays come back as inert stand-ins: counting needs no numpy.
    path.write_bytes(pickle.dumps(bevformer_infos(5), protocol=4))
    assert datasets.count_infos(path) == 5


@pytest.mark.parametrize(
    ("ann_file", "split"),
    [
        ("data/nuscenes/nuscenes_infos_temporal_train.pkl", "train"),
        ("data/nuscenes/nuscenes_infos_temporal_val.pkl", "val"),
        ("/data/Dataset/nuScenes/mmdet3d_nuscenes_30f_infos_train.pkl", "train"),  # PETR
        ("nuscenes_infos_train.pkl", "train"),  # mmdet3d 1.x, joined to data_root
        ("data/nuscenes-mini/nuscenes_infos_temporal_train.pkl", "mini_train"),
        ("data/v1.0-mini/nuscenes_infos_val.pkl", "mini_val"),
        ("data/kitti/kitti_infos_train.pkl", None),
        ("data/nuscenes/nuscenes_infos_test.pkl", None),  # no labels: not a training set
    ],
)
def test_nuscenes_split_from_the_file_name(ann_file, split):
    assert datasets.nuscenes_split(ann_file) == split


def test_load_interval_and_repeat_wrappers_and_resampling_wrappers():
    def size(dataset: dict) -> int | None:
        found = datasets.train_samples(dataset, key="data.train", where="c.py", repo=None)
        return None if found is None else found.samples

    ann = {"ann_file": "data/nuscenes/nuscenes_infos_train.pkl"}
    assert size({**ann, "load_interval": 2}) == 14065
    assert size({"type": "RepeatDataset", "times": 2, "dataset": ann}) == 56260
    assert size({"type": "CBGSDataset", "dataset": ann}) is None  # resampled: no count
    assert size({"type": "NuScenesDataset"}) is None


def test_mmengine_joins_data_root_and_counts_data_list(tmp_path):
    repo = tmp_path / "mmdet3d"
    shutil.copytree(FIX / "mmdet3d", repo)
    path = repo / "data" / "nuscenes" / "nuscenes_infos_train.pkl"
    path.parent.mkdir(parents=True)
    infos = {"metainfo": {"version": "v1.0-trainval"}, "data_list": [{"i": i} for i in range(11)]}
    path.write_bytes(pickle.dumps(infos))
    t = MMEngineTrainer("projects/DETR3D/configs/detr3d_r101_gridmask.py", repo=repo)
    ref = t.reference()
    assert ref["train_samples"] == 11
    assert (
        "train_dataloader.dataset.ann_file = nuscenes_infos_train.pkl"
        in (ref["_sources"]["train_samples"])
    )
