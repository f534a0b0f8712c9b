"""The entrypoint of a trial's Ray Job: `python -m scaleout.executors.ray_entry JOB.json`.

Run by the Ray Jobs API on the cluster (so it outlives the controller). It reserves a
placement group with one bundle per node (STRICT_SPREAD across nodes; one bundle when the
trial fits a node), waits for it with a timeout, starts one actor per bundle, and has each
run the node's command with its node rank and rank 0's address as the rendezvous. Output
streams to the job log (and to the trial's log files in its work dir). The exit code is the
worst of the nodes': the first failure, or 1 for a node that was lost.

Each node's command runs under a guard process (`... ray_entry guard LOG -- ARGV`): a child
subreaper that, when the command ends or its actor dies (node lost, job stopped), stops every
process the command started. torchrun starts its workers in new sessions, so killing a
process group would leave them behind.

JOB.json: argv (with {node_rank}/{master_addr}/{master_port}), env, cwd, nnodes, bundle
(resources per node), logs (one path per node), placement_timeout_s, name.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
PR_SET_CHILD_SUBREAPER = 36
EXIT_NO_ROOM = 2
EXIT_LOST = 1


# -- on each node: the guard ------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _stop_tree(grace_s: float = 5.0) -> None:
    """SIGTERM every descendant, then SIGKILL what is left after the grace period."""
    me = os.getpid()
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 1.0)):
        pids = descendants(me)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + wait
        while descendants(me) and time.monotonic() < end:
            _reap()
            time.sleep(0.1)
    _reap()


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def guard(log_path: str, argv: list[str]) -> int:
    """Run argv as our child, its output to log_path and our stdout; stop its whole tree
    when it ends, when we get SIGTERM, or when our parent (the actor) dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    parent = os.getppid()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with open(log_path, "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        except OSError as exc:
            log.write(f"scaleout: could not start {argv[0]}: {exc}\n".encode())
            return 127
        assert child.stdout is not None
        out = child.stdout

        def pump() -> None:
            for line in iter(out.readline, b""):
                log.write(line)
                with contextlib.suppress(OSError):
                    sys.stdout.buffer.write(line)
                    sys.stdout.buffer.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        rc: int | None = None
        while rc is None:
            if stop.is_set() or os.getppid() != parent:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = child.wait(timeout=0.5)
        _stop_tree()
        reader.join(timeout=5)
        if rc is None:
            rc = child.returncode if child.returncode is not None else 128 + signal.SIGTERM
    return rc


# -- on the head: the driver --------------------------------------------------------------------
class NodeRunner:
    """One per bundle (a node of the trial). Threaded, so stop() runs while run() waits."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def address(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def free_port(self) -> int:
        with socket.socket() as s:
            s.bind(("", 0))
            return int(s.getsockname()[1])

    def run(self, job: dict[str, Any], rank: int, addr: str, port: int) -> int:
        values = {"{node_rank}": str(rank), "{master_addr}": addr, "{master_port}": str(port)}
        argv = []
        for arg in job["argv"]:
            for key, value in values.items():
                arg = arg.replace(key, value)
            argv.append(arg)
        env = {**os.environ, **job["env"], "NODE_RANK": str(rank)}
        env.update(MASTER_ADDR=addr, MASTER_PORT=str(port))
        cmd = [sys.executable, "-m", "scaleout.executors.ray_entry", "guard", job["logs"][rank]]
        self.proc = subprocess.Popen([*cmd, "--", *argv], cwd=job["cwd"], env=env)
        return self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()


def _say(msg: str) -> None:
    print(f"scaleout: {msg}", flush=True)


def _room(ray: Any, bundle: dict[str, float], nnodes: int) -> tuple[int, int]:
    """(nodes that could hold a bundle, alive nodes)."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    fit = [n for n in alive if all(n["Resources"].get(k, 0) >= v for k, v in bundle.items() if v)]
    return len(fit), len(alive)


def _remove(remove_placement_group: Any, pg: Any) -> None:
    try:
        remove_placement_group(pg)
    except Exception as exc:
        log.debug("remove_placement_group(%s): failed: %s", pg.id.hex(), exc)
        raise
    log.debug("remove_placement_group(%s): done", pg.id.hex())


def configure_logging(level: str | None) -> None:
    """Log to stdout (the job log) at `level`: the controller passes SCALEOUT_LOG_LEVEL=debug
    in the job's environment when it logs at debug itself."""
    if level:
        logging.basicConfig(
            stream=sys.stdout,
            level=level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def drive(job: dict[str, Any]) -> int:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray.init(log_to_driver=True)
    nnodes, bundle = int(job["nnodes"]), dict(job["bundle"])
    fit, alive = _room(ray, bundle, nnodes)
    log.debug("ray.nodes(): %d alive, %d can hold %s", alive, fit, bundle)
    if fit < nnodes:
        _say(
            f"the trial needs {nnodes} node(s) with {bundle} each; the cluster has {fit} such "
            f"node(s) of {alive} alive: it cannot run here"
        )
        return EXIT_NO_ROOM
    strategy = "STRICT_SPREAD" if nnodes > 1 else "PACK"
    pg = placement_group([bundle] * nnodes, strategy=strategy, name=job["name"])
    log.debug(
        "placement_group(%s x %d, strategy=%s, name=%r): %s",
        bundle,
        nnodes,
        strategy,
        job["name"],
        pg.id.hex(),
    )
    timeout = float(job.get("placement_timeout_s", 600))
    began = time.monotonic()
    ready = pg.wait(timeout_seconds=timeout)
    log.debug(
        "placement group %s wait(timeout_seconds=%s): %s in %.1fs",
        pg.id.hex(),
        timeout,
        "ready" if ready else "not ready",
        time.monotonic() - began,
    )
    if not ready:
        _say(f"no room for {nnodes} x {bundle} ({strategy}) within {timeout:.0f} s; giving up")
        _remove(remove_placement_group, pg)
        return EXIT_NO_ROOM
    runner = ray.remote(max_concurrency=2)(NodeRunner)
    actors = [
        runner.options(
            num_cpus=bundle.get("CPU", 0),
            num_gpus=bundle.get("GPU", 0),
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i),
            max_restarts=0,
        ).remote()
        for i in range(nnodes)
    ]
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        addrs = ray.get([a.address.remote() for a in actors])
        port = ray.get(actors[0].free_port.remote())
        _say(f"{nnodes} node(s) {addrs}, rendezvous {addrs[0]}:{port}")
        refs = [a.run.remote(job, rank, addrs[0], port) for rank, a in enumerate(actors)]
        rank_of = {r.hex(): i for i, r in enumerate(refs)}
        codes: dict[int, int] = {}
        pending = list(refs)
        while pending and not stopping.is_set():
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in done:
                rank = rank_of[ref.hex()]
                try:
                    codes[rank] = int(ray.get(ref))
                except Exception as exc:  # the actor died with its node
                    _say(f"node {rank} ({addrs[rank]}) was lost: {type(exc).__name__}")
                    codes[rank] = EXIT_LOST
                if codes[rank] != 0:
                    _say(f"node {rank} exited with {codes[rank]}; stopping the others")
                    stopping.set()
        if pending:
            for a in actors:
                with contextlib.suppress(Exception):
                    a.stop.remote()
            with contextlib.suppress(Exception):
                ray.wait(pending, num_returns=len(pending), timeout=15)
        failed = [codes[r] for r in sorted(codes) if codes[r] != 0]
        worst = failed[0] if failed else (128 + signal.SIGTERM if pending else 0)
        _say(f"exit codes by node {[codes.get(r) for r in range(nnodes)]}: exiting {worst}")
        return worst
    finally:
        for a in actors:
            with contextlib.suppress(Exception):
                ray.kill(a)
        with contextlib.suppress(Exception):
            _remove(remove_placement_group, pg)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "guard":
        log, sep, *cmd = argv[1:]
        assert sep == "--", "usage: ray_entry guard LOG -- ARGV"
        return guard(log, cmd)
    job = json.loads(Path(argv[0]).read_text())
    configure_logging(os.environ.get("SCALEOUT_LOG_LEVEL"))
    return drive(job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
