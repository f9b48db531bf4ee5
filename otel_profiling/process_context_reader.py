"""Reading another process's context (OTEP 4719's reading protocol), Linux only.

The ``OTEL_CTX`` mapping is found in ``/proc/<pid>/maps``; its header and
payload are read from ``/proc/<pid>/mem``, or, when the kernel does not let
this user read that process's memory (``kernel.yama.ptrace_scope``), from the
memfd the publisher keeps open (``/proc/<pid>/fd``). A read is consistent when
the header's publication time is the same, and not zero, before and after the
payload was read; otherwise it is retried.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from otel_profiling.formats.protowire import fields, signed64
from otel_profiling.process_context import (
    HEADER,
    HTTP_ATTRIBUTE,
    MAPPING_NAMES,
    SIGNAL_ACTIVE_ATTRIBUTE,
    SIGNAL_ATTRIBUTE,
    SIGNATURE,
    VERSION,
    VERSION_ATTRIBUTE,
)

MAX_PAYLOAD = 1 << 20
_ATTEMPTS = 20


class ProcessContextUnreadable(Exception):
    """The process publishes a context but this user may not read it."""


@dataclass(frozen=True)
class ProcessContext:
    """What a process published: its resource and extra attributes."""

    pid: int
    resource: Dict[str, Any]
    extra: Dict[str, Any] = field(default_factory=dict)
    published_at_ns: int = 0

    @property
    def agent_version(self) -> Optional[str]:
        """The otel-profiling version of the process's agent; ``None``: another SDK published it."""
        value = self.extra.get(VERSION_ATTRIBUTE)
        return str(value) if value is not None else None

    @property
    def signal(self) -> Optional[int]:
        """The signal the agent listens on (``None``: no signal trigger)."""
        value = self.extra.get(SIGNAL_ATTRIBUTE)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def signal_active(self) -> Optional[bool]:
        """Whether the next signal stops profiling (``None``: not published, an older agent)."""
        value = self.extra.get(SIGNAL_ACTIVE_ATTRIBUTE)
        return value if isinstance(value, bool) else None

    @property
    def http_url(self) -> Optional[str]:
        value = self.extra.get(HTTP_ATTRIBUTE)
        return str(value) if value is not None else None


def find_mapping(pid: int) -> Optional[Tuple[int, int]]:
    """``(start, end)`` of the process's ``OTEL_CTX`` mapping; ``None`` if it has none."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith(MAPPING_NAMES):
                    start, end = parts[0].split("-")
                    return int(start, 16), int(end, 16)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError as exc:
        raise ProcessContextUnreadable(f"cannot read /proc/{pid}/maps: {exc.strerror}") from None
    return None


def read_process_context(pid: int) -> Optional[ProcessContext]:
    """The context process ``pid`` published, or ``None`` when it publishes none (or exited).

    Raises ``ProcessContextUnreadable`` when it has one this user may not read.
    """
    mapping = find_mapping(pid)
    if mapping is None:
        return None
    try:
        with _memory(pid, *mapping) as read:
            for _ in range(_ATTEMPTS):
                context = _read_once(pid, read, mapping[0])
                if context is not None:
                    return context
                time.sleep(0.001)
    except (FileNotFoundError, ProcessLookupError):
        return None  # exited meanwhile
    except PermissionError as exc:
        raise ProcessContextUnreadable(f"cannot read process {pid}: {exc.strerror}") from None
    except OSError:
        return None  # an unmapped address: the context was dropped meanwhile
    return None


def _read_once(pid: int, read: Any, start: int) -> Optional[ProcessContext]:
    signature, version, size, published_at, address = HEADER.unpack(read(start, HEADER.size))
    if signature != SIGNATURE or version != VERSION or published_at == 0:
        return None  # not (yet) valid, or being updated
    if not 0 < size <= MAX_PAYLOAD:
        return None
    payload = read(address, size)
    if HEADER.unpack(read(start, HEADER.size))[3] != published_at:
        return None  # changed while being read
    resource, extra = decode(payload)
    return ProcessContext(pid, resource, extra, published_at)


@contextlib.contextmanager
def _memory(pid: int, start: int, end: int) -> Iterator[Any]:
    """A ``read(address, size)`` over the process's memory, or its memfd when that is refused."""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except PermissionError:
        fd = _memfd_of(pid)

        def read_file(address: int, size: int) -> bytes:
            if not (start <= address and address + size <= end):
                raise ProcessContextUnreadable("the payload is outside the OTEL_CTX memfd")
            return _exact(fd, size, address - start)

        try:
            yield read_file
        finally:
            os.close(fd)
        return
    try:
        yield lambda address, size: _exact(fd, size, address)
    finally:
        os.close(fd)


def _exact(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise OSError("short read")
    return data


def _memfd_of(pid: int) -> int:
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise ProcessContextUnreadable(
            f"may not read the memory of process {pid} ({exc.strerror}): run as its user "
            "with kernel.yama.ptrace_scope=0, or as root"
        ) from None
    for name in names:
        try:
            if os.readlink(f"{folder}/{name}").startswith(MAPPING_NAMES[0]):
                return os.open(f"{folder}/{name}", os.O_RDONLY)
        except OSError:
            continue
    raise ProcessContextUnreadable(
        f"may not read the memory of process {pid}: run as its user with "
        "kernel.yama.ptrace_scope=0, or as root"
    )


# -- the payload ------------------------------------------------------------------------------


def decode(payload: bytes) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``ProcessContext`` bytes → ``(resource attributes, extra attributes)``."""
    resource: Dict[str, Any] = {}
    extra: Dict[str, Any] = {}
    for number, wire, value in fields(payload):
        if wire != 2 or not isinstance(value, bytes):
            continue
        if number == 1:
            for inner, inner_wire, kv in fields(value):
                if inner == 1 and inner_wire == 2 and isinstance(kv, bytes):
                    _put(resource, kv)
        elif number == 2:
            _put(extra, value)
    return resource, extra


def _put(into: Dict[str, Any], key_value: bytes) -> None:
    key: Optional[str] = None
    value: Any = None
    for number, _, item in fields(key_value):
        if number == 1 and isinstance(item, bytes):
            key = item.decode("utf-8", "replace")
        elif number == 2 and isinstance(item, bytes):
            value = _any_value(item)
    if key is not None:
        into[key] = value


def _any_value(data: bytes) -> Any:
    for number, _, value in fields(data):
        if number == 1 and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        if number == 2 and isinstance(value, int):
            return bool(value)
        if number == 3 and isinstance(value, int):
            return signed64(value)
        if number == 4 and isinstance(value, int):
            return struct.unpack("<d", value.to_bytes(8, "little"))[0]
        if number == 5 and isinstance(value, bytes):
            items: List[Any] = [
                _any_value(v) for n, _, v in fields(value) if n == 1 and isinstance(v, bytes)
            ]
            return items
        if number == 7 and isinstance(value, bytes):
            return value
    return None
