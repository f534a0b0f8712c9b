"""The wrapper a local job runs under: `python -m scaleout.executors.localrun JOB_DIR`.

It is the leader of its own session, so it outlives the controller and a Ctrl-C in the
controller's terminal. Files in JOB_DIR are the protocol (written to a temp name and renamed):
  job.json      argv, env, cwd, log path          (written by the executor)
  started.json  pid, start ticks, host, time      (written here, first thing)
  exit.json     returncode, signal, time          (written here, last thing)
`time` is Unix seconds: the job's own start and end (JobStatus.started_at / ended_at).
A job with started.json, no exit.json and no live process died without a word (kill -9,
reboot): the controller treats it as lost.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from scaleout.core.files import write_json_atomic


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (/proc/PID/stat field 22), which
    tells a live job from a recycled pid. None if the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def group_members(pgid: int, since_ticks: int | None = None) -> list[int]:
    """The live processes of process group `pgid` (the job's wrapper leads it: pgid is the
    wrapper's pid), started at or after `since_ticks`. A trainer whose wrapper died is still
    here: a job is over only when its whole group is (docs/sweep.md)."""
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for name in entries:
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z" or int(fields[2]) != pgid:
            continue
        if since_ticks is not None and int(fields[19]) < since_ticks:
            continue
        out.append(int(name))
    return sorted(out)


def main(job_dir: str) -> int:
    jd = Path(job_dir)
    job = json.loads((jd / "job.json").read_text())
    pid = os.getpid()
    write_json_atomic(
        jd / "started.json",
        {
            "pid": pid,
            "start_ticks": process_start_ticks(pid),
            "host": socket.gethostname(),
            "time": time.time(),
        },
    )
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # The whole process group got the signal too; wait for the trainer to stop
        # so that exit.json records how it ended.
        received.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    env = dict(os.environ)
    env.update(job.get("env", {}))
    with open(job["log"], "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(
                job["argv"],
                cwd=job["cwd"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            log.write(f"scaleout: could not start {job['argv'][0]}: {exc}\n".encode())
            write_json_atomic(
                jd / "exit.json",
                {"returncode": 127, "signal": None, "time": time.time(), "error": str(exc)},
            )
            return 127
        while True:
            try:
                rc = child.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
    sig = signal.Signals(received[0]).name if received else None
    write_json_atomic(jd / "exit.json", {"returncode": rc, "signal": sig, "time": time.time()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
