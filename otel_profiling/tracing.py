"""``ProfilingSpanProcessor``: links traces and profiles both ways.

While a profile runs, every local root span (a span without a parent in this
process) gets the profile's object URL as ``profiling.profile.url``, and the
profile records the trace and span ids of those spans in
``profiling.trace_ids`` / ``profiling.span_ids`` / ``profiling.thread_ids``
(parallel lists, bounded; ``profiling.links.dropped`` counts the rest). A
linked span also gets ``thread.id`` and ``thread.name`` (OpenTelemetry's
names): the CPU profile's subtree for that thread is ``name (thread id)``.
Spans already running when a profile starts are linked too. So a slow trace
leads to its profile, and a profile lists the traces it covers.

It also tells the CPU sampler which span is current on each thread and
asyncio task (every span, not only local roots: see
``profilers/open_spans.py`` for the rule), so each sample carries the trace
and span ids of where it was taken.

The request path only touches this processor's own lock and the open-span
registry's, briefly: never the agent's, which may be held while a profiler
encodes.
"""

from __future__ import annotations

import collections
import logging
import threading
import weakref
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import format_span_id, format_trace_id

from otel_profiling._fork import renew_after_fork
from otel_profiling.agent import ProfilingAgent
from otel_profiling.global_agent import get_profiling_agent
from otel_profiling.links import (
    LINKS_DROPPED,
    PROFILE_URL,
    PROFILE_URLS,
    SPAN_IDS,
    THREAD_ID,
    THREAD_IDS,
    THREAD_NAME,
    TRACE_IDS,
)
from otel_profiling.processors.base import ProfileProcessor
from otel_profiling.profile import Profile
from otel_profiling.profilers.open_spans import OPEN_SPANS

_logger = logging.getLogger(__name__)

DEFAULT_MAX_LINKS_PER_PROFILE = 100
DEFAULT_MAX_RUNNING_SPANS = 4096


class _Links:
    """The ids recorded on one profile so far."""

    __slots__ = ("trace_ids", "span_ids", "thread_ids", "dropped")

    def __init__(self) -> None:
        self.trace_ids: List[str] = []
        self.span_ids: List[str] = []
        self.thread_ids: List[int] = []
        self.dropped = 0


class _Running(NamedTuple):
    """A running local root span and the thread that started it."""

    span: Span
    thread_id: int
    thread_name: str


class _ProfileHook(ProfileProcessor):
    """The profile side: told by the agent when profiles start and end."""

    def __init__(self, owner: ProfilingSpanProcessor) -> None:
        self._owner = weakref.ref(owner)

    def on_start(self, profile: Profile) -> None:
        owner = self._owner()
        if owner is not None:
            owner._profile_started(profile)

    def on_end(self, profile: Profile) -> None:
        owner = self._owner()
        if owner is not None:
            owner._profile_ended(profile)


class ProfilingSpanProcessor(SpanProcessor):
    """Puts the running profile's URL on root spans and the spans' ids on the profile.

    ``agent`` defaults to the global one (``configure()`` /
    ``set_profiling_agent``), looked up when spans start, so the processor
    may be added to a tracer provider before profiling is configured.
    """

    def __init__(
        self,
        agent: Optional[ProfilingAgent] = None,
        *,
        max_links_per_profile: int = DEFAULT_MAX_LINKS_PER_PROFILE,
        max_running_spans: int = DEFAULT_MAX_RUNNING_SPANS,
    ) -> None:
        if max_links_per_profile < 1 or max_running_spans < 1:
            raise ValueError("max_links_per_profile and max_running_spans must be at least 1.")
        self._agent = agent
        self.max_links_per_profile = max_links_per_profile
        self.max_running_spans = max_running_spans
        self._lock = threading.Lock()
        self._hook = _ProfileHook(self)
        self._hooked: Optional[ProfilingAgent] = None
        self._profiles: Dict[Profile, _Links] = {}
        self._spans: collections.OrderedDict[int, _Running] = collections.OrderedDict()
        self._shutdown = False
        if agent is not None:
            self._hook_into(agent)
        renew_after_fork(self, ProfilingSpanProcessor._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock; the parent's spans and profiles are not ours."""
        self._lock = threading.Lock()
        self._spans = collections.OrderedDict()
        self._profiles = {}

    # -- agent ------------------------------------------------------------------------
    def _hook_into(self, agent: ProfilingAgent) -> None:
        """Register the profile side with ``agent`` once; adopt profiles already running."""
        with self._lock:
            if self._hooked is not None:
                return
            self._hooked = agent
        agent.add_profile_processor(self._hook)
        for profile in agent.active_profiles:
            self._profile_started(profile)

    def _ensure_hooked(self) -> bool:
        if self._hooked is not None:
            return True
        agent = get_profiling_agent()
        if agent is None:
            return False
        self._hook_into(agent)
        return True

    # -- span side ----------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Optional[Context] = None) -> None:
        if self._shutdown:
            return
        context = span.get_span_context()
        if context is not None and context.is_valid:  # for the CPU sampler's per-sample ids
            OPEN_SPANS.started(context.trace_id, context.span_id)
        if not _is_local_root(span) or not self._ensure_hooked():
            return
        running = _Running(span, threading.get_ident(), threading.current_thread().name)
        with self._lock:
            self._spans[context.span_id] = running
            if len(self._spans) > self.max_running_spans:
                self._spans.popitem(last=False)
            profiles = [p for p in self._profiles if not p.ended]
            for profile in profiles:
                self._record(profile, running)
        for profile in profiles:
            _link_span(running, profile)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        if context is None:
            return
        OPEN_SPANS.ended(context.span_id)
        if not self._spans or not _is_local_root(span):
            return
        with self._lock:
            self._spans.pop(context.span_id, None)

    # -- profile side -------------------------------------------------------------------
    def _profile_started(self, profile: Profile) -> None:
        if self._shutdown:
            return
        with self._lock:
            if profile in self._profiles:
                return
            self._profiles[profile] = _Links()
            spans = [r for r in self._spans.values() if r.span.end_time is None]
            for running in spans:
                self._record(profile, running)
        for running in spans:
            _link_span(running, profile)

    def _profile_ended(self, profile: Profile) -> None:
        with self._lock:
            self._profiles.pop(profile, None)

    def _record(self, profile: Profile, running: _Running) -> None:
        """Add ``span``'s ids to ``profile`` (caller holds the lock)."""
        links = self._profiles[profile]
        if profile.ended:
            return
        if len(links.trace_ids) >= self.max_links_per_profile:
            links.dropped += 1
            profile.set_attribute(LINKS_DROPPED, links.dropped)
            return
        context = running.span.get_span_context()
        links.trace_ids.append(format_trace_id(context.trace_id))
        links.span_ids.append(format_span_id(context.span_id))
        links.thread_ids.append(running.thread_id)
        profile.set_attributes(
            {
                TRACE_IDS: tuple(links.trace_ids),
                SPAN_IDS: tuple(links.span_ids),
                THREAD_IDS: tuple(links.thread_ids),
            }
        )

    # -- lifecycle ----------------------------------------------------------------------
    def shutdown(self) -> None:
        self._shutdown = True
        with self._lock:
            self._spans.clear()
            self._profiles.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    @property
    def running_profiles(self) -> Tuple[Profile, ...]:
        with self._lock:
            return tuple(self._profiles)


def _is_local_root(span: ReadableSpan) -> bool:
    parent = span.parent
    return parent is None or parent.is_remote


def _link_span(running: _Running, profile: Profile) -> None:
    """Set ``profiling.profile.url`` (first profile), ``.urls`` (when several), ``thread.*``."""
    span = running.span
    url = profile.attributes.get(PROFILE_URL)
    if not isinstance(url, str) or span.end_time is not None:
        return
    attributes = span.attributes or {}
    if THREAD_ID not in attributes:
        span.set_attributes({THREAD_ID: running.thread_id, THREAD_NAME: running.thread_name})
    current = attributes.get(PROFILE_URL)
    if current is None:
        span.set_attribute(PROFILE_URL, url)
        return
    if current == url:
        return
    listed = attributes.get(PROFILE_URLS)
    urls: Sequence[str] = (
        tuple(str(u) for u in listed) if isinstance(listed, (list, tuple)) else (str(current),)
    )
    if url not in urls:
        span.set_attribute(PROFILE_URLS, (*urls, url))
