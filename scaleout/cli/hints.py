"""What to type next, after a sweep stops short of its end (docs/sweep.md, "Resume, crashes and
faults"). Pure strings: the sweep command prints them, and tests read them without a sweep."""

from __future__ import annotations


def resume_hint(name: str, running: int = 0, *, cancelled: bool = False) -> str:
    """The lines `scaleout sweep` prints when Ctrl-C stopped it: how to resume, and what became
    of the trials that were running (`running`: how many; `cancelled`: --cancel-on-exit
    stopped them)."""
    resume = f"scaleout sweep --name {name} --resume"
    if running and cancelled:
        trials = (
            f"{_trials(running)} stopped (--cancel-on-exit); a resume retries "
            f"{'it' if running == 1 else 'them'} from the last checkpoint"
        )
    elif running:
        trials = (
            f"{_trials(running)} still running on {'its' if running == 1 else 'their'} own; "
            f"a resume re-attaches {'it' if running == 1 else 'them'} "
            f"(to stop {'it' if running == 1 else 'them'}: scaleout cancel {name})"
        )
    else:
        trials = "no trial was running"
    return (
        f"sweep {name} stopped: {trials}.\n"
        f"  resume with: {resume}\n"
        f"  where it stands: scaleout status {name}"
    )


def _trials(n: int) -> str:
    return "1 trial" if n == 1 else f"{n} trials"
