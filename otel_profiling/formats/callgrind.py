"""Callgrind profile data: what KCachegrind, QCachegrind and gprof2dot read.

One block per function (``fl=`` file, ``fn=`` name, then ``<line> <self
cost>``), followed by one call record per callee (``cfl=``, ``cfn=``,
``calls=<count> <callee line>``, then ``<line> <inclusive cost>``). Files and
functions are numbered on first use and referred to by number afterwards
(the format's name compression). Costs are integer microseconds.
"""

from __future__ import annotations

from typing import Dict, List

from otel_profiling.formats.callgraph import CallGraph, FunctionKey

_CLEAN = str.maketrans({"\n": " ", "\r": " "})


def encode_callgrind(graph: CallGraph, event: str = "Time", description: str = "") -> bytes:
    """``graph`` in the callgrind format, one event measured in microseconds."""
    files: Dict[str, int] = {}
    functions: Dict[str, int] = {}
    lines: List[str] = [
        "# callgrind format",
        "version: 1",
        "creator: otel-profiling",
        "positions: line",
        f"event: {event} : {description or event} (microseconds)",
        f"events: {event}",
        "",
    ]
    for key, function in graph.items():
        lines.append(_compressed(files, "fl", key.filename or "???"))
        lines.append(_compressed(functions, "fn", _qualified(key)))
        lines.append(f"{key.lineno} {round(function.self_time * 1e6)}")
        for callee, call in function.callees.items():
            lines.append(_compressed(files, "cfl", callee.filename or "???"))
            lines.append(_compressed(functions, "cfn", _qualified(callee)))
            lines.append(f"calls={call.calls} {callee.lineno}")
            lines.append(f"{key.lineno} {round(call.total_time * 1e6)}")
        lines.append("")
    return "\n".join(lines).encode("utf-8")


def _compressed(numbers: Dict[str, int], prefix: str, name: str) -> str:
    """``prefix=(n) name`` the first time a name is used, ``prefix=(n)`` afterwards."""
    number = numbers.get(name)
    if number is None:
        number = numbers[name] = len(numbers) + 1
        return f"{prefix}=({number}) {name.translate(_CLEAN)}"
    return f"{prefix}=({number})"


def _qualified(key: FunctionKey) -> str:
    """Function names must be unique: two ``run`` in different files are two functions."""
    return f"{key.name} {key.filename}:{key.lineno}" if key.filename else key.name
