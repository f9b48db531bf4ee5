"""Stacks of running threads and suspended coroutines, as tuples of frame indexes.

A sample must cost microseconds, so each code object is resolved once per
capture: its ``id()`` maps to an index in the capture's frame table, or to a
marker for the library's own code. Ids are cheap to hash where code objects
are not (``code.__hash__`` hashes the name, constants and bytecode), and the
table keeps every code object it has seen alive, so an id cannot be reused by
another code object while the capture lasts. Frame objects are never kept:
they would keep the application's local variables alive.

Names are resolved at the end of the capture, off the sampling path:
``co_qualname`` from Python 3.11, a qualified name recovered from the source
on 3.10 (as heap profiles do).
"""

from __future__ import annotations

import sys
from types import CodeType, FrameType
from typing import Any, Dict, List, Optional, Tuple

from otel_profiling._threads import is_own_code, is_pass_through
from otel_profiling.formats.calltree import Frame

_CUT = -1  # the library's code: this frame and what it called are left out
_SKIP = -2  # a library frame that only calls the application's code: left out alone

Stack = Tuple[int, ...]


class CodeTable:
    """The code objects one capture has seen, each with its frame index (or a marker)."""

    def __init__(self) -> None:
        self._index: Dict[int, int] = {}
        self._alive: List[CodeType] = []  # every code whose id is a key above
        self.codes: List[CodeType] = []  # frame index -> code

    def _resolve(self, code: CodeType) -> int:
        self._alive.append(code)
        if is_own_code(code.co_filename):
            index = _SKIP if is_pass_through(code) else _CUT
        else:
            index = len(self.codes)
            self.codes.append(code)
        self._index[id(code)] = index
        return index

    def thread_stack(self, frame: Optional[FrameType]) -> Stack:
        """A thread's stack, outermost frame first, cut where the library's frames begin."""
        known = self._index
        ids: List[int] = []
        while frame is not None:
            code = frame.f_code
            index = known.get(id(code))
            if index is None:
                index = self._resolve(code)
            if index >= 0:
                ids.append(index)
            elif index == _CUT:
                ids.clear()  # the library's frame and everything it called
            frame = frame.f_back
        ids.reverse()
        return tuple(ids)

    def code_stack(self, codes: Tuple[CodeType, ...]) -> Stack:
        """As ``thread_stack``, from code objects taken innermost first (by a signal handler)."""
        known = self._index
        ids: List[int] = []
        for code in codes:
            index = known.get(id(code))
            if index is None:
                index = self._resolve(code)
            if index >= 0:
                ids.append(index)
            elif index == _CUT:
                ids.clear()
        ids.reverse()
        return tuple(ids)

    def coroutine_stack(self, coro: Any) -> Stack:
        """A suspended coroutine's await chain (``cr_await`` down), outermost first."""
        known = self._index
        ids: List[int] = []
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:  # a Future, or a coroutine that has finished
                break
            code = frame.f_code
            index = known.get(id(code))
            if index is None:
                index = self._resolve(code)
            if index == _CUT:
                break  # awaiting the library (e.g. ``async with agent.profile()``)
            if index >= 0:
                ids.append(index)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return tuple(ids)

    def frames(self) -> List[Frame]:
        """The frame table: one ``Frame(qualified name, file, first line)`` per index."""
        return [
            Frame(qualified_name(code), code.co_filename, code.co_firstlineno)
            for code in self.codes
        ]


if sys.version_info >= (3, 11):

    def qualified_name(code: CodeType) -> str:
        return str(code.co_qualname)

else:  # pragma: no cover - Python 3.10
    _SOURCE_NAMES: Optional[Any] = None

    def qualified_name(code: CodeType) -> str:
        """The name ``co_qualname`` would give, recovered from the source (cached per file)."""
        global _SOURCE_NAMES
        if code.co_name == "<module>":
            return "<module>"
        if _SOURCE_NAMES is None:
            from otel_profiling.profilers.source_names import FunctionNames

            _SOURCE_NAMES = FunctionNames()
        name = str(_SOURCE_NAMES.name(code.co_filename, code.co_firstlineno))
        # The source may have changed since the code was compiled: trust it only if it agrees.
        return name if name.rsplit(".", 1)[-1] == code.co_name else code.co_name
