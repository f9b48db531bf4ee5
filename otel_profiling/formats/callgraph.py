"""A function-level call graph: exact counts and times per function and per call edge.

``pstats`` and ``callgrind`` are written from it. Unlike the call tree, it
keeps what the profiler measured (calls from ``f`` to ``g``, whatever the path
to ``f``), so nothing is derived or approximated.
"""

from __future__ import annotations

from typing import Dict, NamedTuple


class FunctionKey(NamedTuple):
    """A function as ``pstats`` names it: ``(file, first line, name)``."""

    filename: str
    lineno: int
    name: str


class CallStats:
    """Calls and times: for a function overall, or for its calls to one callee.

    ``primitive_calls`` leaves out recursive calls (a call made while the same
    function is already running); times are in seconds.
    """

    __slots__ = ("calls", "primitive_calls", "self_time", "total_time")

    def __init__(self) -> None:
        self.calls = 0
        self.primitive_calls = 0
        self.self_time = 0.0
        self.total_time = 0.0

    def add(self, calls: int, primitive_calls: int, self_time: float, total_time: float) -> None:
        self.calls += calls
        self.primitive_calls += primitive_calls
        self.self_time += self_time
        self.total_time += total_time


class FunctionStats(CallStats):
    """A function's own totals and, per callee, the calls it made."""

    __slots__ = ("callees",)

    def __init__(self) -> None:
        super().__init__()
        self.callees: Dict[FunctionKey, CallStats] = {}

    def callee(self, key: FunctionKey) -> CallStats:
        found = self.callees.get(key)
        if found is None:
            found = self.callees[key] = CallStats()
        return found


CallGraph = Dict[FunctionKey, FunctionStats]
