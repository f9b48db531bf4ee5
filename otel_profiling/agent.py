"""``ProfilingAgent``: ties triggers, profilers and processors together.

Triggers ask; the agent starts and stops profilers, wraps each capture in a
``Profile`` (resource, scope, attributes, timestamps) and hands it to the
processors. The agent is the only place where the lifecycle rules live: one
active profile per profiler, refused starts logged and counted, in-flight
profiles ended and exported at shutdown, bounded exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Tuple

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_profiling import _threads, process_context
from otel_profiling._exit import before_thread_pools_stop, mark_exiting, register_sigterm_flush
from otel_profiling.exporters.base import ProfileExporter
from otel_profiling.links import PROFILE_URL, profile_url
from otel_profiling.naming import DEFAULT_NAMER, ProfileNamer
from otel_profiling.processors.base import ProfileProcessor, shutdown_processor
from otel_profiling.processors.batch import BatchProfileProcessor
from otel_profiling.processors.spool import Spool
from otel_profiling.profile import Profile
from otel_profiling.profilers.base import Profiler, ProfilerBusyError
from otel_profiling.resource import default_resource, renewed_after_fork
from otel_profiling.triggers.base import Trigger
from otel_profiling.triggers.code import ProfileBlock
from otel_profiling.version import __version__

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

_logger = logging.getLogger(__name__)

DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 30_000
DEFAULT_EXIT_TIMEOUT_MILLIS = 10_000


class _Binding:
    """The ``TriggerTarget`` given to one trigger: its profilers, driven through the agent."""

    def __init__(self, agent: ProfilingAgent, trigger: Trigger, profilers: List[Profiler]) -> None:
        self._agent = agent
        self.trigger = trigger
        self.profilers = profilers

    @property
    def active(self) -> bool:
        return any(self._agent.is_active(p) for p in self.profilers)

    def start(self, reason: str = "") -> List[Profile]:
        started = [self._agent._start(p, self.trigger.name, reason) for p in self.profilers]
        return [p for p in started if p is not None]

    def stop(self, reason: str = "") -> List[Profile]:
        ended = [self._agent._stop(p, reason) for p in self.profilers]
        return [p for p in ended if p is not None]

    def toggle(self, reason: str = "") -> List[Profile]:
        """Stop if running, else start; the process context then says which the next does."""
        changed = self.stop(reason) if self.active else self.start(reason)
        self._agent._publish_context()
        return changed

    def start_profiler(
        self,
        profiler: Profiler,
        reason: str = "",
        attributes: Optional[Mapping[str, AttributeValue]] = None,
    ) -> Profile:
        """Start one of this trigger's profilers; raises ``ProfilerBusyError`` when refused."""
        return self._agent.start_profile(profiler, self.trigger.name, reason, attributes=attributes)

    def stop_profile(self, profile: Profile, reason: str = "") -> Profile:
        """End ``profile`` if it is still running (not a later one of the same profiler)."""
        return self._agent.end_profile(profile, reason)

    def key_for(self, profile: Profile) -> str:
        return self._agent.key_for(profile)


def _holder(profile: Profile) -> str:
    """Who holds a busy profiler, so a refused caller knows what to stop or wait for."""
    reason = profile.attributes.get("profiling.reason")
    return f"started by trigger {profile.trigger}" + (f" ({reason})" if reason else "")


class ProfilingAgent:
    """Runs profilers when triggers ask, and hands the profiles to processors.

    ``resource`` defaults to ``Resource.create()`` on ``host.name``, which reads
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``. At interpreter exit
    a started agent shuts down by itself, waiting at most
    ``exit_timeout_millis`` for the export of what is queued.
    """

    def __init__(
        self,
        resource: Optional[Resource] = None,
        *,
        exit_timeout_millis: int = DEFAULT_EXIT_TIMEOUT_MILLIS,
    ) -> None:
        self.resource = resource if resource is not None else default_resource()
        self.instrumentation_scope = InstrumentationScope("otel_profiling", __version__)
        self.exit_timeout_millis = exit_timeout_millis
        self.refused_starts = 0
        self._refusals_logged: weakref.WeakSet[Profiler] = weakref.WeakSet()
        self._bindings: List[_Binding] = []
        self._processors: List[ProfileProcessor] = []
        self._active: Dict[Profiler, Profile] = {}
        self._lock = threading.RLock()
        self._started = False
        self._shutdown = False  # shutdown() has begun
        self._closed = False  # no window may start: the triggers are uninstalled
        self._atexit_registered = False
        _agents.add(self)

    # -- setup -------------------------------------------------------------------
    def register(self, trigger: Trigger, *profilers: Profiler) -> ProfilingAgent:
        """Let ``trigger`` start and stop ``profilers`` (all of them, together)."""
        if not profilers:
            raise ValueError("register() needs at least one profiler, e.g. CpuProfiler().")
        for profiler in profilers:
            if not isinstance(profiler, Profiler):
                raise TypeError(f"{profiler!r} is not a Profiler (e.g. CpuProfiler()).")
        binding = _Binding(self, trigger, list(profilers))
        with self._lock:
            self._bindings.append(binding)
            if self._started:
                trigger.install(binding)
                self._publish_context()
        return self

    def add_profile_processor(self, processor: ProfileProcessor) -> ProfilingAgent:
        with self._lock:
            self._processors.append(processor)
        return self

    @property
    def processors(self) -> Tuple[ProfileProcessor, ...]:
        return tuple(self._processors)

    @property
    def triggers(self) -> Tuple[Trigger, ...]:
        """The registered triggers, in the order of registration."""
        return tuple(binding.trigger for binding in self._bindings)

    def start(self, exporter: Optional[ProfileExporter] = None) -> ProfilingAgent:
        """Install the triggers. ``exporter`` is added through a ``BatchProfileProcessor``."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("This ProfilingAgent was shut down; create a new one.")
            if exporter is not None:
                spool = Spool.for_exporter(exporter, self.resource) or False
                self._processors.append(BatchProfileProcessor(exporter, spool=spool))
            if self._started:
                return self
            if not self._processors:
                _logger.warning(
                    "ProfilingAgent started without a processor: profiles will not be exported. "
                    "Call add_profile_processor(...) or start(exporter=...)."
                )
            for binding in self._bindings:
                binding.trigger.install(binding)
            self._started = True
            self._publish_context()
            if not self._atexit_registered:
                atexit.register(self._at_exit)
                before_thread_pools_stop(self._at_exit)
                register_sigterm_flush(self._at_sigterm, self.exit_timeout_millis / 1000)
                self._atexit_registered = True
        return self

    # -- lifecycle of a profile ---------------------------------------------------------
    def is_active(self, profiler: Profiler) -> bool:
        return profiler in self._active

    @property
    def active_profiles(self) -> Tuple[Profile, ...]:
        with self._lock:
            return tuple(self._active.values())

    def key_for(self, profile: Profile) -> str:
        """The name ``profile`` is stored under: the first exporter's with a namer, else the
        default ``{kind}-{start_time}.{extension}`` (before any collision suffix)."""
        for processor in self.processors:
            namer = getattr(getattr(processor, "exporter", None), "namer", None)
            if isinstance(namer, ProfileNamer):
                return namer.key(profile)
        return DEFAULT_NAMER.key(profile)

    def profile(
        self,
        profiler: Profiler,
        *,
        name: Optional[str] = None,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
    ) -> ProfileBlock:
        """Profile a block (``with``/``async with``) or every call of a function (decorator).

        See ``otel_profiling.triggers.code.ProfileBlock``.
        """
        return ProfileBlock(self, profiler, name=name, attributes=attributes)

    def _start(self, profiler: Profiler, trigger: str, reason: str) -> Optional[Profile]:
        """Start ``profiler``; ``None`` when refused or failed (already logged)."""
        try:
            return self.start_profile(profiler, trigger, reason)
        except Exception:
            return None

    def _refuse(self, profiler: Profiler, trigger: str, why: str) -> ProfilerBusyError:
        """Count a refused start; warn the first time per profiler, then only at debug level."""
        self.refused_starts += 1
        level = logging.DEBUG if profiler in self._refusals_logged else logging.WARNING
        self._refusals_logged.add(profiler)
        _logger.log(level, "%s profile not started (trigger %s): %s.", profiler.kind, trigger, why)
        return ProfilerBusyError(why)

    def start_profile(
        self,
        profiler: Profiler,
        trigger: str,
        reason: str = "",
        *,
        name: Optional[str] = None,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
    ) -> Profile:
        """Start ``profiler``: the one place where the one-active-profile rule is enforced.

        Raises ``ProfilerBusyError`` when the start is refused (counted in
        ``refused_starts``), ``RuntimeError`` after shutdown, or what the
        profiler raised (logged).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the ProfilingAgent is shut down")
            active = self._active.get(profiler)
            if active is not None:
                raise self._refuse(
                    profiler, trigger, f"{profiler!r} is already profiling, {_holder(active)}"
                )
            merged: Dict[str, AttributeValue] = dict(attributes or {})
            merged.update(
                {"process.pid": os.getpid(), "profiling.trigger": trigger, **profiler.attributes()}
            )
            if reason:
                merged["profiling.reason"] = reason
            profile = Profile(
                profiler.kind,
                profiler.format,
                name=name,
                resource=self.resource,
                instrumentation_scope=self.instrumentation_scope,
                attributes=merged,
                trigger=trigger,
            )
            try:
                profiler.start()
            except ProfilerBusyError as exc:
                raise self._refuse(profiler, trigger, str(exc)) from None
            except Exception:
                _logger.exception("%r failed to start.", profiler)
                raise
            self._active[profiler] = profile
        url = profile_url(self._processors, profile)  # where it will be stored, for trace links
        if url:
            profile.set_attribute(PROFILE_URL, url)
        _logger.info("%s profile started (trigger %s).", profile.kind.value, trigger)
        for processor in self._processors:
            _call(processor.on_start, profile)
        return profile

    def end_profile(self, profile: Profile, reason: str = "") -> Profile:
        """End ``profile`` if it is still running; returns it (ended unless it never ran here)."""
        with self._lock:
            owner = next((p for p, active in self._active.items() if active is profile), None)
        if owner is not None:  # ``expected`` guards against a newer profile started meanwhile
            self._stop(owner, reason, expected=profile)
        return profile

    def _stop(
        self, profiler: Profiler, reason: str = "", expected: Optional[Profile] = None
    ) -> Optional[Profile]:
        with self._lock:
            if expected is not None and self._active.get(profiler) is not expected:
                return None
            profile = self._active.pop(profiler, None)
            if profile is None:
                return None
            if reason:
                profile.set_attribute("profiling.stop_reason", reason)
            try:
                data = profiler.stop()
            except Exception as exc:  # the profile records why it has no data
                _logger.exception("%r failed to produce a profile.", profiler)
                profile.end(error=exc)
            else:
                found = _call(profiler.end_attributes)  # e.g. profiling.idle, known only now
                if found:
                    profile.set_attributes(found)
                profile.end(data)
        _logger.info(
            "%s profile ended (%s, %d bytes).",
            profile.kind.value,
            profile.status.value,
            len(profile.data),
        )
        for processor in self._processors:
            _call(processor.on_end, profile)
        return profile

    # -- shutdown ---------------------------------------------------------------------
    def force_flush(self, timeout_millis: int = DEFAULT_SHUTDOWN_TIMEOUT_MILLIS) -> bool:
        """Export everything queued; ``False`` if not all processors finished in time."""
        deadline = time.monotonic() + timeout_millis / 1000
        ok = True
        for processor in self.processors:
            remaining = max(deadline - time.monotonic(), 0) * 1000
            ok = bool(_call(processor.force_flush, remaining)) and ok
        return ok

    def shutdown(self, timeout_millis: int = DEFAULT_SHUTDOWN_TIMEOUT_MILLIS) -> None:
        """Stop the triggers, end and export in-flight profiles, then stop the processors.

        Returns within about ``timeout_millis`` whatever the exporters do. A
        ``KeyboardInterrupt`` (or other ``BaseException``) from one processor is
        raised again once every processor has been shut down, so that each
        counts the profiles it holds.
        """
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            bindings = list(self._bindings)
        # A request a trigger took before shutdown (a signal delivered just before exit,
        # its window not yet started by the trigger's thread) is still honoured while the
        # triggers are uninstalled; its window ends below and is exported like the others.
        for binding in bindings:
            _call(binding.trigger.uninstall)
        with self._lock:
            self._closed = True
        for profiler in list(self._active):
            self._stop(profiler, "agent shutdown")
        process_context.drop(owner=self)
        interrupted: Optional[BaseException] = None
        for processor in self.processors:
            remaining = max(deadline - time.monotonic(), 0) * 1000
            try:
                _call(shutdown_processor, processor, remaining)
            except BaseException as exc:  # noqa: BLE001 - e.g. Ctrl-C: raised once all are shut down
                interrupted = interrupted or exc
        if self._atexit_registered:
            atexit.unregister(self._at_exit)
            self._atexit_registered = False
        if interrupted is not None:
            raise interrupted

    def _at_exit(self) -> None:
        mark_exiting()  # from here on, the export runs on this thread
        self.shutdown(self.exit_timeout_millis)

    def _at_sigterm(self) -> None:
        """SIGTERM at its default: the process ends without its exit hooks; flush first."""
        self.shutdown(self.exit_timeout_millis)

    def _after_fork(self) -> None:
        """In a forked child: fresh lock; profiles running in the parent are not ours.

        The child is a new instance of the service: its resource gets its own
        ``service.instance.id`` (as the SDK's providers renew it) and it
        publishes its own process context.
        """
        self._lock = threading.RLock()
        running = list(self._active)  # also those started by agent.profile(), bound to no trigger
        self._active = {}
        _threads.forget_all()
        profilers = {id(p): p for p in running}
        profilers.update((id(p), p) for b in self._bindings for p in b.profilers)
        for profiler in profilers.values():
            _call(profiler.after_fork)
        self.resource = renewed_after_fork(self.resource)
        for binding in self._bindings:
            _call(binding.trigger.after_fork)
        if self._started and not self._shutdown:
            self._publish_context()

    def _publish_context(self) -> None:
        """Publish the resource and the triggers' signal and URL (OTEP 4719)."""
        if not self._started or self._closed:
            return  # not yet, or dropped at shutdown: a late toggle must not publish again
        extra: Dict[str, AttributeValue] = {process_context.VERSION_ATTRIBUTE: __version__}
        for binding in list(self._bindings):
            for key, value in binding.trigger.context_attributes().items():
                extra.setdefault(key, value)
        process_context.publish(dict(self.resource.attributes), extra, owner=self)

    def __enter__(self) -> ProfilingAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


_agents: weakref.WeakSet[ProfilingAgent] = weakref.WeakSet()


def _agents_after_fork() -> None:
    """Renew every live agent in a forked child.

    Registered once, when this module is imported, so it runs after what the
    modules it imports renew (processors, exporters, the process context) and
    a new agent never adds a callback that the interpreter keeps for good.
    """
    for agent in list(_agents):
        agent._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_agents_after_fork)


def _call(func, *args):  # type: ignore[no-untyped-def]
    """Call a processor or trigger hook; a failing hook is logged, never propagated."""
    try:
        return func(*args)
    except Exception:
        _logger.exception("%s failed.", getattr(func, "__qualname__", func))
        return None
