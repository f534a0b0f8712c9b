"""Wrap a trial's command in a container image: the piece an executor picks per backend.

Pure functions over argv, so the executors share one tested spelling: docker for the
local executor, apptainer (or enroot) where there is no daemon, and pyxis's srun flags on
Slurm. The work dir and the trainer repo are mounted at the same paths, so the argv that
the trainer adapter rendered works unchanged inside the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

RUNTIMES = ("docker", "apptainer", "enroot")


def wrap(
    argv: Sequence[str],
    image: str,
    *,
    runtime: str,
    mounts: Sequence[str] = (),
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    gpus: bool = True,
) -> list[str]:
    """argv run inside `image` with `runtime`; env is passed explicitly, mounts as src=dst."""
    env = dict(env or {})
    if runtime == "docker":
        out = ["docker", "run", "--rm", "--network=host", "--ipc=host"]
        out += ["--gpus", "all"] if gpus else []
        for m in mounts:
            out += ["-v", f"{m}:{m}"]
        out += ["-w", cwd] if cwd else []
        for k, v in sorted(env.items()):
            out += ["-e", f"{k}={v}"]
        return [*out, image, *argv]
    if runtime == "apptainer":
        out = ["apptainer", "exec"] + (["--nv"] if gpus else [])
        for m in mounts:
            out += ["--bind", f"{m}:{m}"]
        out += ["--pwd", cwd] if cwd else []
        for k, v in sorted(env.items()):
            out += ["--env", f"{k}={v}"]
        return [*out, image, *argv]
    if runtime == "enroot":
        out = ["enroot", "start"]
        for m in mounts:
            out += ["--mount", f"{m}:{m}"]
        for k, v in sorted(env.items()):
            out += ["--env", f"{k}={v}"]
        inner = ["sh", "-c", 'cd "$0" && exec "$@"', cwd, *argv] if cwd else list(argv)
        return [*out, image, *inner]
    raise ValueError(f"container runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")


def pyxis_srun_flags(
    image: str, *, mounts: Sequence[str] = (), cwd: str | None = None
) -> list[str]:
    """srun flags for NVIDIA pyxis/enroot on Slurm (the command itself stays as rendered)."""
    flags = [f"--container-image={image}"]
    if mounts:
        flags.append("--container-mounts=" + ",".join(f"{m}:{m}" for m in mounts))
    if cwd:
        flags.append(f"--container-workdir={cwd}")
    return flags
