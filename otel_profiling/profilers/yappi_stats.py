"""yappi's function statistics read as plain tuples, in one pass.

``yappi.get_func_stats()`` wraps every entry in dict-backed objects and
resolves children through them: about 0.4 s for 10,000 functions, most of a
profile's stop-to-bytes time. Its C enumerator (``_yappi.enum_func_stats``,
the same call ``get_func_stats`` makes) hands over each entry as one tuple,
in a few milliseconds. Its shape has been stable across yappi releases; if a
future yappi changes it, the public API is read instead.
"""

from __future__ import annotations

import inspect
import os
import re
from types import CodeType
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

import yappi

from otel_profiling._threads import is_own_code, is_pass_through
from otel_profiling.formats.callgraph import CallGraph, FunctionKey, FunctionStats

try:
    import _yappi  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - yappi always ships its C module
    _yappi = None

ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR
_C_METHOD = re.compile(r"<method '([^']+)' of ")  # yappi's name for a C method


class ChildStat(NamedTuple):
    """Calls from one function to a callee, as yappi counts them."""

    callee_id: int  # the callee's ``FuncStat.function_id``
    ncall: int
    nactualcall: int  # calls not nested in another call of the callee
    ttot: float  # time in the callee (and below) when called from this function
    tsub: float  # the callee's own time when called from this function


class FuncStat(NamedTuple):
    """One function's statistics in one thread (``ctx_id``)."""

    name: str  # as yappi names it: ``Class.method`` after the class of ``self``
    module: str  # the file of a Python function, the module of a C function
    lineno: int
    ncall: int
    nactualcall: int
    builtin: bool
    ttot: float
    tsub: float
    function_id: int  # yappi's index of the function, which ``ChildStat.callee_id`` names
    children: List[ChildStat]
    ctx_id: int
    code: Optional[CodeType]  # a Python function's code object (None for C functions)
    short_name: str  # the name its callers' code uses: ``co_name``, or the C function's name

    @property
    def key(self) -> Tuple[str, int, str]:
        """(file, first line, code name): the same for a stack frame running this function."""
        return (self.module, self.lineno, self.short_name)

    @property
    def is_async(self) -> bool:
        """A coroutine or async generator (yappi times these across suspensions)."""
        return self.code is not None and bool(self.code.co_flags & ASYNC_FLAGS)

    @property
    def own(self) -> bool:
        """otel-profiling's own code: left out of profiles."""
        return not self.builtin and is_own_code(self.module)

    @property
    def pass_through(self) -> bool:
        """One of otel-profiling's wrappers of application code: skipped over in trees."""
        return self.code is not None and is_pass_through(self.code)


_RAW_FIELDS = 14  # name ... index, children, ctx_id, ctx_name, tag, fn_descriptor


def _is_yappi_own(module: str) -> bool:
    """yappi's own functions, left out as ``get_func_stats`` does."""
    return module == "_yappi" or os.path.basename(module) == "yappi.py"


def _short_name(name: str, descriptor: Any) -> str:
    code_name = getattr(descriptor, "co_name", None) or getattr(descriptor, "__name__", None)
    if isinstance(code_name, str):
        return code_name
    method = _C_METHOD.match(name)
    return method.group(1) if method else name.rsplit(".", 1)[-1]


def _from_raw(raw: Tuple[Any, ...]) -> FuncStat:
    name, descriptor = str(raw[0]), raw[13]
    return FuncStat(
        name,
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
        descriptor if isinstance(descriptor, CodeType) else None,
        _short_name(name, descriptor),
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
    # yappi keeps each function's code object aside, by full name (see YFuncStats._enumerator)
    descriptor = getattr(yappi, "_fn_descriptor_dict", {}).get(stat.full_name)
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
        descriptor if isinstance(descriptor, CodeType) else None,
        _short_name(str(stat.name), descriptor),
    )


def public_func_stats() -> List[FuncStat]:
    """Through ``yappi.get_func_stats()`` (slower, the documented interface).

    Read one thread at a time: unfiltered, yappi merges a function's entries
    across threads.
    """
    contexts: Set[int] = set()

    def record(stat: Any) -> bool:
        contexts.add(int(stat.ctx_id))
        return False

    yappi.get_func_stats(filter_callback=record)
    stats: List[FuncStat] = []
    for ctx_id in sorted(contexts):
        stats.extend(map(_public, yappi.get_func_stats(filter={"ctx_id": ctx_id})))
    return stats


def read_func_stats() -> List[FuncStat]:
    """Every function's stats, per thread, of the stopped yappi session."""
    if _yappi is not None and hasattr(_yappi, "enum_func_stats"):
        try:
            return _raw_func_stats()
        except (TypeError, ValueError, IndexError):
            pass  # a yappi whose entries changed shape: the public API still works
    return public_func_stats()


def by_context(stats: List[FuncStat]) -> Dict[int, List[FuncStat]]:
    """``stats`` grouped by thread (yappi's ``ctx_id``)."""
    groups: Dict[int, List[FuncStat]] = {}
    for stat in stats:
        group = groups.get(stat.ctx_id)
        if group is None:
            group = groups[stat.ctx_id] = []
        group.append(stat)
    return groups


def call_graph(stats: List[FuncStat]) -> CallGraph:
    """``stats`` merged across threads into one exact call graph of the application.

    otel-profiling's own functions are left out, and so are the calls they
    made: a callee's counts and times lose what its calls from the library
    added (yappi keeps them per caller), so what remains is the
    application's. Calls made through the library's decorator wrappers are
    the application's and stay.
    """
    graph: CallGraph = {}
    for group in by_context(stats).values():
        by_id = {stat.function_id: stat for stat in group}
        keys = {
            stat.function_id: FunctionKey(stat.module, stat.lineno, stat.name)
            for stat in group
            if not stat.own
        }
        for stat in group:
            key = keys.get(stat.function_id)
            if key is not None:
                function = graph.get(key)
                if function is None:
                    function = graph[key] = FunctionStats()
                function.add(stat.ncall, stat.nactualcall, stat.tsub, stat.ttot)
        for stat in group:
            caller = keys.get(stat.function_id)
            for child in stat.children:
                callee = keys.get(child.callee_id)
                if callee is None:  # the library's, or a callee yappi has no entry for
                    continue
                if caller is not None:
                    graph[caller].callee(callee).add(
                        child.ncall, child.nactualcall, child.tsub, child.ttot
                    )
                elif not by_id[stat.function_id].pass_through:  # the library's own call
                    graph[callee].add(-child.ncall, -child.nactualcall, -child.tsub, -child.ttot)
    gone = {key for key, function in graph.items() if function.calls <= 0}  # only the library's
    for key in gone:
        del graph[key]
    for function in graph.values():
        function.self_time = max(function.self_time, 0.0)  # rounding of the subtractions
        function.total_time = max(function.total_time, 0.0)
        for key in gone & function.callees.keys():
            del function.callees[key]
    return graph
