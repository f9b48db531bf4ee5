"""``HttpTrigger``: profiles on request over HTTP, in the spirit of Go's ``net/http/pprof``.

The trigger itself: its lifecycle (serve, stop, after a fork) and the
profiling actions a request asks for (a timed profile, a snapshot, an open
window). The endpoints are in ``http_routes``, the bounded server in
``http_server``, the token rules in ``http_auth``. Every profile is also
exported like any other. Standard library server on a daemon thread,
loopback by default.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional, Tuple

from otel_profiling import _threads
from otel_profiling._limits import MAX_WINDOW_SECONDS, check_number
from otel_profiling.process_context import HTTP_ATTRIBUTE
from otel_profiling.profile import Profile, ProfileKind
from otel_profiling.profilers.base import Profiler, ProfilerBusyError
from otel_profiling.triggers._windows import STOP_ELAPSED, STOP_SHUTDOWN, STOP_SNAPSHOT
from otel_profiling.triggers.base import PROFILER_FOR_KIND, Trigger, TriggerTarget
from otel_profiling.triggers.http_auth import (
    HOST_HINT,
    MIN_PUBLIC_TOKEN_LENGTH,
    HttpError,
    bind_host,
    check_token,
    is_loopback,
    token_matches,
)
from otel_profiling.triggers.http_routes import PREFIX, ROUTES, Handler, path_of
from otel_profiling.triggers.http_server import (
    HEAD_TIMEOUT,
    MAX_CONCURRENT_REQUESTS,
    MAX_CONNECTIONS,
    WRITE_TIMEOUT,
    ProfilingServer,
)

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_MAX_WINDOW_SECONDS",
    "HEAD_TIMEOUT",
    "MAX_CONCURRENT_REQUESTS",
    "MAX_CONNECTIONS",
    "MIN_PUBLIC_TOKEN_LENGTH",
    "PREFIX",
    "ROUTES",
    "WRITE_TIMEOUT",
    "HttpError",
    "HttpTrigger",
    "is_loopback",
]

_logger = logging.getLogger(__name__)

DEFAULT_MAX_SECONDS = 300.0
DEFAULT_MAX_WINDOW_SECONDS = MAX_WINDOW_SECONDS
SHUTDOWN_WAIT = 10.0


class HttpTrigger(Trigger):
    """Serves ``/debug/profile/...`` on ``host:port`` (``port=0``: any free port; see ``.port``).

    With ``token``, every request must carry ``Authorization: Bearer <token>``
    (compared in constant time); a token is printable ASCII without spaces.
    Binding to anything but loopback without a token of at least 16
    characters is refused at construction. ``seconds`` defaults to 30 and is
    bounded by ``max_seconds``; an open-ended window ends by itself after
    ``max_window_seconds`` (both at most an hour). Status codes: 200 profile
    or JSON, 400 bad parameter, 401 bad or missing token, 404 unknown path or
    no profiler of that kind, 405 wrong method, 409 a profile of that kind is
    already running (or none to stop), 500 the profiler failed, 503 shutting
    down, too many connections or too many profiling requests. A port that
    cannot be bound raises ``OSError`` when the agent starts, or, with
    ``raise_bind_errors=False``, is logged and leaves the trigger off.
    """

    name = "http"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: Optional[str] = None,
        *,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        max_window_seconds: float = DEFAULT_MAX_WINDOW_SECONDS,
        raise_bind_errors: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(
                f"HttpTrigger port={port!r}: use an integer 0-65535 (0: any free port)."
            )
        try:
            host = bind_host(host)
        except ValueError as exc:
            raise ValueError(
                f"HttpTrigger host={host!r} is not a host: {exc}; {HOST_HINT}, "
                "and the port as port=..."
            ) from None
        check_token(host, token)
        self.host = host
        self.max_seconds = check_number(
            "HttpTrigger max_seconds", max_seconds, maximum=MAX_WINDOW_SECONDS
        )
        self.max_window_seconds = check_number(
            "HttpTrigger max_window_seconds", max_window_seconds, maximum=MAX_WINDOW_SECONDS
        )
        self._port = port
        self._token = token.encode() if token is not None else None
        self.raise_bind_errors = raise_bind_errors
        self._server: Optional[ProfilingServer] = None
        self._thread: Optional[threading.Thread] = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._open: Dict[ProfileKind, Tuple[Profile, threading.Event]] = {}

    @property
    def port(self) -> int:
        """The port actually bound once started (the configured one before)."""
        server = self._server
        return int(server.server_address[1]) if server is not None else self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PREFIX}"

    # -- lifecycle ------------------------------------------------------------------
    def install(self, target: TriggerTarget) -> None:
        super().install(target)
        self._closing = threading.Event()
        try:
            server = ProfilingServer(self.host, self._port, Handler, self)
        except OSError as exc:
            message = (
                f"HttpTrigger cannot listen on {self.host}:{self._port}: {exc.strerror or exc}. "
                "Choose another port (port=0 picks a free one) or host."
            )
            if self.raise_bind_errors:
                raise OSError(exc.errno, message) from None
            _logger.error("%s The HTTP trigger is off.", message)
            return
        self._server = server
        self._thread = _threads.start_daemon(server.serve_forever, "http")
        _logger.info("Profiling HTTP endpoint at %s", self.url)

    def uninstall(self) -> None:
        """Stop serving; requests in progress end their profiles now and answer (bounded)."""
        server, self._server = self._server, None
        self._closing.set()
        if server is not None:
            server.shutdown()
            server.server_close()
            server.wait_idle(SHUTDOWN_WAIT)
        target = self._target
        with self._lock:
            windows, self._open = list(self._open.values()), {}
        for profile, closed in windows:
            closed.set()
            if target is not None:
                target.stop_profile(profile, STOP_SHUTDOWN)
        self._thread = None
        super().uninstall()

    def after_fork(self) -> None:
        """A forked child serves on a free port of its own when ``port=0``, else not at all.

        A fixed port belongs to the parent. The child's port is published in
        its process context (``otel-profiling trigger --list`` shows it).
        """
        server, self._server = self._server, None
        self._thread = None
        self._lock = threading.Lock()
        self._open = {}
        if server is not None:
            server.socket.close()
            if self._port == 0 and self._target is not None:
                self.install(self._target)
            else:
                _logger.info("HttpTrigger is not served in forked children (the parent keeps it).")

    def context_attributes(self) -> Dict[str, Any]:
        return {HTTP_ATTRIBUTE: self.url} if self._server is not None else {}

    # -- requests -------------------------------------------------------------------
    def authorized(self, header: Optional[str]) -> bool:
        """Whether an ``Authorization`` header carries this trigger's token."""
        return token_matches(self._token, header)

    def profiler_for(self, kind: ProfileKind) -> Profiler:
        target = self._target
        if target is None:
            raise HttpError(503, "the profiling agent is shutting down")
        for profiler in target.profilers:
            if profiler.kind is kind:
                return profiler
        raise HttpError(
            404,
            f"no {kind.value} profiler is registered with this HttpTrigger: register one, "
            f"e.g. agent.register(HttpTrigger(...), {PROFILER_FOR_KIND[kind]})",
        )

    def _start(self, profiler: Profiler, reason: str) -> Profile:
        target = self._target
        if target is None:
            raise HttpError(503, "the profiling agent is shutting down")
        try:
            return target.start_profiler(profiler, reason)
        except ProfilerBusyError as exc:
            raise HttpError(
                409, f"a {profiler.kind.value} profile is already running: {exc}"
            ) from None
        except RuntimeError as exc:
            if "shut down" in str(exc):
                raise HttpError(503, "the profiling agent is shut down") from None
            raise HttpError(500, f"{profiler!r} failed to start: {exc}") from None
        except Exception as exc:
            raise HttpError(500, f"{profiler!r} failed to start: {exc}") from None

    def _finish(self, profile: Profile, reason: str) -> Profile:
        target = self._target
        if target is not None:
            target.stop_profile(profile, reason)
        if not profile.ended:  # cannot normally happen: the agent ends what it started
            raise HttpError(500, "the profile did not end")
        return profile

    def key_for(self, profile: Profile) -> str:
        """The name the agent's exporter stores ``profile`` under."""
        target = self._target
        return target.key_for(profile) if target is not None else profile.key

    def timed(self, kind: ProfileKind, seconds: float, reason: str) -> Profile:
        """Profile for ``seconds`` (a snapshot at once); the request waits for it."""
        profile = self._start(self.profiler_for(kind), reason)
        if kind is ProfileKind.HEAP_SNAPSHOT:
            return self._finish(profile, STOP_SNAPSHOT)
        interrupted = self._closing.wait(seconds)
        return self._finish(profile, STOP_SHUTDOWN if interrupted else STOP_ELAPSED)

    def open_window(self, kind: ProfileKind, reason: str) -> Profile:
        profiler = self.profiler_for(kind)
        with self._lock:
            if kind in self._open:
                raise HttpError(409, f"a {kind.value} window is already open; POST .../stop first")
            profile = self._start(profiler, reason)
            closed = threading.Event()
            self._open[kind] = (profile, closed)
        _threads.start_daemon(lambda: self._window_limit(kind, closed), "http-window")
        return profile

    def _window_limit(self, kind: ProfileKind, closed: threading.Event) -> None:
        """End a window nobody stopped; exits as soon as the window is closed otherwise."""
        if closed.wait(self.max_window_seconds):
            return
        with self._lock:
            entry = self._open.get(kind)
            if entry is None or entry[1] is not closed:
                return
            del self._open[kind]
        profile = entry[0]
        _logger.warning(
            "%s window opened over HTTP ended after max_window_seconds=%g without a stop.",
            kind.value,
            self.max_window_seconds,
        )
        self._finish(profile, "max_window_seconds reached")

    def close_window(self, kind: ProfileKind) -> Profile:
        self.profiler_for(kind)
        with self._lock:
            entry = self._open.pop(kind, None)
        if entry is None:
            raise HttpError(
                409, f"no {kind.value} window is open: POST {PREFIX}/{path_of(kind)}/start first"
            )
        profile, closed = entry
        closed.set()
        return self._finish(profile, "stopped over HTTP")

    def __repr__(self) -> str:
        token = "***" if self._token is not None else "None"
        return f"HttpTrigger(host={self.host!r}, port={self.port}, token={token})"
