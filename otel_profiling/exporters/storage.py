"""``FsspecProfileExporter``: one URL, any storage backend fsspec knows.

How an export is bounded: for an async filesystem (s3fs, gcsfs, adlfs) the
writes of a batch are coroutines gathered under one ``asyncio.wait_for`` set
to the export's deadline, so when it passes every request still running is
cancelled (its connection closed), whatever the backend does; a backend that
drips one byte a second cannot hold an export past its timeout. They run on
fsspec's I/O loop (one thread, shared; the exporter starts none of its own).
While the interpreter exits, when some Pythons refuse to start threads, they
run on an event loop on the calling thread instead, with a filesystem
instance of their own. A synchronous filesystem (local disk, memory) is
written by a capped set of writer threads (``pool.py``; on the calling thread
at exit), its deadline checked between calls; the same coroutines drive it,
without an event loop, since they never suspend there.
No lock is held across a call, and nothing per process survives a fork.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import posixpath
import secrets
import threading
import time
import traceback
import weakref
from typing import (
    Any,
    Awaitable,
    Callable,
    Coroutine,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    TypeVar,
)
from urllib.parse import quote

import fsspec

from otel_profiling import _threads
from otel_profiling._env import env_int
from otel_profiling._exit import exiting
from otel_profiling._fork import renew_after_fork
from otel_profiling._limits import ENV_MIN_EXPORT_TIMEOUT_MILLIS, MAX_EXPORT_TIMEOUT_MILLIS
from otel_profiling.environment_variables import (
    OTEL_EXPORTER_FSSPEC_PROFILES_TIMEOUT,
)
from otel_profiling.exporters.backends import (
    Backend,
    backend_for,
    check_target,
    missing_backend_message,
    normalize_scheme,
    prepare_options,
)
from otel_profiling.exporters.base import PerProfileExporter, has_payload
from otel_profiling.exporters.pool import WriterPool
from otel_profiling.exporters.retry import Backoff, is_transient, remedy_for
from otel_profiling.naming import (
    DEFAULT_KEY_TEMPLATE,
    PROFILE_ATTRIBUTES,
    PROFILE_FIELDS,
    ProfileNamer,
    check_placeholders,
    collision_key,
    fill_placeholders,
    is_known,
    known_placeholders,
    placeholders,
    validate_key_template,
)
from otel_profiling.profile import Profile, iso_millis
from otel_profiling.redact import (
    redact_options,
    redact_url,
    scrub,
    secret_values,
    url_credentials,
    url_userinfo,
)

_logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_EXPORT_TIMEOUT_MILLIS = 30_000
DEFAULT_MAX_CONCURRENCY = 8
_ENV_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")

_METADATA_BUDGET = 1800  # S3 allows 2 KB of user metadata; keep room for the keys' prefix
_MAX_COLLISIONS = 10
_CANCEL_GRACE_S = 2.0  # waited past a deadline for the cancelled requests to wind down
_CLOSE_TIMEOUT_S = 1.0
# URL schemes whose bucket is the host: user-info there can only be credentials
_BUCKET_SCHEMES = {"s3", "s3a", "gs", "gcs"}
# fsspec filesystems that cannot create objects (or not without overwriting)
_READ_ONLY_SCHEMES = {"http", "https", "github", "git", "zip", "tar", "libarchive", "reference"}


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; bytes the environment could not decode come back as they were."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _ascii(text: object, limit: int = 256) -> str:
    """S3 metadata must be printable ASCII: percent-encode the rest."""
    return quote(_utf8(str(text)), safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~")[:limit]


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
        name = "attr-" + quote(_utf8(str(key)), safe=".-_")[:100]
        text = _ascii(value)
        if used + len(name) + len(text) > _METADATA_BUDGET:
            meta["attributes-truncated"] = "true"
            break
        meta[name] = text
        used += len(name) + len(text)
    return meta


class _Attempt:
    """What one export call learned: which profiles were written, and why others were not.

    Writers on several threads report here; the lock guards only these fields.
    """

    __slots__ = ("written", "permanent", "given_up", "last_error", "_lock")

    def __init__(self) -> None:
        self.written: Set[int] = set()
        self.permanent = 0  # profiles that failed permanently (reported on their own)
        self.given_up: Optional[str] = None  # transient error after which retries stopped
        self.last_error: Optional[str] = None
        self._lock = threading.Lock()

    def wrote(self, profile: Profile) -> None:
        with self._lock:
            self.written.add(id(profile))

    def failed(self, message: str, permanent: bool, given_up: bool) -> None:
        with self._lock:
            self.last_error = message
            if permanent:
                self.permanent += 1
            if given_up:
                self.given_up = message

    def unsent(self, profiles: Sequence[Profile]) -> List[Profile]:
        with self._lock:
            return [p for p in profiles if id(p) not in self.written]


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """The default executor of a loop run on the calling thread: what the loop hands
    to it (DNS lookups) runs right there, so no thread is ever started."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(  # type: ignore[override]
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            future.set_exception(exc)
        return future


async def _until(work: Awaitable[T], deadline: float) -> T:
    """``work``, cancelled (mid-request) when ``deadline`` passes."""
    return await asyncio.wait_for(work, max(deadline - time.monotonic(), 0.0))


def _drive(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a synchronous backend's) to its end, loop-less."""
    try:
        work.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    work.close()
    raise RuntimeError("a synchronous storage backend awaited an event loop")


def _drop_frames(exc: BaseException) -> None:
    """Clear the finished frames a failed request's exceptions hold.

    Client libraries keep an error in a local of a frame its own traceback
    holds (s3fs's retry wrapper does), a reference cycle that keeps the
    request's frames, so its body and the profiles of the batch, alive until
    the next full garbage collection. With the backend down that is one body
    per try: cleared here, memory stays within the processor's byte bound.
    """
    seen: Set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips frames still running
        current = current.__cause__ or current.__context__


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class FsspecProfileExporter(PerProfileExporter):
    """Writes each profile to ``{url}/{kind}-{start_time}.{extension}``.

    ``url`` picks the backend by scheme (``s3://``, ``gs://``, ``az://``,
    ``file://``, ``memory://``, or a local path) and may contain placeholders
    such as ``{service.name}``. ``storage_options`` go to the fsspec
    filesystem (credentials, endpoint, ...); they are never logged. The bucket
    or directory is created on first use. An existing object is never
    overwritten: a clash gets a ``-1``, ``-2``... suffix.

    What can be checked without a request is checked here, with a
    ``ValueError`` naming the fix: credentials in the URL (refused: use the
    ``AWS_*`` variables or ``storage_options``), read-only schemes such as
    ``http://``, bytes that are not UTF-8, an invalid bucket name, a local
    path through a file or with a name too long, unknown placeholders, a key
    template that would leave the prefix.

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
        url, self.protocol = normalize_scheme(url)
        _check_url(url, self.protocol)
        known = _known_placeholders(url, key_template)
        check_placeholders(url, f"URL {redact_url(url)!r}", known)
        validate_key_template(key_template, known)
        self.url = url
        self.key_template = key_template
        self.namer = ProfileNamer(key_template)
        self.create_container = create_container
        if timeout_millis is None:
            timeout_millis = env_int(
                OTEL_EXPORTER_FSSPEC_PROFILES_TIMEOUT,
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
        self._options: Dict[str, Any] = prepare_options(
            self.protocol, storage_options or {}, self.timeout_millis / 1000
        )
        self._secrets = secret_values(self._options) + [
            v for v in (os.environ.get(name) for name in _ENV_SECRETS) if v and len(v) >= 4
        ]
        try:
            self._fs_class = fsspec.get_filesystem_class(self.protocol)
        except (ImportError, ValueError) as exc:
            raise ImportError(missing_backend_message(self.protocol, exc)) from None
        self._base = self._fs_class._strip_protocol(url).rstrip("/")
        check_target(self.protocol, self._base, key_template)
        self._stopped = False
        self._pool = WriterPool(self.max_concurrency, "export")
        self._renew()
        renew_after_fork(self, FsspecProfileExporter._renew)

    def _renew(self) -> None:
        """Per-process state: made here, and again in a forked child."""
        self._backend: Optional[Backend] = None
        self._pid = os.getpid()
        self._reported: Set[str] = set()  # permanent failures already logged, until a success
        self._missing: Set[str] = set()  # placeholders without a value, logged once each
        self._failing = False  # a transient failure was logged; quiet until a success
        # each profile's path, computed once (trace links, batching, every retry share it)
        self._paths: weakref.WeakKeyDictionary[Profile, str] = weakref.WeakKeyDictionary()
        self._paths_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={redact_url(self.url)!r}, "
            f"storage_options={redact_options(self._options)!r})"
        )

    @property
    def destination(self) -> str:
        """The URL: credentials are refused at construction, a secret query value is hidden
        (``?sig=***``): it names the spool's directory and is logged."""
        return redact_url(self.url)

    # -- backend ------------------------------------------------------------------
    def _get_backend(self) -> Backend:
        """The filesystem, made on first use and again in a forked child."""
        if self._backend is None or self._pid != os.getpid():
            fs = self._fs_class(skip_instance_cache=True, **self._options)
            self._backend = backend_for(fs)
            self._pid = os.getpid()
        return self._backend

    def _backend_on(self, loop: asyncio.AbstractEventLoop) -> Backend:
        """An async filesystem of its own, bound to ``loop`` (run on the calling thread)."""
        fs = self._fs_class(skip_instance_cache=True, asynchronous=True, loop=loop, **self._options)
        return backend_for(fs)

    @property
    def fs(self) -> Any:
        """The fsspec filesystem this exporter writes with."""
        return self._get_backend().fs

    # -- naming ---------------------------------------------------------------------
    def path_for(self, profile: Profile) -> str:
        """Where ``profile`` is written (before any collision suffix), without scheme.

        Computed once per profile: the URL put on spans when it starts is the
        one it is written to.
        """
        with self._paths_lock:
            path = self._paths.get(profile)
        if path is None:
            directory = fill_placeholders(self._base, profile, self._placeholder_missing)
            key = self.namer.key(profile, self._placeholder_missing)
            path = posixpath.join(directory, key) if directory else key
            with self._paths_lock:
                self._paths[profile] = path
        return path

    def url_for(self, profile: Profile) -> str:
        """The full URL of ``profile``'s object (before any collision suffix)."""
        path = self.path_for(profile)
        protocols = self._fs_class.protocol
        protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
        if any(path.startswith(f"{p}://") for p in protocols):
            return path
        return f"{protocols[0]}://{path}"

    def _placeholder_missing(self, name: str) -> None:
        if name not in self._missing:
            self._missing.add(name)
            _logger.warning(
                "Placeholder {%s} in %s has no value for this profile's resource; "
                "'unknown' is used. Set it in OTEL_RESOURCE_ATTRIBUTES.",
                name,
                redact_url(self.url),
            )

    # -- export ---------------------------------------------------------------------
    def export_unsent(
        self,
        profiles: Sequence[Profile],
        timeout_millis: Optional[float] = None,
        *,
        resend: bool = False,
    ) -> List[Profile]:
        """Write ``profiles`` (concurrently, with retries); return those not written.

        Returns by ``timeout_millis`` (at most the exporter's own timeout) even
        if the backend hangs; a write still running then counts as not written
        (a request to an async filesystem is cancelled; a blocking write keeps
        its writer thread until it returns). With ``resend``, an object already holding the
        same bytes at the profile's key counts as written (a re-send of a
        profile that did land). A profile without payload (status ``ERROR``) is
        logged and never written.
        """
        if self._stopped:
            _logger.warning("Exporter is shut down; %d profile(s) not exported.", len(profiles))
            return list(profiles)
        todo: List[Profile] = []
        for profile in profiles:
            if has_payload(profile):
                todo.append(profile)
            else:
                _logger.warning(
                    "Not exporting %s: the profiler failed (%s).",
                    profile.key,
                    profile.error or "no data",
                )
        if not todo:
            return []
        timeout = self.timeout_millis
        if timeout_millis is not None:
            timeout = min(timeout, max(timeout_millis, 0.0))
        deadline = time.monotonic() + timeout / 1000
        attempt = _Attempt()
        try:
            self._run(
                lambda backend: self._write_batch(backend, todo, deadline, resend, attempt),
                deadline,
            )
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError) as exc:
            _drop_frames(exc)  # the writes still running were cancelled; reported below
        except Exception as exc:  # noqa: BLE001 - making the filesystem failed, for one
            _drop_frames(exc)
            self._failed(exc, attempt, len(todo))
        unsent = attempt.unsent(todo)
        self._report_unsent(len(unsent) - attempt.permanent, attempt, timeout)
        return unsent

    def write(self, profile: Profile, *, resend: bool = False) -> str:
        """Write one profile now, without retries; returns the path written. Raises on failure."""
        deadline = time.monotonic() + self.timeout_millis / 1000
        return self._run(lambda backend: self._write(backend, profile, resend), deadline)

    def _run(self, work: Callable[[Backend], Coroutine[Any, Any, T]], deadline: float) -> T:
        """Run ``work`` until it ends or ``deadline`` passes, and return its result.

        A synchronous filesystem's coroutines are driven on the calling thread
        (which hands blocking writes to the writer threads). An async one runs
        on fsspec's I/O loop, or on a loop of its own on the calling thread
        once the interpreter exits.
        """
        if not getattr(self._fs_class, "async_impl", False):
            return _drive(work(self._get_backend()))
        if not exiting():
            backend = self._get_backend()
            future = asyncio.run_coroutine_threadsafe(
                _until(work(backend), deadline), backend.fs.loop
            )
            try:
                return future.result(max(deadline - time.monotonic(), 0.0) + _CANCEL_GRACE_S)
            except concurrent.futures.TimeoutError:
                future.cancel()  # the loop itself is stuck; cancel the task when it can
                raise
        if _loop_running_here():  # the caller runs asyncio: a second loop cannot run here
            return self._run_on_helper_thread(work, deadline)
        return self._run_here(work, deadline)

    def _run_here(self, work: Callable[[Backend], Coroutine[Any, Any, T]], deadline: float) -> T:
        """On an event loop of its own on this thread, with a filesystem instance bound to it."""
        loop = asyncio.new_event_loop()
        loop.set_default_executor(_InlineExecutor())
        try:
            backend = self._backend_on(loop)
            try:
                return loop.run_until_complete(_until(work(backend), deadline))
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(asyncio.wait_for(backend.aclose(), _CLOSE_TIMEOUT_S))
        finally:
            loop.close()

    def _run_on_helper_thread(
        self, work: Callable[[Backend], Coroutine[Any, Any, T]], deadline: float
    ) -> T:
        outcome: Dict[str, Any] = {}
        finished = threading.Event()

        def run() -> None:
            try:
                outcome["result"] = self._run_here(work, deadline)
            except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
                outcome["error"] = exc
            finally:
                finished.set()

        _threads.start_daemon(run, "export")
        if not finished.wait(max(deadline - time.monotonic(), 0.0) + _CANCEL_GRACE_S):
            raise concurrent.futures.TimeoutError()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]  # type: ignore[no-any-return]

    async def _write_batch(
        self,
        backend: Backend,
        todo: List[Profile],
        deadline: float,
        resend: bool,
        attempt: _Attempt,
    ) -> None:
        """Every profile, ``max_concurrency`` at a time, until ``deadline`` (the caller's
        ``_run`` cancels what is still running then).

        Each container (bucket, directory) is made once first, so concurrent
        writes do not race to create it. Profiles that map to the same key are
        written in order by one task, so the first keeps the plain key and the
        next ones get the suffixes.
        """
        groups: Dict[str, List[Profile]] = {}
        for profile in todo:
            groups.setdefault(self.path_for(profile), []).append(profile)
        if self.create_container:
            for container in dict.fromkeys(backend.container(path) for path in groups):
                with contextlib.suppress(Exception):  # retried and reported per profile
                    await backend.ensure_container(container)
        if not backend.is_async:
            self._write_blocking(backend, list(groups.values()), deadline, resend, attempt)
            return
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one_group(group: List[Profile]) -> None:
            async with gate:
                for profile in group:
                    await self._deliver(backend, profile, deadline, resend, attempt)

        await asyncio.gather(*(one_group(g) for g in groups.values()), return_exceptions=True)

    def _write_blocking(
        self,
        backend: Backend,
        groups: List[List[Profile]],
        deadline: float,
        resend: bool,
        attempt: _Attempt,
    ) -> None:
        """Blocking writes: on the writer threads, ``max_concurrency`` at a time, until
        ``deadline``; on this thread alone for one group, or once the interpreter exits."""

        def run(group: List[Profile]) -> None:
            for profile in group:
                if time.monotonic() >= deadline:
                    return
                _drive(self._deliver(backend, profile, deadline, resend, attempt))

        if len(groups) == 1 or exiting():
            for group in groups:
                run(group)
            return
        left = [len(groups)]
        count = threading.Lock()
        finished = threading.Event()

        def job(group: List[Profile]) -> Callable[[], None]:
            def go() -> None:
                try:
                    run(group)
                finally:
                    with count:
                        left[0] -= 1
                        if not left[0]:
                            finished.set()

            return go

        for group in groups:
            try:
                self._pool.submit(job(group))
            except RuntimeError:  # no thread may start now: write it here
                job(group)()
        finished.wait(max(deadline - time.monotonic(), 0.0))

    async def _deliver(
        self, backend: Backend, profile: Profile, deadline: float, resend: bool, attempt: _Attempt
    ) -> None:
        """One profile, retried on transient failures until ``deadline``."""
        backoff = Backoff(deadline)
        while True:
            try:
                path = await self._write(backend, profile, resend)
            except Exception as exc:  # noqa: BLE001 - classified and reported
                message = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
                _drop_frames(exc)
                if not is_transient(exc):
                    attempt.failed(message, permanent=True, given_up=False)
                    self._report_permanent(exc, message)
                    return
                _logger.debug("Transient failure writing %s: %s", self.path_for(profile), message)
                delay = backoff.next_delay()
                if delay is None:
                    tries = f"{message} (after {backoff.attempts} attempt(s))"
                    attempt.failed(tries, permanent=False, given_up=True)
                    return
                attempt.failed(message, permanent=False, given_up=False)
                await backend.sleep(delay)
                continue
            attempt.wrote(profile)
            self._succeeded()
            _logger.debug("Wrote %s (%d bytes).", path, len(profile.data))
            return

    async def _write(self, backend: Backend, profile: Profile, resend: bool) -> str:
        """One try at writing ``profile``; returns the path written (a suffix on a clash)."""
        path = self.path_for(profile)
        container = backend.container(path)
        if self.create_container:
            await backend.ensure_container(container)
        metadata = profile_metadata(profile)
        candidate = path
        for attempt in range(_MAX_COLLISIONS + 1):
            try:
                await self._create(backend, container, candidate, profile, metadata)
                return candidate
            except FileExistsError:
                if resend and await backend.holds(candidate, profile.data):
                    return candidate
                suffix = str(attempt + 1) if attempt < _MAX_COLLISIONS - 1 else secrets.token_hex(4)
                candidate = collision_key(path, suffix)
        raise FileExistsError(f"{path} and {_MAX_COLLISIONS} alternative names already exist")

    async def _create(
        self,
        backend: Backend,
        container: str,
        path: str,
        profile: Profile,
        metadata: Dict[str, str],
    ) -> None:
        try:
            await backend.create(path, profile.data, profile.content_type, metadata)
        except FileNotFoundError:
            if not self.create_container:
                raise
            # the bucket or directory vanished since it was made (deleted, server reset)
            backend.forget_container(container)
            await backend.ensure_container(container)
            await backend.create(path, profile.data, profile.content_type, metadata)

    # -- reporting --------------------------------------------------------------------
    def _succeeded(self) -> None:
        if self._failing:
            _logger.info("Writing profiles to %s works again.", redact_url(self.url))
        self._failing = False
        self._reported.clear()  # a later failure is news again

    def _failed(self, exc: Exception, attempt: _Attempt, count: int) -> None:
        """The export could not start (the filesystem could not be made, ...)."""
        message = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
        if is_transient(exc):
            attempt.failed(message, permanent=False, given_up=True)
        else:
            for _ in range(count):
                attempt.failed(message, permanent=True, given_up=False)
            self._report_permanent(exc, message)

    def _report_unsent(self, count: int, attempt: _Attempt, timeout_millis: float) -> None:
        """One warning when transient failures start; debug lines while they last."""
        if count <= 0:
            return
        reason = attempt.given_up or (
            f"no complete answer within {timeout_millis / 1000:.1f} s"
            + (f" (last error: {attempt.last_error})" if attempt.last_error else "")
        )
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        _logger.log(
            level, "Could not write %d profile(s) to %s: %s", count, redact_url(self.url), reason
        )

    def _report_permanent(self, exc: BaseException, message: str) -> None:
        remedy = remedy_for(exc)
        signature = f"{type(exc).__name__}:{remedy}"
        if signature in self._reported:
            return
        self._reported.add(signature)
        _logger.error(
            "Cannot write profiles to %s: %s. Retrying will not fix this, so it is not "
            "retried. Fix: %s.",
            redact_url(self.url),
            message,
            remedy,
        )

    def shutdown(self) -> None:
        self._stopped = True
        self._pool.close()


def _known_placeholders(url: str, key_template: str) -> List[str]:
    """Names placeholders may use: profile fields and attributes, the resource's attributes.

    The resource is the one an agent gets by default: the SDK tracer provider's
    when one is set, and ``Resource.create()`` with ``host.name``. It is only
    looked at when a placeholder needs it.
    """
    fixed = set(PROFILE_FIELDS) | set(PROFILE_ATTRIBUTES)
    try:
        used = set(placeholders(url)) | set(placeholders(key_template))
    except ValueError:
        used = set()  # the syntax error is reported by the caller
    if all(is_known(name, fixed) for name in used):
        return sorted(fixed)
    from otel_profiling.resource import default_resource, resource_from_env

    keys = set(default_resource().attributes) | set(resource_from_env().attributes)
    return known_placeholders(keys)


def _check_url(url: str, protocol: str) -> None:
    """What is wrong with ``url`` whatever it will be used for; the error shows no secret."""
    shown = redact_url(url)
    try:
        url.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"The URL {shown!r} holds bytes that are not UTF-8 (at position {exc.start}): "
            "write it in UTF-8."
        ) from None
    if url_credentials(url) or (protocol in _BUCKET_SCHEMES and url_userinfo(url)):
        raise ValueError(
            f"Credentials in the URL are refused ({shown}): they would show in logs, "
            "object names and metadata. Give them as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            "(or the backend's usual variables), or as storage_options such as "
            "{'key': ..., 'secret': ...}."
        )
    if protocol in _READ_ONLY_SCHEMES:
        raise ValueError(
            f"{protocol}:// URLs cannot receive profiles ({shown}): fsspec's {protocol} "
            "filesystem cannot create objects without overwriting. For an S3-compatible "
            "server use s3://bucket/prefix with endpoint_url (or AWS_ENDPOINT_URL); for an "
            "OpenTelemetry Collector use the OTLP exporter (OTEL_PROFILES_EXPORTER=otlp)."
        )
