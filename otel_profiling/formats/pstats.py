"""Python's ``pstats`` file: what ``pstats.Stats``, snakeviz and gprof2dot read.

The file is ``marshal`` of ``{(file, line, name): (primitive calls, calls,
self time, total time, callers)}``, with ``callers`` mapping each caller to
``(calls, primitive calls, self time, total time)`` of its calls, the layout
``cProfile`` writes (the two call counts swap places between the levels).

Read back, the file holds calls between functions, not stacks: each function
becomes one node under the root carrying its self time, so totals and
per-function self times are exact and no call path is made up.
"""

from __future__ import annotations

import marshal
from typing import Any, Dict, Tuple

from otel_profiling.formats.callgraph import CallGraph, FunctionKey
from otel_profiling.formats.calltree import Frame, add_stack, new_root
from otel_profiling.formats.format import (
    CallGraphCapture,
    ProfileFormat,
    ProfileFormatError,
    ProfileTree,
)
from otel_profiling.profile import ProfileKind

_Key = Tuple[str, int, str]
_Entry = Tuple[int, int, float, float, Dict[_Key, Tuple[int, int, float, float]]]


def encode_pstats(graph: CallGraph) -> bytes:
    """``graph`` as a ``pstats`` file (times in seconds)."""
    stats: Dict[_Key, _Entry] = {}
    for key, function in graph.items():
        calls = (function.primitive_calls, function.calls)
        stats[_plain(key)] = (*calls, function.self_time, function.total_time, {})
    for caller, function in graph.items():
        for callee, call in function.callees.items():
            entry = stats.get(_plain(callee))
            if entry is not None:
                times = (call.self_time, call.total_time)
                entry[4][_plain(caller)] = (call.calls, call.primitive_calls, *times)
    return marshal.dumps(stats)


def _plain(key: FunctionKey) -> _Key:
    """A plain tuple: ``marshal`` writes only exact built-in types."""
    return (key.filename, key.lineno, key.name)


def decode_pstats(data: bytes) -> ProfileTree:
    """A ``pstats`` file (ours or ``cProfile``'s): self time per function, in seconds."""
    try:
        stats: Any = marshal.loads(data)
    except (ValueError, EOFError, TypeError) as exc:
        raise ProfileFormatError(f"not a pstats file: {exc}") from None
    if not isinstance(stats, dict):
        raise ProfileFormatError("not a pstats file: it holds no statistics dictionary")
    root = new_root()
    for key, entry in stats.items():
        try:
            filename, lineno, name = key
            primitive, calls, self_time = entry[0], entry[1], entry[2]
            frame = Frame(str(name), "" if filename == "~" else str(filename), int(lineno))
            add_stack(root, [frame], float(self_time), int(calls or primitive))
        except (TypeError, ValueError, IndexError):
            raise ProfileFormatError(
                f"not a pstats file: entry {key!r} is not (file, line, name) -> (calls...)"
            ) from None
    return ProfileTree(root, "seconds", "pstats")


class PstatsFormat(ProfileFormat):
    """Python's ``pstats`` file, written from yappi's exact call graph."""

    readable = True
    sniff_last = True  # recognising marshal data means loading it
    writes_from = "the exact call graph of engine='yappi'"

    def __init__(self) -> None:
        super().__init__("pstats", "pstats", "application/octet-stream", [ProfileKind.CPU_PROFILE])

    def accepts(self, capture: type) -> bool:
        return capture is CallGraphCapture

    def encode(self, capture: object) -> bytes:
        if isinstance(capture, CallGraphCapture):
            return encode_pstats(capture.graph)
        return super().encode(capture)

    def decode(self, data: bytes) -> ProfileTree:
        return decode_pstats(data)

    def sniff(self, data: bytes) -> bool:
        # marshal's dict type code, with or without its "referenced" flag (0x80)
        if data[:1] not in (b"{", b"\xfb"):
            return False
        try:
            stats = marshal.loads(data)
        except (ValueError, EOFError, TypeError):
            return False
        return isinstance(stats, dict) and all(
            isinstance(key, tuple) and len(key) == 3 for key in stats
        )


FORMAT = PstatsFormat()
