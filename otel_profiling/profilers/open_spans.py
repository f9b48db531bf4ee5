"""Which span is current on each thread and asyncio task, readable from the sampler's thread.

A thread cannot read another thread's context variables, so the sampler
cannot ask OpenTelemetry for the current span of the thread it samples.
``ProfilingSpanProcessor`` tells this registry instead: ``started`` when a
span starts, ``ended`` when it ends. The rule for what is "current":

    the span current on (thread, task) is the innermost span started on that
    thread - inside that asyncio task, if one was running - and not yet
    ended; a task without one of its own has the span of its thread started
    outside any task (e.g. around ``asyncio.run()``).

Spans started with ``start_as_current_span`` / ``use_span`` follow this rule
exactly. The registry holds at most ``max_spans`` open spans (the oldest are
forgotten first), takes one short lock on the request path, and is emptied in
a forked child, where the parent's threads and tasks do not exist.
"""

from __future__ import annotations

import os
import threading
from typing import Dict, List, Optional, Tuple

from otel_profiling.profilers.async_tasks import current_task_id

Key = Tuple[int, int]  # (thread ident, id() of the asyncio task or 0)
SpanIds = Tuple[int, int]  # (trace id, span id)

DEFAULT_MAX_SPANS = 4096


class OpenSpans:
    """The open spans per (thread, task), innermost last."""

    def __init__(self, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        self.max_spans = max_spans
        self._lock = threading.Lock()
        self._by_key: Dict[Key, List[SpanIds]] = {}
        self._where: Dict[int, Tuple[Key, SpanIds]] = {}  # in start order: oldest first

    def started(self, trace_id: int, span_id: int) -> None:
        """Called on the thread (and task) where the span starts."""
        key = (threading.get_ident(), current_task_id())
        ids = (trace_id, span_id)
        with self._lock:
            where = self._where
            if span_id in where:
                return
            where[span_id] = (key, ids)
            spans = self._by_key.get(key)
            if spans is None:
                self._by_key[key] = [ids]
            else:
                spans.append(ids)
            if len(where) > self.max_spans:  # spans that never end: forget the oldest
                self._remove(*where.pop(next(iter(where))))

    def ended(self, span_id: int) -> None:
        """Called wherever the span ends (possibly another thread)."""
        with self._lock:
            found = self._where.pop(span_id, None)
            if found is not None:
                self._remove(*found)

    def _remove(self, key: Key, ids: SpanIds) -> None:
        spans = self._by_key.get(key)
        if spans is None:
            return
        if spans[-1] == ids:  # the usual case: the innermost span ends first
            spans.pop()
        elif ids in spans:
            spans.remove(ids)
        if not spans:
            del self._by_key[key]

    def current(self, thread: int, task: int = 0) -> Optional[SpanIds]:
        """The span current on ``thread`` (in ``task``); lock-free, for the sampler."""
        by_key = self._by_key
        if not by_key:
            return None
        for key in ((thread, task), (thread, 0)) if task else ((thread, 0),):
            spans = by_key.get(key)
            if spans:
                try:
                    return spans[-1]
                except IndexError:  # emptied by another thread since the check
                    continue
        return None

    def __len__(self) -> int:
        return len(self._where)

    def clear(self) -> None:
        """Forget every span (after fork: the parent's threads and tasks are not ours)."""
        self._lock = threading.Lock()
        self._by_key = {}
        self._where = {}


OPEN_SPANS = OpenSpans()
"""The process-wide registry ``ProfilingSpanProcessor`` feeds and the sampler reads."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=OPEN_SPANS.clear)
