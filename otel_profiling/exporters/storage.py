"""``FsspecProfileExporter``: one URL, any storage backend fsspec knows."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import posixpath
import secrets
import threading
import time
from typing import Any, Deque, Dict, List, Mapping, Optional, Sequence, Set
from urllib.parse import quote

import fsspec
import fsspec.asyn
from fsspec.core import split_protocol

from otel_profiling import _threads
from otel_profiling._env import env_int
from otel_profiling._limits import ENV_MIN_EXPORT_TIMEOUT_MILLIS, MAX_EXPORT_TIMEOUT_MILLIS
from otel_profiling.exporters.backends import (
    Backend,
    backend_for,
    missing_backend_message,
    prepare_options,
)
from otel_profiling.exporters.base import ProfileExporter, ProfileExportResult
from otel_profiling.exporters.naming import (
    DEFAULT_KEY_TEMPLATE,
    collision_key,
    fill_placeholders,
    validate_key_template,
)
from otel_profiling.exporters.retry import Backoff, is_transient, remedy_for
from otel_profiling.profile import Profile, ProfileStatus, iso_millis
from otel_profiling.redact import redact_options, redact_url, scrub, secret_values

_logger = logging.getLogger(__name__)

DEFAULT_EXPORT_TIMEOUT_MILLIS = 30_000
DEFAULT_MAX_CONCURRENCY = 8
_ENV_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")

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

    A batch is uploaded with up to ``max_concurrency`` writes at a time.
    Transient failures are retried with exponential backoff and jitter until
    ``timeout_millis`` (``OTEL_EXPORTER_FSSPEC_PROFILES_TIMEOUT``, default 30 s)
    has passed; permanent ones are logged once with their remedy. The
    timeout is enforced: ``export`` returns by then whatever the backend does,
    and reports what it could not send (see ``export_unsent``).
    """

    def __init__(
        self,
        url: str,
        storage_options: Optional[Mapping[str, Any]] = None,
        *,
        key_template: str = DEFAULT_KEY_TEMPLATE,
        create_container: bool = True,
        timeout_millis: Optional[float] = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
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
        if timeout_millis is None:
            timeout_millis = env_int(
                "OTEL_EXPORTER_FSSPEC_PROFILES_TIMEOUT",
                DEFAULT_EXPORT_TIMEOUT_MILLIS,
                ENV_MIN_EXPORT_TIMEOUT_MILLIS,
                maximum=MAX_EXPORT_TIMEOUT_MILLIS,
                unit="ms",
            )
        if not 0 < timeout_millis <= MAX_EXPORT_TIMEOUT_MILLIS:  # also refuses nan
            raise ValueError(
                f"timeout_millis must be > 0 and <= {MAX_EXPORT_TIMEOUT_MILLIS}, "
                f"got {timeout_millis}."
            )
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}.")
        self.timeout_millis = float(timeout_millis)
        self.max_concurrency = int(max_concurrency)
        protocol, _ = split_protocol(url)
        self.protocol = protocol or "file"
        self._options: Dict[str, Any] = prepare_options(
            self.protocol, storage_options or {}, self.timeout_millis / 1000
        )
        self._secrets = secret_values(self._options) + [
            v for v in (os.environ.get(name) for name in _ENV_SECRETS) if v and len(v) >= 4
        ]
        self._reported: Set[str] = set()
        self._transient_errors: List[str] = []
        self._permanent_count = 0
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

    @property
    def destination(self) -> str:
        return redact_url(self.url)

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
        unsent = self.export_unsent(profiles)
        return ProfileExportResult.FAILURE if unsent else ProfileExportResult.SUCCESS

    def export_unsent(
        self,
        profiles: Sequence[Profile],
        timeout_millis: Optional[float] = None,
        *,
        resend: bool = False,
    ) -> List[Profile]:
        """Write ``profiles`` (concurrently, with retries); return those not written.

        Returns by ``timeout_millis`` (at most the exporter's own timeout) even
        if the backend hangs; a write still running then counts as not written.
        With ``resend``, an object already holding the same bytes at the
        profile's key counts as written (a re-send of a profile that did land).
        """
        if self._stopped:
            _logger.warning("Exporter is shut down; %d profile(s) not exported.", len(profiles))
            return list(profiles)
        timeout = self.timeout_millis
        if timeout_millis is not None:
            timeout = min(timeout, max(timeout_millis, 0.0))
        deadline = time.monotonic() + timeout / 1000
        todo: List[Profile] = []
        for profile in profiles:
            if profile.status is ProfileStatus.ERROR or not profile.data:
                _logger.warning(
                    "Not exporting %s: the profiler failed (%s).",
                    profile.key,
                    profile.error or "no data",
                )
            else:
                todo.append(profile)
        if not todo:
            return []
        with self._lock:
            self._transient_errors = []
            self._permanent_count = 0
            done = self._write_all(todo, deadline, resend)
            unsent = [p for p in todo if id(p) not in done]
            if len(unsent) > self._permanent_count:  # permanent ones were reported already
                reason = (self._transient_errors or [f"no answer within {timeout / 1000:.1f} s"])[
                    -1
                ]
                _logger.warning(
                    "Could not write %d profile(s) to %s: %s",
                    len(unsent) - self._permanent_count,
                    redact_url(self.url),
                    reason,
                )
        return unsent

    def _write_all(self, todo: List[Profile], deadline: float, resend: bool) -> Set[int]:
        """A concurrent first try on the event loop (if any), then retries on threads."""
        done: Set[int] = set()
        backend = self._get_backend()
        if backend.create_async is not None and not resend and len(todo) > 1:
            firsts: Dict[str, Profile] = {}
            for profile in todo:  # profiles sharing a key are written in order, below
                firsts.setdefault(self.path_for(profile), profile)
            if all(backend.ready(posixpath.dirname(path)) for path in firsts):
                done = self._first_try_on_loop(
                    backend, list(firsts.values()), list(firsts), deadline
                )
        rest = [p for p in todo if id(p) not in done]
        if rest and time.monotonic() < deadline:
            done |= self._write_on_threads(rest, deadline, resend)
        return done

    def _first_try_on_loop(
        self, backend: Backend, todo: List[Profile], paths: List[str], deadline: float
    ) -> Set[int]:
        """One try per profile, gathered on the filesystem's loop (as ``fs.pipe`` does).

        Whatever fails here (a clash, a transient error...) goes through the
        retrying path; on timeout, what already succeeded still counts.
        """
        done: Set[int] = set()

        async def one(profile: Profile, path: str, gate: asyncio.Semaphore) -> None:
            async with gate:
                metadata = profile_metadata(profile)
                await backend.create_async(path, profile.data, profile.content_type, metadata)
                done.add(id(profile))

        async def batch() -> None:
            gate = asyncio.Semaphore(self.max_concurrency)
            await asyncio.gather(
                *(one(p, path, gate) for p, path in zip(todo, paths, strict=True)),
                return_exceptions=True,
            )

        try:
            fsspec.asyn.sync(backend.fs.loop, batch, timeout=max(deadline - time.monotonic(), 0))
        except Exception as exc:  # noqa: BLE001 - timeout: the rest is retried or reported
            _logger.debug("Concurrent upload stopped: %s", scrub(str(exc), self._secrets))
        return set(done)

    def _write_on_threads(self, todo: List[Profile], deadline: float, resend: bool) -> Set[int]:
        """Write from daemon threads: a hung call cannot hold the caller past ``deadline``.

        Profiles that map to the same key go to one thread, in order, so the
        first keeps the plain key and the next ones get the suffixes.
        """
        groups: Dict[str, List[Profile]] = {}
        for profile in todo:
            groups.setdefault(self.path_for(profile), []).append(profile)
        pending: Deque[List[Profile]] = collections.deque(groups.values())
        done: Set[int] = set()
        finished = threading.Event()
        state = {"running": min(self.max_concurrency, len(pending))}
        guard = threading.Lock()

        def worker() -> None:
            try:
                while True:
                    with guard:
                        if not pending or time.monotonic() >= deadline:
                            return
                        group = pending.popleft()
                    for profile in group:
                        if time.monotonic() >= deadline:
                            return
                        if self._deliver(profile, deadline, resend):
                            with guard:
                                done.add(id(profile))
            finally:
                with guard:
                    state["running"] -= 1
                    if state["running"] == 0:
                        finished.set()

        for _ in range(state["running"]):
            _threads.start_daemon(worker, "export")
        finished.wait(max(deadline - time.monotonic(), 0) + 0.05)
        with guard:
            return set(done)

    def _deliver(self, profile: Profile, deadline: float, resend: bool) -> bool:
        """One profile, retried on transient failures until ``deadline``."""
        backoff = Backoff(deadline)
        while True:
            try:
                path = self.write(profile, resend=resend)
            except Exception as exc:  # noqa: BLE001 - classified and reported
                message = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
                if not is_transient(exc):
                    self._permanent_count += 1
                    self._report_permanent(profile, exc, message)
                    return False
                _logger.debug("Transient failure writing %s: %s", profile.key, message)
                if not backoff.wait():
                    self._transient_errors.append(
                        f"{message} (after {backoff.attempts} attempt(s))"
                    )
                    return False
                continue
            if self._reported:
                self._reported.clear()  # a later failure is news again
            _logger.debug("Wrote %s.", path)
            return True

    def _report_permanent(self, profile: Profile, exc: BaseException, message: str) -> None:
        remedy = remedy_for(exc)
        signature = f"{type(exc).__name__}:{remedy}"
        if signature in self._reported:
            return
        self._reported.add(signature)
        _logger.error(
            "Cannot write profiles to %s: %s. Retrying will not fix this, so it is not "
            "retried now. Fix: %s. Profiles not sent are kept in the spool (when enabled) "
            "and re-sent later.",
            redact_url(self.url),
            message,
            remedy,
        )

    def write(self, profile: Profile, *, resend: bool = False) -> str:
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
                self._create(backend, directory, candidate, profile, metadata)
                _logger.debug("Wrote %s (%d bytes).", candidate, len(profile.data))
                return candidate
            except FileExistsError:
                if resend and backend.holds(candidate, profile.data):
                    return candidate
                suffix = str(attempt + 1) if attempt < _MAX_COLLISIONS - 1 else secrets.token_hex(4)
                candidate = collision_key(path, suffix)
        raise FileExistsError(f"{path} and {_MAX_COLLISIONS} alternative names already exist")

    def _create(
        self,
        backend: Backend,
        directory: str,
        path: str,
        profile: Profile,
        metadata: Dict[str, str],
    ) -> None:
        try:
            backend.create(path, profile.data, profile.content_type, metadata)
        except FileNotFoundError:
            if not self.create_container:
                raise
            # the bucket or directory vanished since it was made (deleted, server reset)
            backend.forget_container(directory)
            backend.ensure_container(directory)
            backend.create(path, profile.data, profile.content_type, metadata)

    def shutdown(self) -> None:
        self._stopped = True
