"""Finding profiles under a URL: the key names kind and start, object metadata the rest.

Listing never reads a profile's body. The object name gives kind and start
time (read by ``ProfileNamer.find``: the default ``{kind}-{start_time}.{extension}``
or any key template holding ``{kind}`` and ``{start_time}``), so the
``--kind``/``--since``/``--until`` filters apply before any further request; duration,
status and service come from the
object's user metadata written by ``FsspecProfileExporter`` (fetched
concurrently on async backends such as S3), when the backend keeps metadata.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from otel_profiling.cli.common import CliError, open_url, storage_error
from otel_profiling.formats.registry import format_from_name
from otel_profiling.naming import DEFAULT_NAMER, ParsedKey, ProfileNamer, iso_millis
from otel_profiling.profile import ProfileKind
from otel_profiling.redact import redact_url

_METADATA_CONCURRENCY = 16


@dataclass
class Entry:
    """One profile object found under a URL."""

    url: str
    path: str
    key: str
    kind: str
    start_time: datetime
    size: int
    duration_ms: Optional[int] = None
    status: Optional[str] = None
    service: Optional[str] = None
    format: Optional[str] = None

    def as_json(self) -> Dict[str, Any]:
        out = asdict(self)
        out["start_time"] = iso_millis(self.start_time)
        return out


def parse_key(name: str, namer: ProfileNamer = DEFAULT_NAMER) -> Optional[ParsedKey]:
    """Kind, start time and extension from an object name, or ``None`` if not a profile's."""
    return namer.find(name)


def parse_kinds(values: Optional[Sequence[str]]) -> Optional[List[str]]:
    """``--kind cpu,HEAP_PROFILE`` → canonical kind names; an unknown one is an error."""
    if not values:
        return None
    aliases = {"cpu": "CPU_PROFILE", "heap": "HEAP_PROFILE", "snapshot": "HEAP_SNAPSHOT"}
    out: List[str] = []
    for value in values:
        for item in value.split(","):
            name = aliases.get(item.strip().lower(), item.strip().upper())
            if name not in ProfileKind.__members__:
                raise CliError(
                    f"unknown kind {item!r}: use CPU_PROFILE, HEAP_PROFILE or HEAP_SNAPSHOT "
                    "(or cpu, heap, snapshot)"
                )
            out.append(name)
    return out


def parse_where(values: Optional[Sequence[str]]) -> Tuple[Tuple[str, str], ...]:
    """``--where KEY=VALUE`` (repeatable) → ``((key, value), ...)``; a bad pair is an error."""
    pairs = []
    for value in values or []:
        key, sep, wanted = value.partition("=")
        if not sep or not key.strip():
            raise CliError(
                f"--where {value!r} needs the form KEY=VALUE, e.g. --where service.version=1.4.2"
            )
        pairs.append((key.strip().lower(), wanted))
    return tuple(pairs)


def metadata_matches(meta: Dict[str, str], where: Sequence[Tuple[str, str]]) -> bool:
    """Whether the object's metadata has every ``(key, value)`` of ``where``.

    A key is looked up as written (``profile-trigger``), as an attribute name
    with dots for dashes (``service.name`` is stored as ``service-name``), and
    as a profile attribute (``job.id`` is stored as ``attr-job.id``).
    """
    for key, wanted in where:
        names = (key, key.replace(".", "-"), "attr-" + key)
        if not any(meta.get(name) == wanted for name in names):
            return False
    return True


def _user_metadata(fs: Any, paths: List[str]) -> Dict[str, Dict[str, str]]:
    """User metadata per path: concurrent ``head`` requests on async filesystems."""
    if not paths:
        return {}
    if getattr(fs, "async_impl", False) and hasattr(fs, "_metadata"):
        from fsspec.asyn import sync

        async def gather() -> List[Any]:
            gate = asyncio.Semaphore(_METADATA_CONCURRENCY)

            async def one(path: str) -> Any:
                async with gate:
                    try:
                        return await fs._metadata(path)
                    except OSError:
                        return {}

            return await asyncio.gather(*(one(p) for p in paths))

        return dict(zip(paths, sync(fs.loop, gather), strict=True))
    if hasattr(fs, "metadata"):
        return {p: fs.metadata(p) for p in paths}
    return {}


def _from_info(info: Dict[str, Any]) -> Dict[str, str]:
    meta = info.get("metadata") or info.get("Metadata") or {}
    return meta if isinstance(meta, dict) else {}


def _no_profile_names(url: str, objects: int) -> str:
    """Objects, but none named as a profile: most often written under a key template
    without ``{kind}`` or ``{start_time}``, which cannot be listed or filtered."""
    return (
        f"{redact_url(url)} holds {objects} object(s), none named as a profile: a key needs "
        "{kind} and {start_time} (e.g. CPU_PROFILE-2026-11-24T10:15:30.123Z.cpuprofile); "
        "export under a key template that has both (OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE), "
        "and give objects named otherwise one by one, by their full URL"
    )


def list_profiles(
    url: str,
    options: Dict[str, Any],
    *,
    kinds: Optional[Iterable[str]] = None,
    since: Optional[datetime] = None,
    until: Optional[datetime] = None,
    services: Optional[Iterable[str]] = None,
    where: Sequence[Tuple[str, str]] = (),
    metadata: bool = True,
    namer: ProfileNamer = DEFAULT_NAMER,
) -> List[Entry]:
    """Profiles under ``url`` (recursively), filtered, sorted by start time.

    An object is a profile when ``namer`` finds kind and start time in its
    name relative to ``url`` (any key template with ``{kind}`` and ``{start_time}``).

    ``where`` keeps the objects whose metadata matches (see ``metadata_matches``);
    it and ``services`` fetch the metadata even when ``metadata`` is false.
    """
    fs, base = open_url(url, options)
    try:
        found = fs.find(base, detail=True)
    except OSError as exc:
        raise storage_error(exc, url) from None
    if not found and not fs.exists(base):
        raise CliError(f"{redact_url(url)} does not exist: check the bucket and prefix")
    wanted = set(kinds) if kinds else None
    entries: List[Entry] = []
    infos: Dict[str, Dict[str, Any]] = {}
    named = unnamed = 0
    for path, info in found.items():
        if info.get("type") == "directory":
            continue
        key = posixpath.relpath(path, base.rstrip("/")) if base else path
        if key == ".":  # the URL is the object itself
            key = posixpath.basename(path)
        parsed = parse_key(key, namer)
        if parsed is None:
            unnamed += 1
            continue
        named += 1
        if wanted is not None and parsed.kind.value not in wanted:
            continue
        if since is not None and parsed.start_time < since:
            continue
        if until is not None and parsed.start_time > until:
            continue
        infos[path] = info
        entries.append(
            Entry(
                url=str(fs.unstrip_protocol(path)),
                path=path,
                key=key,
                kind=parsed.kind.value,
                start_time=parsed.start_time,
                size=int(info.get("size") or 0),
                format=format_from_name(key) or parsed.extension,
            )
        )
    if unnamed and not named:
        raise CliError(_no_profile_names(url, unnamed))
    kept: List[Entry] = []
    if metadata or services or where:
        fetched = _user_metadata(fs, [e.path for e in entries if not _from_info(infos[e.path])])
        for entry in entries:
            meta = {
                k.lower(): unquote(v)
                for k, v in (_from_info(infos[entry.path]) or fetched.get(entry.path, {})).items()
            }
            duration = meta.get("profile-duration-ms")
            entry.duration_ms = int(duration) if duration and duration.isdigit() else None
            entry.status = meta.get("profile-status") or None
            entry.service = meta.get("service-name") or None
            entry.format = meta.get("profile-format") or entry.format
            if metadata_matches(meta, where):
                kept.append(entry)
        entries = kept
    if services:
        allowed = set(services)
        entries = [e for e in entries if e.service in allowed]
    entries.sort(key=lambda e: (e.start_time, e.key))
    return entries
