"""The trigger interface: something that asks the agent to start or stop profiling.

A trigger never profiles by itself. The agent gives it a ``TriggerTarget``
bound to the profilers registered with it; the trigger calls ``toggle()``,
``start()`` or ``stop()`` on it from a thread of its own (never from a
signal handler).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence

from otel_profiling.profile import Profile, ProfileKind

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from otel_profiling.profilers.base import Profiler


class TriggerTarget(Protocol):
    """What a trigger drives: the profilers registered with it, through the agent.

    ``start``/``stop``/``toggle`` act on all of them and return the profiles
    started or ended (a refused start is left out). ``start_profiler`` starts
    one and raises ``ProfilerBusyError`` when refused; ``stop_profile`` ends
    one profile only if it is still the running one, so a trigger never ends
    a profile another trigger started. ``key_for`` names a profile as the
    exporter stores it.
    """

    @property
    def profilers(self) -> Sequence[Profiler]: ...

    @property
    def active(self) -> bool: ...

    def start(self, reason: str = "") -> List[Profile]: ...

    def stop(self, reason: str = "") -> List[Profile]: ...

    def toggle(self, reason: str = "") -> List[Profile]: ...

    def start_profiler(
        self,
        profiler: Profiler,
        reason: str = "",
        attributes: Optional[Mapping[str, AttributeValue]] = None,
    ) -> Profile: ...

    def stop_profile(self, profile: Profile, reason: str = "") -> Profile: ...

    def key_for(self, profile: Profile) -> str:
        """The name ``profile`` is (or will be) stored under by the agent's exporter."""
        ...


PROFILER_FOR_KIND: Mapping[ProfileKind, str] = {
    ProfileKind.CPU_PROFILE: "CpuProfiler()",
    ProfileKind.HEAP_PROFILE: "HeapProfiler()",
    ProfileKind.HEAP_SNAPSHOT: "HeapSnapshotProfiler()",
}
"""The profiler a message suggests registering for each kind."""


def profilers_of(target: TriggerTarget, kinds: Optional[Iterable[ProfileKind]]) -> List[Profiler]:
    """The target's profilers whose kind is in ``kinds`` (all of them when ``kinds`` is None)."""
    if kinds is None:
        return list(target.profilers)
    wanted = set(kinds)
    return [p for p in target.profilers if p.kind in wanted]


class Trigger(abc.ABC):
    """Base class. ``name`` is recorded on every profile as ``profiling.trigger``."""

    name: str = "trigger"

    def __init__(self) -> None:
        self._target: Optional[TriggerTarget] = None

    @property
    def target(self) -> Optional[TriggerTarget]:
        return self._target

    def install(self, target: TriggerTarget) -> None:
        """Called by ``agent.start()``: begin listening."""
        self._target = target

    def after_fork(self) -> None:
        """In a forked child: restart any thread the trigger runs (threads do not survive fork)."""

    def uninstall(self) -> None:
        """Called by ``agent.shutdown()``: stop listening, release resources."""
        self._target = None

    def context_attributes(self) -> Dict[str, AttributeValue]:
        """What the process context publishes about this trigger (its signal, its URL)."""
        return {}
