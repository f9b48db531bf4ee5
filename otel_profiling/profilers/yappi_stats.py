"""yappi's function statistics read as plain tuples, in one pass.

``yappi.get_func_stats()`` wraps every entry in dict-backed objects and
resolves children through them: about 0.4 s for 10,000 functions, most of a
profile's stop-to-bytes time. Its C enumerator (``_yappi.enum_func_stats``,
the same call ``get_func_stats`` makes) hands over each entry as one tuple,
in a few milliseconds. Its shape has been stable across yappi releases; if a
future yappi changes it, the public API is read instead.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, NamedTuple, Set, Tuple

import yappi

from otel_profiling.formats.callgraph import CallGraph, FunctionKey, FunctionStats

try:
    import _yappi  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - yappi always ships its C module
    _yappi = None


class ChildStat(NamedTuple):
    """Calls from one function to a callee, as yappi counts them."""

    callee_id: int  # the callee's ``FuncStat.function_id``
    ncall: int
    nactualcall: int  # calls not nested in another call of the callee
    ttot: float  # time in the callee (and below) when called from this function
    tsub: float


class FuncStat(NamedTuple):
    """One function's statistics in one thread (``ctx_id``) and tag."""

    name: str
    module: str
    lineno: int
    ncall: int
    nactualcall: int
    builtin: bool
    ttot: float
    tsub: float
    function_id: int  # yappi's index of the function, which ``ChildStat.callee_id`` names
    children: List[ChildStat]
    ctx_id: int
    tag: int


_RAW_FIELDS = 14  # name ... index, children, ctx_id, ctx_name, tag, fn_descriptor


def _is_yappi_own(module: str) -> bool:
    """yappi's own functions, left out as ``get_func_stats`` does."""
    return module == "_yappi" or os.path.basename(module) == "yappi.py"


def _from_raw(raw: Tuple[Any, ...]) -> FuncStat:
    return FuncStat(
        str(raw[0]),
        str(raw[1] or ""),
        int(raw[2] or 0),
        int(raw[3]),
        int(raw[4]),
        bool(raw[5]),
        float(raw[6]),
        float(raw[7]),
        int(raw[8]),
        [ChildStat(*child) for child in raw[9]],
        int(raw[10]),
        int(raw[12]),
    )


def _raw_func_stats() -> List[FuncStat]:
    """Through yappi's C enumerator: each entry arrives as a 14-field tuple."""
    raw: List[Tuple[Any, ...]] = []
    _yappi.enum_func_stats(raw.append, {})
    if raw and len(raw[0]) != _RAW_FIELDS:
        raise ValueError(f"unexpected yappi stats entry of {len(raw[0])} fields")
    return [_from_raw(entry) for entry in raw if not _is_yappi_own(str(entry[1]))]


def _public(stat: Any) -> FuncStat:
    children = [ChildStat(c.index, c.ncall, c.nactualcall, c.ttot, c.tsub) for c in stat.children]
    return FuncStat(
        str(stat.name),
        str(stat.module or ""),
        int(stat.lineno or 0),
        int(stat.ncall),
        int(stat.nactualcall),
        bool(stat.builtin),
        float(stat.ttot),
        float(stat.tsub),
        int(stat.index),
        children,
        int(stat.ctx_id),
        int(stat.tag),
    )


def public_func_stats() -> List[FuncStat]:
    """Through ``yappi.get_func_stats()`` (slower, the documented interface).

    Read one ``(ctx_id, tag)`` at a time: unfiltered, yappi merges a function's
    entries across threads.
    """
    groups: Set[Tuple[int, int]] = set()

    def record(stat: Any) -> bool:
        groups.add((int(stat.ctx_id), int(stat.tag)))
        return False

    yappi.get_func_stats(filter_callback=record)
    stats: List[FuncStat] = []
    for ctx_id, tag in sorted(groups):
        stats.extend(map(_public, yappi.get_func_stats(filter={"ctx_id": ctx_id, "tag": tag})))
    return stats


def read_func_stats() -> List[FuncStat]:
    """Every function's stats, per thread and tag, of the stopped yappi session."""
    if _yappi is not None and hasattr(_yappi, "enum_func_stats"):
        try:
            return _raw_func_stats()
        except (TypeError, ValueError, IndexError):
            pass  # a yappi whose entries changed shape: the public API still works
    return public_func_stats()


def by_context(stats: List[FuncStat]) -> Dict[Tuple[int, int], List[FuncStat]]:
    """``stats`` grouped by ``(ctx_id, tag)``: one group per thread (and span)."""
    groups: Dict[Tuple[int, int], List[FuncStat]] = {}
    for stat in stats:
        key = (stat.ctx_id, stat.tag)
        group = groups.get(key)
        if group is None:
            group = groups[key] = []
        group.append(stat)
    return groups


def call_graph(stats: List[FuncStat]) -> CallGraph:
    """``stats`` merged across threads and tags into one exact call graph."""
    graph: CallGraph = {}
    for group in by_context(stats).values():
        keys = {
            stat.function_id: FunctionKey(stat.module, stat.lineno, stat.name) for stat in group
        }
        for stat in group:
            key = keys[stat.function_id]
            function = graph.get(key)
            if function is None:
                function = graph[key] = FunctionStats()
            function.add(stat.ncall, stat.nactualcall, stat.tsub, stat.ttot)
            for child in stat.children:
                callee = keys.get(child.callee_id)
                if callee is not None:  # yappi may name a callee it has no entry for
                    function.callee(callee).add(
                        child.ncall, child.nactualcall, child.tsub, child.ttot
                    )
    return graph
