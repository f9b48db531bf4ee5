"""Processes as Linux ``/proc`` shows them: a process tree, and which signals a process catches."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    name: str  # the command name (``/proc/<pid>/comm``)


def _read(pid: int) -> Optional[Process]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ")"
    head, _, rest = stat.rpartition(")")
    fields = rest.split()
    if len(fields) < 2:
        return None
    return Process(pid, int(fields[1]), head.partition("(")[2])


def tree(root: int) -> List[Process]:
    """``root`` and all its descendants, parents before children (empty if ``root`` is gone)."""
    first = _read(root)
    if first is None:
        return []
    children: Dict[int, List[Process]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            process = _read(int(entry))
            if process is not None:
                children.setdefault(process.ppid, []).append(process)
    found = [first]
    for process in found:  # grows while it is walked: breadth first
        found.extend(sorted(children.get(process.pid, []), key=lambda p: p.pid))
    return found


def catches(pid: int, signum: int) -> Optional[bool]:
    """Whether ``pid`` has a handler for ``signum``; ``None`` when it cannot be told."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return None


def has_proc() -> bool:
    return Path("/proc/self/stat").exists()
