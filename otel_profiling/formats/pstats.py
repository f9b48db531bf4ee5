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

_Entry = Tuple[int, int, float, float, Dict[FunctionKey, Tuple[int, int, float, float]]]


def encode_pstats(graph: CallGraph) -> bytes:
    """``graph`` as a ``pstats`` file (times in seconds)."""
    stats: Dict[Tuple[str, int, str], _Entry] = {}
    for key, function in graph.items():
        stats[tuple(key)] = (  # type: ignore[index]
            function.primitive_calls,
            function.calls,
            function.self_time,
            function.total_time,
            {},
        )
    for caller, function in graph.items():
        for callee, call in function.callees.items():
            entry = stats.get(tuple(callee))  # type: ignore[arg-type]
            if entry is not None:
                entry[4][tuple(caller)] = (  # type: ignore[index]
                    call.calls,
                    call.primitive_calls,
                    call.self_time,
                    call.total_time,
                )
    return marshal.dumps(stats)
