"""Span-scoped CPU profiles: yappi tags every call with the id of the span it ran in.

yappi asks a tag callback on each call and keeps separate statistics per
(thread, tag). With the current OpenTelemetry span's id as the tag, the CPU
call tree can be split into one subtree per span under each thread, so a
slow trace's span can be looked at on its own. The callback costs a context
lookup per call, hence opt-in (``CpuProfiler(by_span=True)``).
"""

from __future__ import annotations

import logging
from typing import Dict, Iterable, List, Tuple

from opentelemetry import trace

from otel_profiling.formats.calltree import Frame

_logger = logging.getLogger(__name__)

_SIGN = 1 << 63  # yappi tags are signed 64-bit: span ids are stored two's-complement
MAX_SPANS_PER_THREAD = 512


def current_span_tag() -> int:
    """yappi's tag callback: the current span's id (0 outside any span)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return 0
    span_id = context.span_id
    return span_id - (_SIGN << 1) if span_id >= _SIGN else span_id


def span_frame(tag: int) -> Frame:
    """The subtree root for a span: ``span <16 hex digits>``, matching ``format_span_id``."""
    return Frame(f"span {tag & ((_SIGN << 1) - 1):016x}")


def tags_by_context(groups: Iterable[Tuple[int, int]]) -> Dict[int, List[int]]:
    """Which span tags each yappi context (thread) recorded, 0 (no span) first.

    ``groups``: the ``(ctx_id, tag)`` pairs the stats were recorded under.
    """
    tags: Dict[int, List[int]] = {}
    for ctx_id, tag in sorted(set(groups)):
        tags.setdefault(ctx_id, []).append(tag)
    for ctx_id, found in tags.items():
        if len(found) > MAX_SPANS_PER_THREAD:
            _logger.warning(
                "CPU profile: %d spans on one thread; only the first %d get their own subtree.",
                len(found),
                MAX_SPANS_PER_THREAD,
            )
            tags[ctx_id] = found[:MAX_SPANS_PER_THREAD]
    return tags
