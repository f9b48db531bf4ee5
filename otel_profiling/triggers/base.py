"""The trigger interface: something that asks the agent to start or stop profiling.

A trigger never profiles by itself. The agent gives it a ``TriggerTarget``
bound to the profilers registered with it; the trigger calls ``toggle()``,
``start()`` or ``stop()`` on it from a thread of its own (never from a
signal handler).
"""

from __future__ import annotations

import abc
from typing import List, Optional, Protocol

from otel_profiling.profile import Profile


class TriggerTarget(Protocol):
    """What a trigger drives: the profilers registered with it, through the agent."""

    @property
    def active(self) -> bool: ...

    def start(self, reason: str = "") -> List[Profile]: ...

    def stop(self, reason: str = "") -> List[Profile]: ...

    def toggle(self, reason: str = "") -> List[Profile]: ...


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
