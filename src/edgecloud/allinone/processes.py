"""Whether a process still runs, as the launcher (supervisor, `up`/`down`, node hypervisors)
needs to know it: a process that exited but was never reaped counts as gone, because PID 1
on these machines does not reap orphans (docs/host-notes.md)."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1]
    except (OSError, IndexError):
        return False
    return not state.startswith("Z")
