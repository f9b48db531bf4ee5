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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_profiling._env import env_int, env_str
from otel_profiling.formats import ProfileFormat
from otel_profiling.profile import Profile, ProfileKind

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: entries are not locked
    fcntl = None  # type: ignore[assignment]

_logger = logging.getLogger(__name__)

DEFAULT_SPOOL_MAX_BYTES = 512 * 1024 * 1024
_SUFFIX = ".profile"
_VERSION = 1
_EVICTION_WARNING_INTERVAL_S = 60.0
_STALE_TEMP_S = 600.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_MAX_NAME = 100


def default_spool_root() -> Path:
    """``$XDG_CACHE_HOME/otel-profiling/spool``, else ``~/.cache/otel-profiling/spool``."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "otel-profiling" / "spool"


def service_directory(root: Path, service: str) -> Path:
    """The per-service spool directory under ``root``.

    A long service name is cut, with a digest of the whole kept, so the name
    stays within file systems' 255-byte limit and distinct names stay apart.
    """
    name = _UNSAFE.sub("_", service).strip(".") or "unknown_service"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(service.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        name = f"{name[: _MAX_NAME - 11]}-{digest}"
    return root / name


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
        self.spooled_profiles = 0
        self.evicted_profiles = 0
        self._reported_evictions = 0
        self._last_eviction_warning = -_EVICTION_WARNING_INTERVAL_S
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, service: Optional[str] = None, destination: str = "") -> Optional[Spool]:
        """The default spool, or ``None`` when ``OTEL_PROFILING_SPOOL_DIR`` is ``none``.

        ``destination`` (an exporter's target) gets a subdirectory of its own, so
        profiles are re-sent only to where they were meant to go.
        """
        root = env_str("OTEL_PROFILING_SPOOL_DIR")
        if root is not None and root.lower() in {"none", "off", "false"}:
            return None
        if service is None:
            service = str(Resource.create().attributes.get("service.name", "unknown_service"))
        base = Path(root).expanduser() if root else default_spool_root()
        max_bytes = env_int("OTEL_PROFILING_SPOOL_MAX_BYTES", DEFAULT_SPOOL_MAX_BYTES, 1)
        directory = service_directory(base, service)
        if destination:
            digest = hashlib.sha256(destination.encode()).hexdigest()[:10]
            directory = directory / f"{_UNSAFE.sub('_', destination)[-60:].strip('._')}-{digest}"
        return cls(directory, max_bytes)

    def __repr__(self) -> str:
        return f"Spool(directory={str(self.directory)!r}, max_bytes={self.max_bytes})"

    # -- writing ------------------------------------------------------------------
    def put(self, profile: Profile) -> Optional[Path]:
        """Keep ``profile`` on disk; ``None`` (logged) if it could not be written."""
        header = json.dumps(_header(profile), separators=(",", ":")).encode()
        size = len(header) + 1 + len(profile.data)
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        tmp = self.directory / f".tmp-{name}"
        try:
            with self._lock:
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._make_room(size)
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
        except OSError as exc:
            _unlink(tmp)
            _logger.error(
                "Could not spool %s to %s (%s): the profile is lost. Fix: make the directory "
                "writable or set OTEL_PROFILING_SPOOL_DIR.",
                profile.key,
                self.directory,
                exc,
            )
            return None

    def _make_room(self, size: int) -> None:
        entries = list(self._entries())
        total = sum(s for _, s in entries)
        evicted = 0
        freed = 0
        for path, entry_size in entries:
            if total - freed + size <= self.max_bytes:
                break
            _unlink(path)
            freed += entry_size
            evicted += 1
        self.evicted_profiles += evicted
        now = time.monotonic()
        unreported = self.evicted_profiles - self._reported_evictions
        if unreported and now - self._last_eviction_warning >= _EVICTION_WARNING_INTERVAL_S:
            self._last_eviction_warning = now
            self._reported_evictions = self.evicted_profiles
            _logger.warning(
                "Spool %s is full (%d bytes max): evicted the %d oldest profile(s) "
                "(%d evicted in all). Raise OTEL_PROFILING_SPOOL_MAX_BYTES or fix the exporter.",
                self.directory,
                self.max_bytes,
                unreported,
                self.evicted_profiles,
            )

    # -- reading ------------------------------------------------------------------
    def _entries(self) -> Iterator[Tuple[Path, int]]:
        try:
            names = sorted(
                n for n in os.listdir(self.directory) if n.endswith(_SUFFIX) and n[0] != "."
            )
        except FileNotFoundError:
            return
        for name in names:
            path = self.directory / name
            try:
                yield path, path.stat().st_size
            except FileNotFoundError:
                continue

    def pending(self) -> int:
        """How many profiles wait in the spool (from every process of the service)."""
        return sum(1 for _ in self._entries())

    def profiles(self) -> List[Profile]:
        """The spooled profiles, oldest first (for inspection; nothing is removed)."""
        out = []
        for path, _ in self._entries():
            try:
                out.append(_load(path.read_bytes()))
            except (OSError, ValueError):
                continue
        return out

    def drain(
        self,
        send: Callable[[Sequence[Profile]], Sequence[Profile]],
        batch_size: int = 32,
        max_batches: Optional[int] = None,
    ) -> Tuple[int, int]:
        """Re-send spooled profiles, oldest first, through ``send`` (returns the unsent ones).

        Sent entries are removed. Stops after ``max_batches`` batches, or at a
        batch of which nothing was sent (the backend still fails). Returns
        ``(sent, still_pending)``.
        """
        self._sweep_temporary()
        sent = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            batches += 1
            claimed = self._claim(batch_size)
            if not claimed:
                break
            try:
                profiles = [profile for _, _, profile in claimed]
                unsent = {id(p) for p in send(profiles)}
                for path, _, profile in claimed:
                    if id(profile) not in unsent:
                        _unlink(path)
                        sent += 1
            finally:
                for _, handle, _ in claimed:
                    handle.close()
            if len(unsent) == len(claimed):
                break
        return sent, self.pending()

    def _sweep_temporary(self) -> None:
        """Remove temporary files left by a process killed while spooling."""
        try:
            names = [n for n in os.listdir(self.directory) if n.startswith(".tmp-")]
        except FileNotFoundError:
            return
        for name in names:
            path = self.directory / name
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > _STALE_TEMP_S:
                    path.unlink()

    def _claim(self, limit: int) -> List[Tuple[Path, Any, Profile]]:
        claimed: List[Tuple[Path, Any, Profile]] = []
        for path, _ in self._entries():
            if len(claimed) >= limit:
                break
            try:
                handle = open(path, "rb")  # noqa: SIM115 - held open while locked
            except FileNotFoundError:
                continue
            if not _lock_file(handle) or os.fstat(handle.fileno()).st_nlink == 0:
                handle.close()  # another process is re-sending it, or has just done so
                continue
            try:
                profile = _load(handle.read())
            except (OSError, ValueError) as exc:
                handle.close()
                _quarantine(path, exc)
                continue
            claimed.append((path, handle, profile))
        return claimed


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


def _load(raw: bytes) -> Profile:
    """Rebuild the profile from a spool file; ``ValueError`` if it is damaged."""
    newline = raw.find(b"\n")
    if newline < 0:
        raise ValueError("no header")
    header = json.loads(raw[:newline])
    data = raw[newline + 1 :]
    if header.get("v") != _VERSION:
        raise ValueError(f"unknown spool version {header.get('v')!r}")
    if len(data) != header["size"] or hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise ValueError("payload does not match its checksum")
    scope = header.get("scope")
    profile = Profile(
        ProfileKind(header["kind"]),
        ProfileFormat(header["format"], header["extension"], header["content_type"]),
        name=header["name"],
        resource=Resource(header["resource"], header.get("resource_schema_url")),
        instrumentation_scope=InstrumentationScope(scope[0], scope[1]) if scope else None,
        attributes={
            k: tuple(v) if isinstance(v, list) else v for k, v in header["attributes"].items()
        },
        trigger=header.get("trigger"),
        start_time=datetime.fromisoformat(header["start_time"]),
    )
    end = header.get("end_time")
    profile.end(data, end_time=datetime.fromisoformat(end) if end else None)
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


def _quarantine(path: Path, exc: BaseException) -> None:
    """A damaged entry is renamed aside (kept for inspection, never re-sent)."""
    _logger.error("Spool entry %s is damaged (%s); renamed to *.damaged.", path, exc)
    with contextlib.suppress(OSError):
        os.replace(path, path.with_suffix(".damaged"))
