"""The process context (OTEP 4719): this process's resource, readable by other processes.

A started agent publishes its resource (``service.name``,
``service.instance.id``, ...) in a small memory mapping named ``OTEL_CTX``, so
a host-wide profiler (the OpenTelemetry eBPF profiler) labels this process's
samples, and ``otel-profiling trigger`` knows, before it sends anything, that
the process runs an agent and which signal it listens on.

The mapping is a memfd named ``OTEL_CTX`` (``/memfd:OTEL_CTX`` in
``/proc/<pid>/maps``), or where memfds are refused an anonymous mapping named
with ``prctl(PR_SET_VMA_ANON_NAME)`` (``[anon:OTEL_CTX]``, Linux 5.17+). It
starts with a 32-byte header (signature ``OTEL_CTX``, version 2, payload size,
publication time in ns since the epoch, payload address) followed by the
payload: a ``ProcessContext`` protobuf (``resource = 1``, ``extra_attributes =
2``), encoded here by hand. The signature is written last; an update zeroes the
time first and writes a new one last, so a reader that sees the same non-zero
time before and after reading has a consistent copy. ``MADV_DONTFORK`` keeps
the mapping out of forked children, which publish their own. The memfd stays
open (shared mapping) so a reader that may not read this process's memory
(``kernel.yama.ptrace_scope``) can read the file instead.

Linux only, 64-bit only; elsewhere ``publish`` returns ``False``. Nothing here
raises into the application: a failure is logged at debug level.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import platform
import struct
import sys
import threading
import time
from typing import Any, Mapping, Optional, Sequence

_logger = logging.getLogger(__name__)

NAME = "OTEL_CTX"
SIGNATURE = NAME.encode()
VERSION = 2
HEADER = struct.Struct("=8sIIQQ")  # signature, version, payload_size, published_at_ns, payload
MAPPING_NAMES = ("/memfd:OTEL_CTX", "[anon:OTEL_CTX]", "[anon_shmem:OTEL_CTX]")

# Extra attributes this library publishes beside the resource.
VERSION_ATTRIBUTE = "otel_profiling.version"
"""The library's version: the process runs an otel-profiling agent."""
SIGNAL_ATTRIBUTE = "otel_profiling.trigger.signal"
"""Number of the signal the agent's ``SignalTrigger`` listens on."""
SIGNAL_ACTIVE_ATTRIBUTE = "otel_profiling.trigger.signal.active"
"""Whether the signal trigger's profilers ran after its last toggle: the next signal stops them."""
HTTP_ATTRIBUTE = "otel_profiling.trigger.http"
"""URL of the agent's ``HttpTrigger`` (its bound port)."""

_PR_SET_VMA = 0x53564D41
_PR_SET_VMA_ANON_NAME = 0
_MFD_NOEXEC_SEAL = 0x0008  # Linux 6.3+; older kernels refuse the flag, then it is left out
_SYS_MEMBARRIER_ARM64 = 283
_MEMBARRIER_CMD_GLOBAL = 1


# -- the payload ------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 as protobuf stores it: two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    """``AnyValue`` of an OpenTelemetry attribute value."""
    if isinstance(value, str):
        return _field(1, value.encode("utf-8", "replace"))
    if isinstance(value, bool):
        return _varint(2 << 3) + _varint(int(value))
    if isinstance(value, int):
        return _varint(3 << 3) + _varint(value)
    if isinstance(value, float):
        return _varint(4 << 3 | 1) + struct.pack("<d", value)
    if isinstance(value, (bytes, bytearray)):
        return _field(7, bytes(value))
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))
    return _field(1, str(value).encode("utf-8", "replace"))


def _key_values(number: int, attributes: Mapping[str, Any]) -> bytes:
    return b"".join(
        _field(number, _field(1, key.encode("utf-8", "replace")) + _field(2, _any_value(value)))
        for key, value in attributes.items()
    )


def encode(resource: Mapping[str, Any], extra: Mapping[str, Any]) -> bytes:
    """The ``ProcessContext`` message: ``resource`` attributes, then ``extra`` attributes."""
    return _field(1, _key_values(1, resource)) + _key_values(2, extra)


# -- the mapping ------------------------------------------------------------------------------


class _Libc:
    """The few libc calls Python's ``mmap`` module does not offer on a raw address."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.mmap = libc.mmap
        self.mmap.restype = ctypes.c_void_p
        self.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        self.munmap = libc.munmap
        self.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.madvise = libc.madvise
        self.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.prctl = libc.prctl
        self.prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
        ]

    def name(self, address: int, size: int) -> None:
        """Name the mapping (always tried, as the OTEP asks; fails on older kernels)."""
        self.prctl(_PR_SET_VMA, _PR_SET_VMA_ANON_NAME, address, size, SIGNATURE)


class _Mapping:
    """One published mapping: its address, size and memfd (``-1`` for an anonymous one)."""

    def __init__(self, address: int, size: int, fd: int) -> None:
        self.address = address
        self.size = size
        self.fd = fd
        self.published_at = 0

    def write(self, offset: int, data: bytes) -> None:
        ctypes.memmove(self.address + offset, data, len(data))

    def write_header(self, payload_size: int, published_at: int) -> None:
        """Every header field but the signature."""
        header = HEADER.pack(b"\0" * 8, VERSION, payload_size, published_at, self.payload_address)
        self.write(8, header[8:])

    def write_time(self, published_at: int) -> None:
        self.write(16, struct.pack("=Q", published_at))
        self.published_at = published_at

    @property
    def payload_address(self) -> int:
        return self.address + HEADER.size

    @property
    def capacity(self) -> int:
        return self.size - HEADER.size


_lock = threading.Lock()
_libc: Optional[_Libc] = None
_current: Optional[_Mapping] = None
_owner: object = None


def supported() -> bool:
    """Linux with 64-bit pointers (the header's payload field is a 64-bit address)."""
    return sys.platform.startswith("linux") and struct.calcsize("P") == 8


def publish(resource: Mapping[str, Any], extra: Mapping[str, Any], owner: object = None) -> bool:
    """Publish (or update in place) this process's context; ``False`` when it is not available.

    There is one context per process: the last publisher's. ``owner`` (the
    agent) is remembered so that ``drop(owner)`` leaves a later one alone.
    """
    global _owner
    if not supported():
        return False
    try:
        payload = encode(resource, extra)
        with _lock:
            if _current is not None and len(payload) <= _current.capacity:
                _update(_current, payload)
                _owner = owner
                return True
            _drop_locked()  # forgets the owner too: set it after
            created = _create(payload)
            _owner = owner if created else None
            return created
    except Exception:  # noqa: BLE001 - the host must never fail because of this
        _logger.debug("The process context (OTEL_CTX) could not be published.", exc_info=True)
        return False


def drop(owner: object = None) -> None:
    """Remove the published context (at shutdown), unless ``owner`` is not the last publisher."""
    with _lock:
        if owner is None or owner is _owner:
            _drop_locked()


def _create(payload: bytes) -> bool:
    global _libc, _current
    if _libc is None:
        _libc = _Libc()
    size = -(-(HEADER.size + len(payload)) // mmap.PAGESIZE) * mmap.PAGESIZE
    fd = _memfd(size)
    flags = mmap.MAP_SHARED if fd >= 0 else mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    address = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, 0)
    if address is None or address == ctypes.c_void_p(-1).value:
        _close(fd)
        raise OSError(ctypes.get_errno(), "mmap failed")
    mapping = _Mapping(address, size, fd)
    if _libc.madvise(address, size, mmap.MADV_DONTFORK) != 0:
        _unmap(mapping)
        raise OSError(ctypes.get_errno(), "madvise(MADV_DONTFORK) failed")
    published_at = time.time_ns()
    mapping.write(HEADER.size, payload)
    mapping.write_header(len(payload), published_at)
    mapping.published_at = published_at
    _fence()
    mapping.write(0, SIGNATURE)  # last: the mapping is valid from here on
    _libc.name(address, size)
    if fd < 0 and not _named(address):
        _unmap(mapping)  # neither a memfd nor a name: no reader could find it
        return False
    _current = mapping
    return True


def _update(mapping: _Mapping, payload: bytes) -> None:
    """The OTEP's update: time zeroed, payload and size written, then a new time."""
    published_at = max(time.time_ns(), mapping.published_at + 1)
    mapping.write_time(0)
    _fence()
    mapping.write(HEADER.size, payload)
    mapping.write_header(len(payload), 0)
    _fence()
    mapping.write_time(published_at)
    assert _libc is not None
    _libc.name(mapping.address, mapping.size)


def _memfd(size: int) -> int:
    for flags in (os.MFD_CLOEXEC | _MFD_NOEXEC_SEAL, os.MFD_CLOEXEC):
        try:
            fd = os.memfd_create(NAME, flags)
        except (OSError, AttributeError):
            continue
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            return -1
        return fd
    return -1


def _named(address: int) -> bool:
    with open("/proc/self/maps") as maps:
        return any(
            line.startswith(f"{address:x}-") and NAME in line for line in maps
        )  # the kernel may not support names


def _drop_locked() -> None:
    global _current, _owner
    mapping, _current, _owner = _current, None, None
    if mapping is not None:
        _unmap(mapping)


def _unmap(mapping: _Mapping) -> None:
    assert _libc is not None
    _libc.munmap(mapping.address, mapping.size)
    _close(mapping.fd)


def _close(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def _fence() -> None:
    """Order the stores before it before those after it, as another CPU sees them.

    x86-64 keeps stores in order; on 64-bit ARM the ``membarrier`` system call
    (a system-wide barrier, once per publication) does it. Elsewhere readers
    still detect a torn read by the publication time, as the OTEP describes.
    """
    if platform.machine() in ("aarch64", "arm64"):
        ctypes.CDLL(None).syscall(_SYS_MEMBARRIER_ARM64, _MEMBARRIER_CMD_GLOBAL, 0)


def _forget_in_child() -> None:
    """A forked child has no mapping (``MADV_DONTFORK``); it only closes the inherited memfd."""
    global _current, _lock
    _lock = threading.Lock()
    mapping, _current = _current, None
    if mapping is not None:
        _close(mapping.fd)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
