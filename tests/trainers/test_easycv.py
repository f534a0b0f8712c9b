"""EasyCV trials load with EasyCV's own config loader, and its fp16 configs get `--fp16`.

EasyCV's tools/train.py reads the config with `mmcv_config_fromfile`, whose `_base_` rule
(`check_base_cfg_path`, alibaba/EasyCV easycv/utils/config_tools.py) is not mmcv's. The
model below restates that rule so the tests can follow a trial's config to the files
EasyCV would open; the fixtures mirror EasyCV's configs/detection3d/bevformer/ files.
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import pytest

from scaleout.core.job import Layout, TrialParams
from scaleout.trainers import configread
from scaleout.trainers.mmcv import MMCVTrainer, easycv_base_path

FIX = Path(__file__).resolve().parent.parent / "fixtures"
EASY = FIX / "easycv"
BASE_R101 = "configs/detection3d/bevformer/bevformer_base_r101_dcn_nuscenes.py"
TINY_FP16 = "configs/detection3d/bevformer/bevformer_tiny_r50_nuscenes_fp16.py"
TRIAL = TrialParams.of(16, 1, lr=5e-4, warmup_iters=250, min_lr_ratio=1e-3, eval_interval=2)


def easycv_base(entry: str, including: str) -> str:
    """The file EasyCV opens for the `_base_` entry `entry` of the config at `including`.

    Two rules: an entry containing "configs" is joined to the including path up to its
    first "configs" (or "benchmarks"; the whole path when it has neither), so an absolute
    entry survives; any other entry is relative to the including file's folder, its leading
    "." and ".." parts consumed one by one, and the rest appended as text.
    """
    if "configs" in entry:
        parts = including.split("configs")
        root = parts[0] if len(parts) > 1 else including.split("benchmarks")[0]
        return os.path.join(root, entry)
    folder = including.split("/")[:-1]
    rest = entry.split("/")
    while rest and rest[0] in (".", ".."):
        if rest.pop(0) == "..":
            folder.pop()
    return "/".join(folder + rest)


def easycv_opens(config: str) -> list[str]:
    """Every file EasyCV's loader opens for `config` (given absolute, as scaleout passes it),
    bases first; fails like EasyCV where a file is missing."""
    assert os.path.isabs(config), "EasyCV reads a relative path against its package folder"
    with open(config, encoding="utf-8") as f:  # FileNotFoundError, as in EasyCV
        tree = ast.parse(f.read())
    bases: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_base_":
            value = ast.literal_eval(node.value)
            bases = value if isinstance(value, list) else [value]
    opened = []
    for entry in bases:
        opened += easycv_opens(easycv_base(entry, config))
    return [*opened, config]


def render_into(work_dir: Path, trainer: MMCVTrainer, params: TrialParams = TRIAL) -> list[str]:
    spec = trainer.render(params, Layout(2, 8, 16), work_dir, resume=False, name="t001")
    work_dir.mkdir(parents=True, exist_ok=True)
    for rel, text in spec.files.items():
        (work_dir / rel).write_text(text)
    return list(spec.argv)


def config_arg(argv: list[str]) -> str:
    return argv[argv.index("tools/train.py") + 1]


@pytest.mark.parametrize("where", ["sweeps/bev16/trials/t001", "configs-sweeps/t001",
                                   "benchmarks/t001"])  # fmt: skip
def test_trial_config_loads_through_easycvs_base_rule(tmp_path, where):
    t = MMCVTrainer(BASE_R101, repo=EASY, flavor="easycv")
    argv = render_into(tmp_path / where, t)
    config = config_arg(argv)
    opened = easycv_opens(config)
    # The trial's file, then the original, then the original's repo-root-relative base.
    assert opened == [
        str((EASY / "configs/base.py").resolve()),
        str((EASY / BASE_R101).resolve()),
        config,
    ]


def test_an_original_outside_configs_is_named_relative_to_the_trial(tmp_path):
    # A user's own config in a folder without "configs" in its path: an absolute `_base_`
    # would be glued onto the trial's folder by EasyCV (the crash this fixes).
    own = tmp_path / "experiments" / "my_bevformer.py"
    own.parent.mkdir()
    shutil.copy(EASY / BASE_R101, own)
    own.write_text(own.read_text().replace("_base_ = ['configs/base.py']", ""))
    t = MMCVTrainer(own, repo=EASY, flavor="easycv")
    work = tmp_path / "sweeps" / "t001"
    argv = render_into(work, t)
    child = config_arg(argv)
    entry = easycv_base_path(own, Path(child))
    assert entry == "../../experiments/my_bevformer.py"
    assert easycv_opens(child) == [str(own.resolve()), child]
    assert not Path(easycv_base(str(own), child)).exists()  # what an absolute entry gives
    # mmcv's own loader (and scaleout's reader) resolve the same entry to the same file.
    cfg = configread.load_config(child, repo=EASY)
    assert cfg.optimizer.lr == 5e-4 and cfg.optimizer.type == "AdamW"
    assert cfg.eval_config.interval == 2 and cfg.eval_config.gpu_collect is False


def test_trial_values_merge_into_the_original_as_easycv_merges_them(tmp_path):
    t = MMCVTrainer(BASE_R101, repo=EASY, flavor="easycv")
    argv = render_into(tmp_path / "t1", t)
    text = Path(config_arg(argv)).read_text()
    assert "optimizer = dict(lr=0.0005)" in text
    assert "data = dict(imgs_per_gpu=1)" in text
    assert "eval_config = dict(interval=2)" in text  # EasyCV's EvalHook settings
    cfg = configread.load_config(config_arg(argv), repo=EASY)
    assert cfg.data.workers_per_gpu == 4 and cfg.optimizer.paramwise_options


def test_easycv_fp16_config_is_read_through_its_dot_base_and_gets_the_flag():
    t = MMCVTrainer(TINY_FP16, repo=EASY, flavor="easycv")
    assert t.fp16  # optimizer_config.loss_scale: EasyCV's AMP hook needs --fp16
    ref = t.reference()
    assert (ref["lr"], ref["samples_per_gpu"]) == (2.8e-4, 1)
    argv = t.render(TRIAL, Layout(2, 8, 16), Path("/w/t1"), resume=False, name="t1").argv
    assert argv[argv.index("tools/train.py") :] == (
        "tools/train.py", "/w/t1/trial_config.py", "--launcher", "pytorch", "--work_dir",
        "/w/t1", "--fp16",
    )  # fmt: skip
    plain = MMCVTrainer(BASE_R101, repo=EASY, flavor="easycv")
    assert not plain.fp16
    assert "--fp16" not in plain.render(TRIAL, Layout(2, 8, 16), Path("/w"), resume=False,
                                        name="t").argv  # fmt: skip
    forced = MMCVTrainer(BASE_R101, repo=EASY, flavor="easycv", fp16=True)
    assert "--fp16" in forced.render(TRIAL, Layout(2, 8, 16), Path("/w"), resume=False,
                                     name="t").argv  # fmt: skip
