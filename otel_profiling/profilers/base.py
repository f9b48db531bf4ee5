"""The profiler interface the agent drives.

A profiler captures between ``start()`` and ``stop()``; ``stop()`` returns the
encoded payload. Both run on a library thread (or the caller's, for
``with agent.profile(...)``), never in a signal handler.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Mapping, Optional

from opentelemetry.util.types import AttributeValue

from otel_profiling.formats import ProfileFormat, default_format, get_format
from otel_profiling.profile import ProfileKind

IDLE_CPU_SHARE = 0.01
"""A CPU window is idle (``profiling.idle``) when the application's threads used less CPU
time than this share of it."""
IDLE_ATTRIBUTE = "profiling.idle"


class ProfilerBusyError(RuntimeError):
    """The profiler (or the process-wide resource it needs) is already in use."""


class Profiler(abc.ABC):
    """Base class: a kind, an output format, and a start/stop capture."""

    kind: ClassVar[ProfileKind]

    def __init__(self, format: Optional[str] = None) -> None:  # noqa: A002 - public name
        self._format: ProfileFormat = (
            default_format(self.kind) if format is None else get_format(self.kind, format)
        )

    @property
    def format(self) -> ProfileFormat:
        return self._format

    @property
    @abc.abstractmethod
    def running(self) -> bool:
        """Whether a capture is in progress."""

    @abc.abstractmethod
    def start(self) -> None:
        """Begin capturing. Raises ``ProfilerBusyError`` if a capture is already running."""

    @abc.abstractmethod
    def stop(self) -> bytes:
        """End the capture and return the profile encoded in ``self.format``."""

    def after_fork(self) -> None:
        """In a forked child: drop a capture inherited from the parent."""

    def attributes(self) -> dict:
        """Attributes describing this capture (clock, depth, ...), added to the profile."""
        return {"profiling.format": self._format.name}

    def end_attributes(self) -> Mapping[str, AttributeValue]:
        """Attributes known only once ``stop()`` has returned (e.g. ``profiling.idle``).

        The agent adds them to the profile when it stops the profiler.
        """
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(format={self._format.name!r})"
