"""Files written whole or not at all: the protocol between the controller and its jobs.

Stdlib only and cheap to import: the local job wrapper (`python -m
scaleout.executors.localrun`) imports it before it starts the trainer.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike[str], text: str | bytes) -> None:
    """Write `text` (str, or bytes as they are) to a temp name in the same folder, then
    rename it over `path`.

    A reader sees the old file or the new one, never a part: the rename is atomic within one
    filesystem, which is why the temp file sits next to the target. The temp name carries
    the pid, so two processes writing the same file do not write into each other's temp.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """`write_atomic` of `data` as JSON (keys sorted, so the same data gives the same file)."""
    write_atomic(path, json.dumps(data, sort_keys=True))
