"""``FsspecProfileExporter``: one URL, any storage backend fsspec knows."""

from __future__ import annotations

import logging
import os
import posixpath
import secrets
import threading
from typing import Any, Dict, Mapping, Optional, Sequence
from urllib.parse import quote

import fsspec
from fsspec.core import split_protocol

from otel_profiling.exporters.backends import Backend, backend_for, missing_backend_message
from otel_profiling.exporters.base import ProfileExporter, ProfileExportResult
from otel_profiling.exporters.naming import (
    DEFAULT_KEY_TEMPLATE,
    collision_key,
    fill_placeholders,
    validate_key_template,
)
from otel_profiling.profile import Profile, ProfileStatus, iso_millis
from otel_profiling.redact import redact_options, redact_url

_logger = logging.getLogger(__name__)

_METADATA_BUDGET = 1800  # S3 allows 2 KB of user metadata; keep room for the keys' prefix
_MAX_COLLISIONS = 10


def _ascii(text: object, limit: int = 256) -> str:
    """S3 metadata must be printable ASCII: percent-encode the rest."""
    return quote(str(text), safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~")[:limit]


def profile_metadata(profile: Profile) -> Dict[str, str]:
    """Object metadata: kind, times, status, service and attributes, as ASCII strings."""
    duration = profile.duration
    meta = {
        "profile-kind": profile.kind.value,
        "profile-name": _ascii(profile.name),
        "profile-format": profile.format,
        "profile-start-time": iso_millis(profile.start_time),
        "profile-end-time": iso_millis(profile.end_time) if profile.end_time else "",
        "profile-duration-ms": str(round(duration.total_seconds() * 1000)) if duration else "",
        "profile-status": profile.status.value,
        "service-name": _ascii(profile.resource.attributes.get("service.name", "")),
    }
    if profile.trigger:
        meta["profile-trigger"] = _ascii(profile.trigger)
    used = sum(len(k) + len(v) for k, v in meta.items())
    for key, value in profile.attributes.items():
        name = "attr-" + quote(str(key), safe=".-_")[:100]
        text = _ascii(value)
        if used + len(name) + len(text) > _METADATA_BUDGET:
            meta["attributes-truncated"] = "true"
            break
        meta[name] = text
        used += len(name) + len(text)
    return meta


class FsspecProfileExporter(ProfileExporter):
    """Writes each profile to ``{url}/{kind}-{start_time}.{extension}``.

    ``url`` picks the backend by scheme (``s3://``, ``gs://``, ``az://``,
    ``file://``, ``memory://``, or a local path) and may contain resource
    placeholders such as ``{service.name}``. ``storage_options`` go to the
    fsspec filesystem (credentials, endpoint, ...); they are never logged.
    The bucket or directory is created on first use. An existing object is
    never overwritten: a clash gets a ``-1``, ``-2``... suffix.
    """

    def __init__(
        self,
        url: str,
        storage_options: Optional[Mapping[str, Any]] = None,
        *,
        key_template: str = DEFAULT_KEY_TEMPLATE,
        create_container: bool = True,
    ) -> None:
        if not url:
            raise ValueError(
                "FsspecProfileExporter needs a URL, e.g. 's3://bucket/profiles' or "
                "'file:///var/tmp/profiles' (OTEL_EXPORTER_FSSPEC_PROFILES_URL)."
            )
        validate_key_template(key_template)
        self.url = url
        self.key_template = key_template
        self.create_container = create_container
        self._options: Dict[str, Any] = dict(storage_options or {})
        protocol, _ = split_protocol(url)
        self.protocol = protocol or "file"
        try:
            self._fs_class = fsspec.get_filesystem_class(self.protocol)
        except (ImportError, ValueError) as exc:
            raise ImportError(missing_backend_message(self.protocol, exc)) from None
        self._base = self._fs_class._strip_protocol(url).rstrip("/")
        self._lock = threading.Lock()
        self._backend: Optional[Backend] = None
        self._pid = -1
        self._stopped = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={redact_url(self.url)!r}, "
            f"storage_options={redact_options(self._options)!r})"
        )

    # -- backend ------------------------------------------------------------------
    def _get_backend(self) -> Backend:
        """The filesystem, made on first use and again in a forked child."""
        pid = os.getpid()
        if self._backend is None or self._pid != pid:
            fs = self._fs_class(skip_instance_cache=True, **self._options)
            self._backend = backend_for(fs)
            self._pid = pid
        return self._backend

    @property
    def fs(self) -> Any:
        """The fsspec filesystem this exporter writes with."""
        return self._get_backend().fs

    # -- naming ---------------------------------------------------------------------
    def path_for(self, profile: Profile) -> str:
        """Where ``profile`` is written (before any collision suffix), without scheme."""
        directory = fill_placeholders(self._base, profile)
        key = fill_placeholders(self.key_template, profile)
        return posixpath.join(directory, key) if directory else key

    def url_for(self, profile: Profile) -> str:
        """The full URL of ``profile``'s object (before any collision suffix)."""
        return str(self.fs.unstrip_protocol(self.path_for(profile)))

    # -- export ---------------------------------------------------------------------
    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        if self._stopped:
            _logger.warning("Exporter is shut down; %d profile(s) not exported.", len(profiles))
            return ProfileExportResult.FAILURE
        ok = True
        with self._lock:
            for profile in profiles:
                if profile.status is ProfileStatus.ERROR or not profile.data:
                    _logger.warning(
                        "Not exporting %s: the profiler failed (%s).",
                        profile.key,
                        profile.error or "no data",
                    )
                    continue
                try:
                    self.write(profile)
                except Exception as exc:  # noqa: BLE001 - reported, batch goes on
                    ok = False
                    _logger.error(
                        "Could not write %s to %s: %s", profile.key, redact_url(self.url), exc
                    )
        return ProfileExportResult.SUCCESS if ok else ProfileExportResult.FAILURE

    def write(self, profile: Profile) -> str:
        """Write one profile; returns the path actually written. Raises on failure."""
        backend = self._get_backend()
        path = self.path_for(profile)
        directory = posixpath.dirname(path)
        if self.create_container:
            backend.ensure_container(directory)
        metadata = profile_metadata(profile)
        candidate = path
        for attempt in range(_MAX_COLLISIONS + 1):
            try:
                backend.create(candidate, profile.data, profile.content_type, metadata)
                _logger.debug("Wrote %s (%d bytes).", candidate, len(profile.data))
                return candidate
            except FileExistsError:
                suffix = str(attempt + 1) if attempt < _MAX_COLLISIONS - 1 else secrets.token_hex(4)
                candidate = collision_key(path, suffix)
        raise FileExistsError(f"{path} and {_MAX_COLLISIONS} alternative names already exist")

    def shutdown(self) -> None:
        self._stopped = True
