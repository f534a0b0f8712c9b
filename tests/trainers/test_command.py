"""YAML-profile trainers and the shipped Paddle3D PETRv2 profile."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scaleout.core.errors import UsageError
from scaleout.core.job import Layout, TrialParams
from scaleout.trainers.command import CommandTrainer, load_profile

FIX = Path(__file__).resolve().parent.parent / "fixtures"
PADDLE = FIX / "paddle3d"
PETRV2 = "configs/petr/petrv2_vovnet_gridmask_p4_800x320.yml"


def petrv2() -> CommandTrainer:
    return CommandTrainer("paddle3d_petrv2", repo=PADDLE, config=PETRV2)


def test_reference_read_from_the_paddle3d_config():
    ref = petrv2().reference()
    src = ref.pop("_sources")
    assert ref["lr"] == 2e-4 and ref["warmup_iters"] == 500 and ref["epochs"] == 24
    assert ref["min_lr_ratio"] == 1e-3
    assert ref["warmup_ratio"] == pytest.approx(1 / 3, rel=1e-6)
    assert (ref["gpus"], ref["train_samples"], ref["samples_per_gpu"]) == (8, 28130, 1)
    assert src["lr"].endswith(f"{PETRV2}: lr_scheduler.learning_rate.learning_rate")
    assert src["gpus"].endswith("paddle3d_petrv2.yaml: reference.gpus")


def test_petrv2_trial_argv_and_generated_config():
    params = TrialParams(
        {"lr": 1e-3, "warmup_iters": 600, "min_lr_ratio": 1e-4, "seed": 1},
        gpus=160,
        samples_per_gpu=1,
    )
    spec = petrv2().render(params, Layout(20, 8, 160), Path("/w/t7"), resume=True, name="t7")
    assert " ".join(spec.argv) == (
        "python -m paddle.distributed.launch --gpus 0,1,2,3,4,5,6,7 --nnodes 20 "
        "--rank {node_rank} --master {master_addr}:{master_port} --log_dir /w/t7/log "
        "tools/train.py --config /w/t7/trial.yml --batch_size 1 --save_dir /w/t7/output "
        "--num_workers 2 --log_interval 50 --save_interval 1 --keep_checkpoint_max 2 --do_eval "
        "--seed 1 --resume"
    )
    assert "--learning_rate" not in spec.argv  # it would flatten the warmup+cosine schedule
    trial = yaml.safe_load(spec.files["trial.yml"])
    assert trial["_base_"] == str((PADDLE / PETRV2).resolve())
    assert trial["lr_scheduler"] == {
        "learning_rate": {"learning_rate": 1e-3, "T_max": 176 * 24, "eta_min": 1e-7},
        "warmup_steps": 600,
        "start_lr": pytest.approx(1e-3 / 3, rel=1e-6),
        "end_lr": 1e-3,
    }
    assert spec.cwd == str(PADDLE.resolve())


def test_petrv2_metrics_from_the_worker_log():
    m = CommandTrainer("paddle3d_petrv2").read_metrics(FIX / "logs" / "paddle3d")
    assert {e: v["NDS"] for e, v in m.epochs.items()} == {1: 0.2215, 2: 0.3019}
    assert m.epochs[2]["mAP"] == 0.2104
    assert m.iters_done == 326 and m.train["loss"] == pytest.approx(13.312342)
    assert m.iter_time_s == pytest.approx(1.2034)


def test_checkpoint_glob(tmp_path):
    t = petrv2()
    assert not t.has_checkpoint(tmp_path)
    (tmp_path / "output" / "epoch_1").mkdir(parents=True)
    (tmp_path / "output" / "epoch_1" / "model.pdparams").write_bytes(b"")
    assert t.has_checkpoint(tmp_path)


def write_profile(tmp_path: Path, **overrides) -> Path:
    data = {
        "name": "toy",
        "argv": ["python", "train.py", "--lr", "{lr}", "--bs", "{samples_per_gpu}"],
        "metrics": {"files": ["train.log"], "format": "jsonl", "objective": "val_acc"},
    }
    data.update(overrides)
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_jsonl_profile(tmp_path):
    t = CommandTrainer(write_profile(tmp_path))
    spec = t.render(
        TrialParams.of(1, 32, lr=0.1, warmup_iters=0, min_lr_ratio=0.0),
        Layout(1, 1, 1),
        tmp_path,
        resume=False,
        name="t",
    )
    assert spec.argv == ("python", "train.py", "--lr", "0.1", "--bs", "32")
    (tmp_path / "train.log").write_text(
        '{"iter": 10, "loss": 2.0, "time": 0.5}\n{"epoch": 1, "val_acc": 0.7}\n'
        '{"iter": 20, "loss": 1.5, "time": 0.4}\n{"epoch": 2, "val_acc": 0.8}\n{"iter": 3'
    )
    m = t.read_metrics(tmp_path)
    assert m.latest("val_acc") == 0.8 and m.iters_done == 20


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"argv": ["train.py", "--lr", "{learn_rate}"]},
         r"toy.yaml: argv\[2\]: unknown placeholder \{learn_rate\}"),
        ({"files": {"a.yml": "x: {lrr}"}}, r"files.a.yml: unknown placeholder \{lrr\}"),
        ({"argv": ["train.py", "{lr"]}, r"argv\[1\]: bad template"),
        ({"argv": []}, r"argv: expected a non-empty list"),
        ({"bogus": 1}, r"bogus: unknown key"),
        ({"reference": {"lrate": 1}}, r"reference.lrate: unknown"),
        ({"metrics": {"files": ["x.log"], "format": "regex", "objective": "NDS",
                      "val": ["mAP: (?P<mAP>[\\d.]+)"]}},
         r"metrics.objective: 'NDS' is not a named group"),
        ({"metrics": {"files": ["x.log"], "format": "regex", "objective": "NDS",
                      "val": ["NDS: (?P<NDS>[\\d.]+"]}}, r"metrics.val\[0\]: bad regex"),
        ({"metrics": None}, r"metrics: required"),
    ],
)  # fmt: skip
def test_bad_profiles_name_file_and_key(tmp_path, overrides, match):
    with pytest.raises(UsageError, match=match):
        load_profile(write_profile(tmp_path, **overrides))


def test_missing_profile_repo_config_and_values(tmp_path):
    with pytest.raises(UsageError, match=r"nope: --profile: .*paddle3d_petrv2"):
        load_profile("nope")
    with pytest.raises(UsageError, match=r"--repo: .* does not exist"):
        CommandTrainer("paddle3d_petrv2", repo=tmp_path / "missing")
    with pytest.raises(UsageError, match=r"--config: .* does not exist"):
        CommandTrainer("paddle3d_petrv2", repo=PADDLE, config="configs/missing.yml")
    t = CommandTrainer("paddle3d_petrv2")  # no repo/config: {repo} and {config} unknown
    with pytest.raises(UsageError, match=r"paddle3d_petrv2.yaml: .*no value for \{(repo|config)\}"):
        t.render(
            TrialParams.of(8, 1, lr=1e-3, warmup_iters=600, min_lr_ratio=1e-4),
            Layout(1, 8, 8),
            tmp_path,
            resume=False,
            name="t",
        )
