"""probe.json: what `scaleout probe` measured, and what the `noise` lr rule reads from it.

The schema lives here (docs/evidence.md): `scaleout.evidence.probe` writes the file under
`SCHEMA`, the plan reads it with `read_probe`. Stdlib only: core stays pure, and a
small JSON file is all a plan reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = "scaleout.probe/1"


@dataclass(frozen=True)
class ProbeFacts:
    """What a plan needs of a probe: B_simple (samples) with its band, and what it covers."""

    path: str
    b_simple: float
    band: tuple[float, float] | None
    points: int
    first_iter: int
    last_iter: int
    global_batch: int | None


def probe_path(given: str, space_path: str | None) -> Path:
    """A probe path as a space file names it: relative to the space file's folder."""
    p = Path(given).expanduser()
    if p.is_absolute() or not space_path or space_path.startswith("<"):
        return p
    return Path(space_path).parent / p


def read_probe(path: str | Path) -> ProbeFacts:
    """The probe file's facts, or ValueError saying what is wrong with it."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"probe file {p}: no such file (scaleout probe --space FILE --out {p} writes it)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"probe file {p}: cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"probe file {p}: not JSON (line {exc.lineno}): {exc.msg}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"probe file {p}: schema {got!r}, expected {SCHEMA!r}")
    b = data.get("b_simple")
    if not _positive(b):
        raise ValueError(f"probe file {p}: b_simple must be a positive number, got {b!r}")
    band = data.get("band")
    band_t = None
    if isinstance(band, list) and len(band) == 2 and all(_positive(x) for x in band):
        band_t = (float(band[0]), float(band[1]))
    iters = data.get("iterations") or {}
    return ProbeFacts(
        path=str(p),
        b_simple=float(b),
        band=band_t,
        points=int(data.get("points") or 0),
        first_iter=int(iters.get("first") or 0),
        last_iter=int(iters.get("last") or 0),
        global_batch=data.get("global_batch"),
    )


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
