"""Live memory by allocation stack from a tracemalloc snapshot, the library's own left out.

A snapshot holds one trace per live block. tracemalloc's ``filter_traces``
matches every trace's frames against ``fnmatch`` patterns in Python, which
took seconds for 20 000 blocks. Here the traces are first grouped by stack
(every block allocated from the same stack shares one traceback tuple, so the
tuple's identity is the key and nothing is hashed per block), and the
decision "is this the library's allocation" is then taken once per distinct
stack. Sizes and counts stay exact: a stack is kept or left out whole.

Run it with tracing stopped where possible: while tracemalloc traces, every
allocation made here is traced too, which costs several times more.
"""

from __future__ import annotations

import tracemalloc
from typing import Dict, Iterable, List, Tuple

from otel_profiling._threads import in_pass_through, is_own_code

Frames = Tuple[Tuple[str, int], ...]  # (filename, lineno), innermost first
LiveStacks = Dict[Frames, Tuple[int, int]]  # bytes, blocks

_TRACEMALLOC_FILE = tracemalloc.__file__


def live_stacks(snapshot: tracemalloc.Snapshot) -> LiveStacks:
    """``{frames innermost first: (bytes, blocks)}`` of the application's live allocations.

    The library's frames in a kept stack (the ``agent.profile`` decorator's
    wrapper) are left out, as CPU profiles skip them: the decorated function
    shows under the code that called it.
    """
    stacks: LiveStacks = {}
    for frames, size, count in _grouped(snapshot):
        if is_own(frames):
            continue
        if any(is_own_code(filename) for filename, _ in frames):
            frames = tuple(frame for frame in frames if not is_own_code(frame[0]))
        old = stacks.get(frames)  # equal frames can come from two groups (different depths)
        stacks[frames] = (size, count) if old is None else (old[0] + size, old[1] + count)
    return stacks


def release(snapshot: tracemalloc.Snapshot, chunk: int = 10_000) -> None:
    """Free the snapshot's traces a slice at a time, letting other threads run in between.

    Dropping a snapshot frees every trace in one go with the GIL held (tens of
    milliseconds per 100 000 live blocks); slices keep each step short.
    """
    raw = getattr(snapshot.traces, "_traces", None)
    if isinstance(raw, list):
        while raw:
            del raw[-chunk:]


def is_own(frames: Frames) -> bool:
    """Whether the library (or tracemalloc itself) made this allocation.

    The innermost frame that belongs to the library decides: ordinary library
    code makes it the library's, whatever ran below it (the standard library
    or a dependency working for it); a wrapper that runs application code
    (``_threads.pass_through``, the ``agent.profile`` decorator) makes it the
    application's. A stack with no library frame is the application's.
    """
    for filename, lineno in frames:
        if filename == _TRACEMALLOC_FILE:
            return True
        if is_own_code(filename):
            return not in_pass_through(filename, lineno)
    return False


def _grouped(snapshot: tracemalloc.Snapshot) -> Iterable[Tuple[Frames, int, int]]:
    """``(frames, bytes, blocks)`` per traceback of the snapshot."""
    raw = getattr(snapshot.traces, "_traces", None)  # (domain, size, frames, total_nframe)
    if raw is None:  # not CPython's layout: the public, slower grouping
        return (
            (tuple((f.filename, f.lineno) for f in reversed(s.traceback)), s.size, s.count)
            for s in snapshot.statistics("traceback")
        )
    groups: Dict[int, List] = {}
    for _, size, frames, _ in raw:
        group = groups.get(id(frames))
        if group is None:
            groups[id(frames)] = [frames, size, 1]
        else:
            group[1] += size
            group[2] += 1
    return ((frames, size, count) for frames, size, count in groups.values())
