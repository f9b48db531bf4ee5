"""Profiling from code: ``agent.profile(profiler, name=...)`` as a block or a decorator.

The block obeys the same rules as every trigger: if the profiler is already
running (another trigger, another thread), the start is refused and counted,
and the block runs unprofiled (``handle.profile`` is ``None``) rather than
failing the application.

Where the work happens: with ``with`` and on sync functions, the profiler is
stopped and its payload encoded on the calling thread at exit. With
``async with`` and on ``async def`` functions, stopping and encoding run on a
worker thread so the event loop is not blocked.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from typing import Any, Callable, Mapping, Optional, Protocol, Tuple, TypeVar

from opentelemetry.util.types import AttributeValue

from otel_profiling._threads import pass_through
from otel_profiling.profile import Profile
from otel_profiling.profilers.base import Profiler


class ProfileStarter(Protocol):
    """What a ``ProfileBlock`` needs of its agent (``ProfilingAgent`` is one)."""

    def start_profile(
        self,
        profiler: Profiler,
        trigger: str,
        reason: str = "",
        *,
        name: Optional[str] = None,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
    ) -> Profile: ...

    def end_profile(self, profile: Profile, reason: str = "") -> Profile: ...


TRIGGER_NAME = "code"
F = TypeVar("F", bound=Callable[..., Any])


class ProfileHandle:
    """One entry into a ``ProfileBlock``: the profile it started, if any."""

    def __init__(self, profile: Optional[Profile]) -> None:
        self.profile = profile

    @property
    def refused(self) -> bool:
        """``True`` when the profiler was busy (or failed to start): nothing was profiled."""
        return self.profile is None

    def __repr__(self) -> str:
        return f"ProfileHandle({self.profile!r})"


class ProfileBlock:
    """Context manager (sync and async) and decorator that profiles what it wraps.

    ``with agent.profile(CpuProfiler(), name="import") as handle: ...`` then
    ``handle.profile`` is the finished ``Profile``. As a decorator, each call
    is profiled and ``block.profile`` is the last finished one. The profile's
    ``name`` is ``name`` (default: the decorated function's qualified name),
    ``profiling.trigger`` is ``code`` and ``attributes`` are added to it.
    """

    def __init__(
        self,
        agent: ProfileStarter,
        profiler: Profiler,
        *,
        name: Optional[str] = None,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
    ) -> None:
        if not isinstance(profiler, Profiler):
            raise TypeError(f"{profiler!r} is not a Profiler (e.g. CpuProfiler()).")
        self._agent = agent
        self.profiler = profiler
        self.name = name
        self.attributes = dict(attributes or {})
        self.profile: Optional[Profile] = None
        # entries are per thread / per task, so one block can be entered concurrently
        self._entries: contextvars.ContextVar[Tuple[ProfileHandle, ...]] = contextvars.ContextVar(
            f"otel_profiling_block_{id(self)}", default=()
        )

    # -- the block --------------------------------------------------------------
    def _begin(self, name: Optional[str], function: Optional[str] = None) -> ProfileHandle:
        name = name or self.name
        try:
            profile: Optional[Profile] = self._agent.start_profile(
                self.profiler,
                TRIGGER_NAME,
                f"agent.profile({name})" if name else "agent.profile()",
                name=name,
                attributes=self.attributes,
            )
        except Exception:  # refused or failed: counted/logged by the agent; run unprofiled
            profile = None
        if profile is not None:  # semantic conventions: where the profiled block ran
            thread = threading.current_thread()
            profile.set_attribute("thread.id", thread.ident or 0)
            profile.set_attribute("thread.name", thread.name)
            if function:
                profile.set_attribute("code.function.name", function)
        handle = ProfileHandle(profile)
        self._entries.set(self._entries.get() + (handle,))
        return handle

    def _pop(self) -> Optional[ProfileHandle]:
        entries = self._entries.get()
        if not entries:
            return None
        self._entries.set(entries[:-1])
        return entries[-1]

    def _end(self, handle: Optional[ProfileHandle], failed: bool) -> None:
        if handle is None or handle.profile is None:
            return
        if failed:
            handle.profile.set_attribute("profiling.block.error", True)
        self._agent.end_profile(handle.profile, "block exited")
        self.profile = handle.profile

    async def _end_off_loop(self, handle: Optional[ProfileHandle], failed: bool) -> None:
        if handle is not None and handle.profile is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._end, handle, failed)

    def __enter__(self) -> ProfileHandle:
        return self._begin(None)

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._end(self._pop(), exc_type is not None)

    async def __aenter__(self) -> ProfileHandle:
        return self._begin(None)

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        await self._end_off_loop(self._pop(), exc_type is not None)

    # -- the decorator ----------------------------------------------------------
    def __call__(self, func: F) -> F:
        function = f"{func.__module__}.{func.__qualname__}"
        name = self.name or getattr(func, "__qualname__", repr(func))

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            @pass_through
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                self._begin(name, function)
                failed = True
                try:
                    result = await func(*args, **kwargs)
                    failed = False
                    return result
                finally:
                    await self._end_off_loop(self._pop(), failed)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        @pass_through
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._begin(name, function)
            failed = True
            try:
                result = func(*args, **kwargs)
                failed = False
                return result
            finally:
                self._end(self._pop(), failed)

        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"ProfileBlock({self.profiler!r}, name={self.name!r})"
