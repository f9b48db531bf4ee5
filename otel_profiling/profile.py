"""The profile signal: one finished profile as a telemetry record.

A profile carries what a span carries (resource, instrumentation scope,
attributes, start and end timestamps, status) plus its payload. Like a span it
is mutable while running and read-only once ended, so processors and exporters
on other threads never see it change.
"""

from __future__ import annotations

import enum
import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Mapping, Optional, Protocol

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import AttributeValue

from otel_profiling.kinds import ProfileKind
from otel_profiling.naming import DEFAULT_NAMER, iso_millis

__all__ = ["Profile", "ProfileKind", "ProfileStatus", "iso_millis"]

_logger = logging.getLogger(__name__)


class ProfileFormat(Protocol):
    """What a profile needs of its format (``otel_profiling.formats`` provides them)."""

    @property
    def name(self) -> str: ...

    @property
    def extension(self) -> str: ...

    @property
    def content_type(self) -> str: ...


class ProfileStatus(str, enum.Enum):
    """Whether the profiler produced a payload. An ``ERROR`` profile has no data."""

    UNSET = "UNSET"
    OK = "OK"
    ERROR = "ERROR"

    def __str__(self) -> str:
        return self.value


class Profile:
    """One profile: metadata, timestamps and (once ended) the encoded payload."""

    def __init__(
        self,
        kind: ProfileKind,
        fmt: ProfileFormat,
        *,
        name: Optional[str] = None,
        resource: Optional[Resource] = None,
        instrumentation_scope: Optional[InstrumentationScope] = None,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
        trigger: Optional[str] = None,
        start_time: Optional[datetime] = None,
    ) -> None:
        self.kind = ProfileKind(kind)
        self.name = name or self.kind.value
        self.resource = resource if resource is not None else Resource.create()
        self.instrumentation_scope = instrumentation_scope
        self.trigger = trigger
        self.start_time = start_time or datetime.now(timezone.utc)
        self.end_time: Optional[datetime] = None
        self.status = ProfileStatus.UNSET
        self.error: Optional[str] = None
        self.data = b""
        self._format = fmt
        self._attributes = BoundedAttributes(maxlen=128, attributes=attributes, immutable=False)
        self._lock = threading.Lock()

    # -- format -----------------------------------------------------------
    @property
    def format(self) -> str:
        return self._format.name

    @property
    def extension(self) -> str:
        return self._format.extension

    @property
    def content_type(self) -> str:
        return self._format.content_type

    # -- state ------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.end_time is not None

    @property
    def duration(self) -> Optional[timedelta]:
        """Time between start and end; ``None`` while the profile runs."""
        if self.end_time is None:
            return None
        return self.end_time - self.start_time

    @property
    def attributes(self) -> Mapping[str, AttributeValue]:
        return self._attributes

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        with self._lock:
            if self.ended:
                _logger.warning("Profile %s has ended; attribute %r not set.", self.name, key)
                return
            self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def end(
        self,
        data: bytes = b"",
        *,
        error: Optional[BaseException | str] = None,
        end_time: Optional[datetime] = None,
    ) -> None:
        """Freeze the profile with its payload, or with the error that prevented one."""
        with self._lock:
            if self.ended:
                _logger.warning("Profile %s has already ended.", self.name)
                return
            self.end_time = end_time or datetime.now(timezone.utc)
            if error is not None:
                self.status = ProfileStatus.ERROR
                self.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
                self.data = b""
            else:
                self.status = ProfileStatus.OK
                self.data = bytes(data)
            self._attributes = BoundedAttributes(
                maxlen=128, attributes=self._attributes, immutable=True
            )

    @property
    def key(self) -> str:
        """The default object name: ``{kind}-{start_time}.{extension}``.

        An exporter with its own key template names the object with its own
        namer (``ProfilingAgent.key_for`` asks it).
        """
        return DEFAULT_NAMER.key(self)

    def __repr__(self) -> str:
        return (
            f"Profile(kind={self.kind.value}, name={self.name!r}, "
            f"start_time={iso_millis(self.start_time)}, status={self.status.value}, "
            f"format={self.format}, size={len(self.data)})"
        )
