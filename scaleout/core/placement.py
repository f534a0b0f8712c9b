"""Placing a trial on what an executor offers: nodes x processes, or virtual GPUs.

Pure: `layout_for` sees only the executor's `Capacity`, never the executor, so the rule
is tested table-driven (tests/test_controller.py).
"""

from __future__ import annotations

from scaleout.core.errors import UsageError
from scaleout.core.job import Capacity, Layout


def layout_for(gpus: int, cap: Capacity, parallel: int, procs_per_trial: int = 1) -> Layout:
    """Place a trial of `gpus` data-parallel GPUs on the executor's nodes.

    Whole nodes for multi-node trials; virtual GPUs (same global batch, fewer processes)
    only where the executor allows it (the local executor).
    """
    gpn = cap.gpus_per_node
    if gpn and cap.gpus >= gpus and not (cap.virtual and cap.nodes == 1 and gpus > gpn):
        if gpus <= gpn:
            nnodes, per_node = 1, gpus
        elif gpus % gpn:
            raise UsageError(
                f"--gpus {gpus} does not fill whole nodes of {gpn} GPUs: use a multiple of {gpn}"
            )
        else:
            nnodes, per_node = gpus // gpn, gpn
        if cap.max_nodes_per_job and nnodes > cap.max_nodes_per_job:
            raise UsageError(
                f"a trial of {gpus} GPUs needs {nnodes} nodes of {gpn} GPUs, but "
                f"{cap.where or 'this cluster'} allows at most {cap.max_nodes_per_job} "
                f"node(s) per job (MaxNodes): its jobs would wait forever",
                hint="choose a partition that allows whole trials, or fewer --gpus",
            )
        procs = _divisor_at_most(per_node, cap.procs_per_node or per_node)
        return Layout(nnodes, procs, gpus, use_gpu=procs == per_node)
    if not cap.virtual:
        raise UsageError(
            f"a trial of {gpus} GPUs does not fit this cluster "
            f"({cap.nodes} nodes x {gpn} GPUs = {cap.gpus})"
        )
    per_trial = max(1, gpn // max(1, parallel)) if gpn else procs_per_trial
    return Layout(1, _divisor_at_most(gpus, per_trial), gpus, use_gpu=bool(gpn))


def _divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n not above limit: processes that split n GPUs evenly."""
    return max(d for d in range(1, min(limit, n) + 1) if n % d == 0)
