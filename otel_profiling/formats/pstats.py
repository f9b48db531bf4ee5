"""Python's ``pstats`` file: what ``pstats.Stats``, snakeviz and gprof2dot read.

The file is ``marshal`` of ``{(file, line, name): (primitive calls, calls,
self time, total time, callers)}``, with ``callers`` mapping each caller to
``(calls, primitive calls, self time, total time)`` of its calls, the layout
``cProfile`` writes (the two call counts swap places between the levels).
"""

from __future__ import annotations

import marshal
from typing import Dict, Tuple

from otel_profiling.formats.callgraph import CallGraph, FunctionKey

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
