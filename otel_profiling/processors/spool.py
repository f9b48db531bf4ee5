"""A local, size-capped spool for profiles that could not be exported yet.

One file per profile: a JSON header line (kind, times, attributes, resource,
format, SHA-256 of the payload) followed by the payload bytes, so a re-sent
profile gets the same object key and metadata as the original would have.
Files are written to a temporary name and renamed (atomic), named so that
sorting them sorts them oldest first, and evicted oldest first when the spool
would exceed its byte cap (counted in ``evicted_profiles`` and logged).

Several processes of one service may share a spool: an entry being re-sent is
locked (``flock``), and a process that finds it locked or already removed
leaves it alone, so each entry is uploaded by one process only.

Whatever sits in the directory, reading it never fails and never blocks: an
entry that is not a regular file (a directory, FIFO, socket or symbolic link
named like one) or whose content is not a complete profile (truncated, wrong
header, bad checksum...) is renamed aside to ``*.damaged``, logged once and
counted in ``quarantined_entries``; it is never sent. Directories the spool
creates are private to the user (0700), files too (0600).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_profiling._env import env_int, env_str
from otel_profiling._fork import renew_after_fork
from otel_profiling.environment_variables import (
    OTEL_PROFILING_SPOOL_DIR,
    OTEL_PROFILING_SPOOL_MAX_BYTES,
)
from otel_profiling.exporters.base import ProfileExporter
from otel_profiling.formats import ProfileFormat
from otel_profiling.profile import Profile, ProfileKind

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: entries are not locked
    fcntl = None  # type: ignore[assignment]

_logger = logging.getLogger(__name__)

# A log line held while the spool's lock is: logged once it is released, since
# a logging handler may itself use the spool (or wait for a thread that does).
_Note = Tuple[int, str, Tuple[Any, ...]]

DEFAULT_SPOOL_MAX_BYTES = 512 * 1024 * 1024
_SUFFIX = ".profile"
_DAMAGED = ".damaged"
_VERSION = 1
_EVICTION_WARNING_INTERVAL_S = 60.0
_STALE_TEMP_S = 600.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_MAX_NAME = 100  # characters of the service's directory name (file names stop at 255 bytes)
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the worker
    | getattr(os, "O_NOFOLLOW", 0)  # nor a link lead it elsewhere
    | getattr(os, "O_CLOEXEC", 0)
)


class DamagedEntry(ValueError):
    """A spool file that does not hold a complete profile."""


def default_spool_root() -> Path:
    """``$XDG_CACHE_HOME/otel-profiling/spool``, else ``~/.cache/otel-profiling/spool``."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "otel-profiling" / "spool"


def service_directory(root: Path, service: str) -> Path:
    """The per-service spool directory under ``root`` (a long name keeps a hash of the rest).

    Surrounding whitespace is dropped: ``OTEL_SERVICE_NAME=" billing "`` (kept
    as given in the resource by the SDK) and ``billing`` share ``billing/``.
    """
    service = service.strip()
    name = _UNSAFE.sub("_", service).strip(".") or "unknown_service"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(service.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        name = f"{name[: _MAX_NAME - 11]}-{digest}"
    return root / name


def private_directory(directory: Path, root: Optional[Path] = None) -> None:
    """Make ``directory`` with every missing parent mode 0700.

    Existing directories are left alone, except those strictly below ``root``
    (the spool's own per-service and per-destination ones), which lose any
    group and other permissions if they belong to this user.
    """
    missing: List[Path] = []
    current = directory
    while not os.path.lexists(current):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            os.mkdir(path, 0o700)
    if root is None or root not in directory.parents:
        return
    for path in [directory, *directory.parents]:
        if path == root:
            break
        with contextlib.suppress(OSError):
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and info.st_mode & 0o077:
                os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)


class Spool:
    """Profiles kept on local disk until they can be exported.

    ``directory`` is used as is. ``Spool.from_env()`` builds the default one:
    ``OTEL_PROFILING_SPOOL_DIR`` (default: the per-user cache directory), one
    subdirectory per service, capped at ``OTEL_PROFILING_SPOOL_MAX_BYTES``.
    """

    def __init__(self, directory: os.PathLike | str, max_bytes: int = DEFAULT_SPOOL_MAX_BYTES):
        if max_bytes <= 0:
            raise ValueError(f"Spool max_bytes must be > 0, got {max_bytes}.")
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self._root: Optional[Path] = None  # the spool root, when made by ``from_env``
        self._renew()
        renew_after_fork(self, Spool._renew)

    def _renew(self) -> None:
        """Counters and lock of this process: made here, and again in a forked child."""
        self.spooled_profiles = 0
        self.evicted_profiles = 0
        self.quarantined_entries = 0
        self._reported_evictions = 0
        self._last_eviction_warning = -_EVICTION_WARNING_INTERVAL_S
        self._stuck: Set[str] = set()  # damaged entries that could not be renamed aside
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, service: Optional[str] = None, destination: str = "") -> Optional[Spool]:
        """The default spool, or ``None`` when ``OTEL_PROFILING_SPOOL_DIR`` is ``none``.

        ``destination`` (an exporter's target) gets a subdirectory of its own, so
        profiles are re-sent only to where they were meant to go.
        """
        root = env_str(OTEL_PROFILING_SPOOL_DIR)
        if root is not None and root.lower() in {"none", "off", "false"}:
            return None
        if service is None:
            service = str(Resource.create().attributes.get("service.name", "unknown_service"))
        base = Path(root).expanduser() if root else default_spool_root()
        max_bytes = env_int(OTEL_PROFILING_SPOOL_MAX_BYTES, DEFAULT_SPOOL_MAX_BYTES, 1)
        directory = service_directory(base, service)
        if destination:
            digest = hashlib.sha256(destination.encode("utf-8", "surrogatepass")).hexdigest()[:10]
            directory = directory / f"{_UNSAFE.sub('_', destination)[-60:].strip('._')}-{digest}"
        spool = cls(directory, max_bytes)
        spool._root = base
        return spool

    @classmethod
    def for_exporter(
        cls, exporter: ProfileExporter, resource: Optional[Resource] = None
    ) -> Optional[Spool]:
        """``from_env`` for what ``exporter`` could not send, under ``resource``'s service.

        ``resource``: the one the profiles carry (an agent's), so that the spool is
        that service's; without it, the service named by the environment.
        """
        service = None if resource is None else resource.attributes.get("service.name")
        try:
            destination = str(exporter.destination)
        except Exception:  # noqa: BLE001 - no usable destination: one spool per class
            destination = type(exporter).__name__
        return cls.from_env(None if service is None else str(service), destination)

    def __repr__(self) -> str:
        return f"Spool(directory={str(self.directory)!r}, max_bytes={self.max_bytes})"

    # -- writing ------------------------------------------------------------------
    def put(self, profile: Profile) -> Optional[Path]:
        """Keep ``profile`` on disk; ``None`` (logged) if it could not be written. Never raises."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        tmp = self.directory / f".tmp-{name}"
        notes: List[_Note] = []
        try:
            try:
                header = json.dumps(_header(profile), separators=(",", ":")).encode()
                size = len(header) + 1 + len(profile.data)
                with self._lock:
                    private_directory(self.directory, self._root)
                    self._make_room(size, notes)
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # owner only
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(header + b"\n")
                        handle.write(profile.data)
                        handle.flush()
                        os.fsync(handle.fileno())
                    final = self.directory / name
                    os.replace(tmp, final)
                    self.spooled_profiles += 1
                    return final
            finally:
                _say(notes)  # the lock is released by now
        except Exception as exc:  # noqa: BLE001 - reported; the caller counts the loss
            with contextlib.suppress(OSError):
                _unlink(tmp)
            _logger.error(
                "Could not spool %s to %s (%s: %s): the profile is lost. Fix: make the "
                "directory writable or set OTEL_PROFILING_SPOOL_DIR.",
                profile.key,
                self.directory,
                type(exc).__name__,
                exc,
            )
            return None

    def _make_room(self, size: int, notes: List[_Note]) -> None:
        """(lock held) Evict oldest first until ``size`` more bytes fit; log lines in ``notes``."""
        entries = self._listed(notes)
        total = sum(s for _, s in entries)
        evicted = 0
        freed = 0
        for path, entry_size in entries:
            if total - freed + size <= self.max_bytes:
                break
            try:
                _unlink(path)
            except OSError:
                continue
            freed += entry_size
            evicted += 1
        self.evicted_profiles += evicted
        now = time.monotonic()
        unreported = self.evicted_profiles - self._reported_evictions
        if unreported and now - self._last_eviction_warning >= _EVICTION_WARNING_INTERVAL_S:
            self._last_eviction_warning = now
            self._reported_evictions = self.evicted_profiles
            notes.append(
                (
                    logging.WARNING,
                    "Spool %s is full (%d bytes max): evicted the %d oldest profile(s) "
                    "(%d evicted in all). Raise OTEL_PROFILING_SPOOL_MAX_BYTES or fix the "
                    "exporter.",
                    (self.directory, self.max_bytes, unreported, self.evicted_profiles),
                )
            )

    # -- reading ------------------------------------------------------------------
    def _entries(self) -> List[Tuple[Path, int]]:
        """``_listed``, logging what it set aside (not for use under the lock)."""
        notes: List[_Note] = []
        try:
            return self._listed(notes)
        finally:
            _say(notes)

    def _listed(self, notes: List[_Note]) -> List[Tuple[Path, int]]:
        """Entry files (regular files named ``*.profile``), oldest first, with their sizes.

        Anything else named like an entry is quarantined on the way, its log
        line added to ``notes``.
        """
        try:
            names = sorted(
                n for n in os.listdir(self.directory) if n.endswith(_SUFFIX) and n[0] != "."
            )
        except OSError:  # missing, or not a directory: nothing to read
            return []
        out: List[Tuple[Path, int]] = []
        for name in names:
            path = self.directory / name
            if name in self._stuck:
                continue
            try:
                info = os.lstat(path)
            except OSError:  # removed meanwhile
                continue
            if not stat.S_ISREG(info.st_mode):
                why = f"not a regular file ({_file_type(info.st_mode)})"
                notes.extend(self._quarantine(path, why))
                continue
            out.append((path, info.st_size))
        return out

    def pending(self) -> int:
        """How many profiles wait in the spool (from every process of the service)."""
        return len(self._entries())

    def profiles(self) -> List[Profile]:
        """The spooled profiles, oldest first, for inspection: nothing is sent or removed
        (an entry that is not a regular file is set aside, as by any read)."""
        out = []
        for path, _ in self._entries():
            with contextlib.suppress(OSError, ValueError), _open_entry(path) as handle:
                out.append(_load(handle.read()))
        return out

    def drain(
        self,
        send: Callable[[Sequence[Profile]], Sequence[Profile]],
        batch_size: int = 32,
        max_batches: Optional[int] = None,
        max_bytes: Optional[int] = None,
    ) -> Tuple[int, int]:
        """Re-send spooled profiles, oldest first, through ``send`` (returns the unsent ones).

        A batch holds at most ``batch_size`` entries and, beyond its first,
        ``max_bytes`` of files (they are read into memory). Sent entries are
        removed. Stops after ``max_batches`` batches, or at a batch of which
        nothing was sent (the backend still fails). Returns ``(sent, still_pending)``.
        """
        self._sweep_temporary()
        sent = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            batches += 1
            count, failed = self._send_batch(send, batch_size, max_bytes)
            sent += count
            if failed or not count:  # nothing left, or the backend still fails
                break
        return sent, self.pending()

    def _send_batch(
        self,
        send: Callable[[Sequence[Profile]], Sequence[Profile]],
        batch_size: int,
        max_bytes: Optional[int],
    ) -> Tuple[int, bool]:
        """One batch through ``send``: (entries sent, whether nothing got through).

        Its profiles are let go on return, before the next batch is read.
        """
        claimed = self._claim(batch_size, max_bytes)
        if not claimed:
            return 0, False
        sent = 0
        try:
            unsent = {id(p) for p in send([profile for _, _, profile in claimed])}
            for path, _, profile in claimed:
                if id(profile) not in unsent:
                    with contextlib.suppress(OSError):
                        _unlink(path)
                    sent += 1
        finally:
            for _, handle, _ in claimed:
                handle.close()
        return sent, sent == 0

    def _sweep_temporary(self) -> None:
        """Remove temporary files left by a process killed while spooling."""
        try:
            names = [n for n in os.listdir(self.directory) if n.startswith(".tmp-")]
        except OSError:
            return
        for name in names:
            path = self.directory / name
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode) and time.time() - info.st_mtime > _STALE_TEMP_S:
                    path.unlink()

    def _claim(
        self, limit: int, max_bytes: Optional[int] = None
    ) -> List[Tuple[Path, Any, Profile]]:
        """Up to ``limit`` readable entries (``max_bytes`` of them, at least one), each open
        and locked against other processes."""
        claimed: List[Tuple[Path, Any, Profile]] = []
        size = 0
        for path, entry_size in self._entries():
            if len(claimed) >= limit:
                break
            if claimed and max_bytes is not None and size + entry_size > max_bytes:
                break
            try:
                handle = _open_entry(path)
            except FileNotFoundError:
                continue
            except (OSError, DamagedEntry) as exc:
                _say(self._quarantine(path, str(exc)))
                continue
            try:
                if not _lock_file(handle) or os.fstat(handle.fileno()).st_nlink == 0:
                    handle.close()  # another process is re-sending it, or has just done so
                    continue
                profile = _load(handle.read())
            except Exception as exc:  # noqa: BLE001 - whatever is wrong, the entry is set aside
                handle.close()
                _say(self._quarantine(path, f"{type(exc).__name__}: {exc}"))
                continue
            claimed.append((path, handle, profile))
            size += entry_size
        return claimed

    def _quarantine(self, path: Path, why: str) -> List[_Note]:
        """Rename an unreadable entry aside (kept for inspection, never sent); what to log, once."""
        target = path.with_name(path.name[: -len(_SUFFIX)] + _DAMAGED)
        if os.path.lexists(target):
            target = path.with_name(
                f"{target.name[: -len(_DAMAGED)]}-{secrets.token_hex(4)}{_DAMAGED}"
            )
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return []  # another process has just dealt with it
        except OSError as exc:
            self._stuck.add(path.name)
            self.quarantined_entries += 1
            return [
                (
                    logging.ERROR,
                    "Spool entry %s is unreadable (%s) and could not be renamed aside (%s); it "
                    "is skipped and never sent. Remove it by hand.",
                    (path, why, exc),
                )
            ]
        self.quarantined_entries += 1
        return [
            (
                logging.ERROR,
                "Spool entry %s is unreadable (%s); renamed to %s and never sent (it may be "
                "deleted).",
                (path, why, target.name),
            )
        ]


def _say(notes: Sequence[_Note]) -> None:
    """Log the lines held while the lock was (it is not any more)."""
    for level, message, args in notes:
        _logger.log(level, message, *args)


def _file_type(mode: int) -> str:
    for check, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if check(mode):
            return name
    return "not a file"


def _open_entry(path: Path) -> Any:
    """Open an entry for reading without blocking or following links; only regular files."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DamagedEntry(f"not a regular file ({_file_type(mode)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _header(profile: Profile) -> Dict[str, Any]:
    scope = profile.instrumentation_scope
    return {
        "v": _VERSION,
        "kind": profile.kind.value,
        "name": profile.name,
        "format": profile.format,
        "extension": profile.extension,
        "content_type": profile.content_type,
        "start_time": profile.start_time.isoformat(),
        "end_time": profile.end_time.isoformat() if profile.end_time else None,
        "trigger": profile.trigger,
        "attributes": {k: _json_value(v) for k, v in profile.attributes.items()},
        "resource": {k: _json_value(v) for k, v in profile.resource.attributes.items()},
        "resource_schema_url": profile.resource.schema_url,
        "scope": [scope.name, scope.version] if scope is not None else None,
        "size": len(profile.data),
        "sha256": hashlib.sha256(profile.data).hexdigest(),
    }


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


_SCALAR = (str, bool, int, float)


def _field(header: Dict[str, Any], key: str, *types: type) -> Any:
    if key not in header:
        raise DamagedEntry(f"header has no {key!r}")
    value = header[key]
    if not isinstance(value, types):
        raise DamagedEntry(f"header {key!r} is a {type(value).__name__}")
    return value


def _attributes(header: Dict[str, Any], key: str) -> Dict[str, Any]:
    raw = _field(header, key, dict)
    out: Dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, list) and all(isinstance(v, _SCALAR) for v in value):
            out[name] = tuple(value)
        elif isinstance(value, _SCALAR):
            out[name] = value
        else:
            raise DamagedEntry(f"header {key!r} has a {type(value).__name__} for {name!r}")
    return out


def _load(raw: bytes) -> Profile:
    """Rebuild the profile from a spool file; ``DamagedEntry`` if it is not a complete one."""
    newline = raw.find(b"\n")
    if newline < 0:
        raise DamagedEntry("no header line")
    try:
        header = json.loads(raw[:newline])
    except ValueError as exc:
        raise DamagedEntry(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise DamagedEntry(f"header is a JSON {type(header).__name__}, not an object")
    data = raw[newline + 1 :]
    if header.get("v") != _VERSION:
        raise DamagedEntry(f"unknown spool version {header.get('v')!r}")
    size = _field(header, "size", int)
    if len(data) != size or hashlib.sha256(data).hexdigest() != _field(header, "sha256", str):
        raise DamagedEntry(f"payload ({len(data)} bytes) does not match its size and checksum")
    scope = _field(header, "scope", list, type(None))
    if scope is not None and not (len(scope) == 2 and isinstance(scope[0], str)):
        raise DamagedEntry("header 'scope' is not [name, version]")
    end = _field(header, "end_time", str, type(None))
    try:
        profile = Profile(
            ProfileKind(_field(header, "kind", str)),
            ProfileFormat(
                _field(header, "format", str),
                _field(header, "extension", str),
                _field(header, "content_type", str),
            ),
            name=_field(header, "name", str),
            resource=Resource(
                _attributes(header, "resource"),
                _field(header, "resource_schema_url", str, type(None)),
            ),
            instrumentation_scope=InstrumentationScope(scope[0], scope[1]) if scope else None,
            attributes=_attributes(header, "attributes"),
            trigger=_field(header, "trigger", str, type(None)),
            start_time=datetime.fromisoformat(_field(header, "start_time", str)),
        )
        profile.end(data, end_time=datetime.fromisoformat(end) if end else None)
    except DamagedEntry:
        raise
    except (ValueError, TypeError) as exc:
        raise DamagedEntry(f"header holds an invalid value ({exc})") from None
    if profile.start_time.tzinfo is None:
        raise DamagedEntry("header 'start_time' has no time zone")
    return profile


def _lock_file(handle: Any) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
