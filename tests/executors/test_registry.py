"""The executor registry: one name -> module map behind --executor, make_executor and
check_executor."""

from __future__ import annotations

import sys
import types

import pytest

import scaleout.executors as registry
from scaleout.core.errors import UsageError
from scaleout.executors import EXECUTOR_NAMES, check_executor, make_executor


def test_names_are_the_cli_choices():
    from scaleout.cli import build_parser

    assert EXECUTOR_NAMES == ("local", "slurm", "ray")
    parser = build_parser()
    for name in EXECUTOR_NAMES:
        args = parser.parse_args(["sweep", "--gpus", "8", "--space", "s.yaml", "--executor", name])
        assert args.executor == name


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UsageError, match=r"unknown executor 'k8s'; known: local, slurm, ray"):
        make_executor("k8s", {}, None)


def test_stored_options_build_each_executor(monkeypatch):
    from scaleout.executors.local import LocalExecutor
    from scaleout.executors.ray import RayExecutor
    from scaleout.executors.slurm import SlurmExecutor

    local = make_executor("local", {"gpus": 2}, 3)
    assert isinstance(local, LocalExecutor) and (local.gpus, local.parallel) == (2, 3)
    slurm = make_executor("slurm", {"partition": "gpu", "extra": ["--qos=high"]}, None)
    assert isinstance(slurm, SlurmExecutor) and slurm.settings.extra == ("--qos=high",)
    ray = make_executor("ray", {"address": "head:8265", "procs_per_node": 1}, None)
    assert isinstance(ray, RayExecutor) and ray.address == "http://head:8265"


def test_an_executor_is_one_module_and_one_line(monkeypatch):
    from scaleout.core.job import Capacity

    class Fake:
        name = "fake"

        def __init__(self, nodes: int) -> None:
            self.nodes = nodes

        def capacity(self) -> Capacity:
            return Capacity(nodes=self.nodes, gpus_per_node=8, slots=self.nodes)

    module = types.ModuleType("fake_executor")
    module.from_options = lambda options, parallel: Fake(**options)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_executor", module)
    monkeypatch.setitem(registry.EXECUTORS, "fake", "fake_executor")
    assert make_executor("fake", {"nodes": 2}, None).nodes == 2
    check_executor("fake", {"nodes": 2}, 16, None)  # two nodes of 8 hold a trial of 16
    with pytest.raises(UsageError, match="does not fit this cluster"):
        check_executor("fake", {"nodes": 2}, 32, None)


def test_local_is_checked_like_the_others():
    check_executor("local", {"gpus": 0}, 160, None)  # virtual GPUs: any size fits one machine
