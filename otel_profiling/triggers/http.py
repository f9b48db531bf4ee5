"""``HttpTrigger``: profiles on request over HTTP, in the spirit of Go's ``net/http/pprof``.

Endpoints (under ``/debug/profile``), routed to the registered profiler of
the matching kind:

- ``GET /cpu?seconds=N``, ``GET /heap?seconds=N``: profile for N seconds and
  return the profile; ``GET /snapshot``: take a heap snapshot and return it.
- ``POST /cpu/start`` / ``POST /cpu/stop`` (and ``/heap/...``): an
  open-ended window; ``stop`` returns the profile.

Go's ``net/http/pprof`` paths, so ``go tool pprof http://host:port/debug/pprof/profile``,
the Collector's ``pprofreceiver`` and Parca-style scrapers pull profiles with no code:

- ``GET /debug/pprof/profile?seconds=N``: a CPU profile as gzipped pprof;
- ``GET /debug/pprof/heap?seconds=N``: a heap profile as gzipped pprof (the
  memory allocated during the N seconds and still alive: tracemalloc sees
  only what is allocated while it traces).

Every profile is also exported like any other. Standard library server on a
daemon thread, one library thread per connection, loopback by default.

A client that can reach the port cannot lock authorised users out: the whole
request head must arrive within ``HEAD_TIMEOUT`` seconds (a per-read timeout
alone lets a client drip one header line at a time for as long as it likes),
connections are capped at ``MAX_CONNECTIONS``, and only authorised requests
take one of the ``MAX_CONCURRENT_REQUESTS`` profiling slots.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import ipaddress
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from otel_profiling import _threads
from otel_profiling._limits import MAX_WINDOW_SECONDS, check_number
from otel_profiling.process_context import HTTP_ATTRIBUTE
from otel_profiling.profile import Profile, ProfileKind, ProfileStatus
from otel_profiling.profilers.base import Profiler, ProfilerBusyError
from otel_profiling.triggers._windows import STOP_ELAPSED, STOP_SHUTDOWN, STOP_SNAPSHOT
from otel_profiling.triggers.base import Trigger, TriggerTarget

_logger = logging.getLogger(__name__)

PREFIX = "/debug/profile"
PPROF_PREFIX = "/debug/pprof"
_PPROF_PATHS: Dict[str, ProfileKind] = {
    "profile": ProfileKind.CPU_PROFILE,
    "heap": ProfileKind.HEAP_PROFILE,
}
DEFAULT_MAX_SECONDS = 300.0
DEFAULT_SECONDS = 30.0
DEFAULT_MAX_WINDOW_SECONDS = MAX_WINDOW_SECONDS
MAX_CONCURRENT_REQUESTS = 8
"""Authorised profiling requests served at once."""
MAX_CONNECTIONS = 32
"""Connections served at once, authorised or not (each on a library thread)."""
HEAD_TIMEOUT = 5.0
"""Seconds for a client to send its whole request line and headers."""
WRITE_TIMEOUT = 30.0
"""Seconds one write of a response may block on a client that does not read."""
MIN_PUBLIC_TOKEN_LENGTH = 16
"""Shortest token accepted on an address other than loopback."""
SHUTDOWN_WAIT = 10.0

_PATHS: Dict[str, ProfileKind] = {
    "cpu": ProfileKind.CPU_PROFILE,
    "heap": ProfileKind.HEAP_PROFILE,
    "snapshot": ProfileKind.HEAP_SNAPSHOT,
}
_SUGGESTION = {
    ProfileKind.CPU_PROFILE: "CpuProfiler()",
    ProfileKind.HEAP_PROFILE: "HeapProfiler()",
    ProfileKind.HEAP_SNAPSHOT: "HeapSnapshotProfiler()",
}


class HttpError(Exception):
    """An error response: status code and a message for the JSON body."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    down, too many connections or too many profiling requests.
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
    ) -> None:
        super().__init__()
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(
                f"HttpTrigger port={port!r}: use an integer 0-65535 (0: any free port)."
            )
        _check_token(host, token)
        self.host = host
        self.max_seconds = check_number(
            "HttpTrigger max_seconds", max_seconds, maximum=MAX_WINDOW_SECONDS
        )
        self.max_window_seconds = check_number(
            "HttpTrigger max_window_seconds", max_window_seconds, maximum=MAX_WINDOW_SECONDS
        )
        self._port = port
        self._token = token.encode() if token is not None else None
        self._raise_bind_errors = True
        self._server: Optional[_Server] = None
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
            server = _Server(self)
        except OSError as exc:
            message = (
                f"HttpTrigger cannot listen on {self.host}:{self._port}: {exc.strerror or exc}. "
                "Choose another port (port=0 picks a free one) or host."
            )
            if self._raise_bind_errors:
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
        if self._token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self._token)

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
            f"e.g. agent.register(HttpTrigger(...), {_SUGGESTION[kind]})",
        )

    def _start(self, profiler: Profiler, reason: str) -> Profile:
        target = self._target
        if target is None:
            raise HttpError(503, "the profiling agent is shutting down")
        try:
            return target.start_profiler(profiler, reason)
        except ProfilerBusyError as exc:
            raise HttpError(
                409, f"a {profiler.kind.value} profile is already running ({exc})"
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
                409, f"no {kind.value} window is open: POST {PREFIX}/{_path_of(kind)}/start first"
            )
        profile, closed = entry
        closed.set()
        return self._finish(profile, "stopped over HTTP")

    def __repr__(self) -> str:
        token = "***" if self._token is not None else "None"
        return f"HttpTrigger(host={self.host!r}, port={self.port}, token={token})"


def _check_token(host: str, token: Optional[str]) -> None:
    """Refuse a token that could not authenticate anyone, or too weak a one off loopback.

    The messages never contain the token.
    """
    generate = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if token is not None and not (
        isinstance(token, str) and token and all("!" <= ch <= "~" for ch in token)
    ):
        raise ValueError(
            "HttpTrigger token must be printable ASCII without spaces (clients send it in an "
            f"HTTP header), or None on loopback; generate one with: {generate}"
        )
    if is_loopback(host):
        return
    if token is None:
        raise ValueError(
            f"HttpTrigger refuses to listen on {host!r} without a token: anyone who can "
            "reach it could profile this process. Pass token=... (or set "
            "OTEL_PROFILING_HTTP_TOKEN), or bind to 127.0.0.1."
        )
    if len(token) < MIN_PUBLIC_TOKEN_LENGTH:
        raise ValueError(
            f"HttpTrigger refuses to listen on {host!r} with a token shorter than "
            f"{MIN_PUBLIC_TOKEN_LENGTH} characters: anyone who can reach it could guess it. "
            f"Generate one with: {generate}"
        )


def _path_of(kind: ProfileKind) -> str:
    return next(name for name, value in _PATHS.items() if value is kind)


def _routes() -> Dict[str, Dict[str, Tuple[str, Optional[ProfileKind]]]]:
    """path → method → (action, kind)."""
    routes: Dict[str, Dict[str, Tuple[str, Optional[ProfileKind]]]] = {
        PREFIX: {"GET": ("index", None)}
    }
    for name, kind in _PATHS.items():
        if kind is ProfileKind.HEAP_SNAPSHOT:
            routes[f"{PREFIX}/{name}"] = {"GET": ("snapshot", kind)}
        else:
            routes[f"{PREFIX}/{name}"] = {"GET": ("timed", kind)}
            routes[f"{PREFIX}/{name}/start"] = {"POST": ("start", kind)}
            routes[f"{PREFIX}/{name}/stop"] = {"POST": ("stop", kind)}
    for name, kind in _PPROF_PATHS.items():
        routes[f"{PPROF_PREFIX}/{name}"] = {"GET": ("pprof", kind)}
    return routes


ROUTES = _routes()
_PARAMS = {"timed": {"seconds"}, "pprof": {"seconds"}}
_PROFILING_ACTIONS = {"timed", "snapshot", "start", "stop", "pprof"}
_RETRY = {"Retry-After": f"{HEAD_TIMEOUT:g}"}


class _HeadReader(io.RawIOBase):
    """Socket reads that share one deadline: the whole request head must arrive by then."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"request head not received within {HEAD_TIMEOUT:g} s")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = HEAD_TIMEOUT
    server_version = "otel-profiling"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the request is read through the deadline instead
        deadline = time.monotonic() + HEAD_TIMEOUT
        self.rfile = io.BufferedReader(_HeadReader(self.connection, deadline))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        trigger = self.server.trigger
        self.connection.settimeout(WRITE_TIMEOUT)  # the head is in: only writes are left
        try:
            if not trigger.authorized(self.headers.get("Authorization")):
                raise HttpError(
                    401,
                    "missing or wrong token: send 'Authorization: Bearer <token>'",
                    {"WWW-Authenticate": 'Bearer realm="otel-profiling"'},
                )
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            methods = ROUTES.get(path)
            if methods is None:
                raise HttpError(404, f"unknown path {path!r}; see GET {PREFIX}/ for the endpoints")
            if method not in methods:
                allowed = ", ".join(sorted(methods))
                raise HttpError(
                    405, f"{method} not allowed on {path}; use {allowed}", {"Allow": allowed}
                )
            action, kind = methods[method]
            query = self._query(parts.query, _PARAMS.get(action, set()))
            if action in _PROFILING_ACTIONS:
                assert kind is not None
                with self.server.profiling_slot():
                    self._act(trigger, f"{method} {self.path}", action, kind, query)
            else:
                self._json(200, {"endpoints": _index(trigger)})
        except HttpError as exc:
            self._json(exc.status, {"error": exc.message, "status": exc.status}, exc.headers)
        except Exception as exc:  # never let a request kill the server thread
            _logger.exception("Profiling HTTP request failed.")
            self._json(500, {"error": f"internal error: {type(exc).__name__}", "status": 500})

    def _act(
        self,
        trigger: HttpTrigger,
        reason: str,
        action: str,
        kind: ProfileKind,
        query: Dict[str, str],
    ) -> None:
        """Run one profiling action and answer it; errors are raised as ``HttpError``."""
        if action == "timed":
            seconds = self._seconds(query, trigger.max_seconds)
            self._profile(trigger.timed(kind, seconds, reason))
        elif action == "snapshot":
            self._profile(trigger.timed(kind, 0.0, reason))
        elif action == "pprof":
            seconds = self._seconds(query, trigger.max_seconds)
            self._pprof(trigger.timed(kind, seconds, reason))
        elif action == "start":
            profile = trigger.open_window(kind, reason)
            self._json(200, {"status": "started", **_describe(profile)})
        else:
            self._profile(trigger.close_window(kind))

    @staticmethod
    def _query(text: str, allowed: set) -> Dict[str, str]:
        try:
            parsed = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
        except ValueError:
            raise HttpError(400, f"malformed query string {text!r}") from None
        unknown = sorted(set(parsed) - allowed)
        if unknown:
            expected = ", ".join(sorted(allowed)) or "none"
            raise HttpError(400, f"unknown parameter(s) {', '.join(unknown)}; expected: {expected}")
        for name, values in parsed.items():
            if len(values) != 1:
                raise HttpError(400, f"parameter {name} given {len(values)} times")
        return {name: values[0] for name, values in parsed.items()}

    @staticmethod
    def _seconds(query: Dict[str, str], maximum: float) -> float:
        text = query.get("seconds")
        if text is None:
            return min(DEFAULT_SECONDS, maximum)
        try:
            seconds = float(text) if text.isascii() else float("nan")
        except ValueError:
            seconds = float("nan")
        if not 0 < seconds <= maximum:  # also rejects nan and inf
            raise HttpError(400, f"seconds={text!r}: must be a number > 0 and <= {maximum:g}")
        return seconds

    def _profile(self, profile: Profile) -> None:
        if profile.status is ProfileStatus.ERROR:
            raise HttpError(500, f"the profiler failed: {profile.error}")
        headers = {
            "Content-Disposition": f'attachment; filename="{profile.key}"',
            "X-Profile-Kind": profile.kind.value,
            "X-Profile-Trigger": profile.trigger or "",
        }
        self._send(200, profile.content_type, profile.data, headers)

    def _pprof(self, profile: Profile) -> None:
        """The profile as gzipped pprof, answered as Go's ``net/http/pprof`` does."""
        if profile.status is ProfileStatus.ERROR:
            raise HttpError(500, f"the profiler failed: {profile.error}")
        from otel_profiling.formats.to_pprof import as_pprof

        try:
            data = as_pprof(profile)
        except ValueError as exc:
            raise HttpError(500, f"the profile cannot be written as pprof: {exc}") from None
        name = "profile" if profile.kind is ProfileKind.CPU_PROFILE else "heap"
        headers = {
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
            "X-Profile-Kind": profile.kind.value,
        }
        self._send(200, "application/octet-stream", data, headers)

    def _json(self, status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> None:
        data = json.dumps(body).encode()
        self._send(status, "application/json", data, headers or {})

    def _send(self, status: int, content_type: str, data: bytes, headers: Dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:  # the client went away; the profile was exported anyway
            _logger.debug("Profiling HTTP client disconnected before the response.")

    def send_error(
        self, code: int, message: Optional[str] = None, explain: Optional[str] = None
    ) -> None:
        """Errors found by the standard library (bad request line, ...) as JSON too."""
        self.close_connection = True
        self._json(code, {"error": message or explain or "bad request", "status": code})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        _logger.debug("%s %s", self.address_string(), format % args)


def _describe(profile: Profile) -> Dict[str, Any]:
    return {"kind": profile.kind.value, "name": profile.name, "key": profile.key}


def _index(trigger: HttpTrigger) -> List[Dict[str, Any]]:
    target = trigger.target
    kinds = {p.kind for p in target.profilers} if target is not None else set()
    return [
        {
            "path": path,
            "methods": sorted(methods),
            "available": all(k in kinds for _, k in methods.values() if k),
        }
        for path, methods in ROUTES.items()
        if path != PREFIX
    ]


class _Server(HTTPServer):
    """``HTTPServer`` serving each connection on a library thread.

    Two bounds: ``MAX_CONNECTIONS`` connections at once (beyond, an
    immediate 503), and ``MAX_CONCURRENT_REQUESTS`` profiling slots, taken
    only once a request is authorised, so clients without the token cannot
    use them up.
    """

    allow_reuse_address = False
    request_queue_size = MAX_CONNECTIONS  # the listen backlog (socketserver's default is 5)

    def __init__(self, trigger: HttpTrigger) -> None:
        self.trigger = trigger
        if ":" in trigger.host:
            self.address_family = socket.AF_INET6
        self._connections = 0
        self._profiling = 0
        self._idle = threading.Condition()
        super().__init__((trigger.host.strip("[]"), trigger._port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            if self._connections >= MAX_CONNECTIONS:
                self._busy(request, "too many connections")
                return
            self._connections += 1
        run: Callable[[], None] = lambda: self._run(request, client_address)  # noqa: E731
        _threads.start_daemon(run, "http-request")

    def _run(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._idle:
                self._connections -= 1
                self._idle.notify_all()

    @contextlib.contextmanager
    def profiling_slot(self) -> Iterator[None]:
        """Hold one of the profiling slots, or answer 503 when all are taken."""
        with self._idle:
            if self._profiling >= MAX_CONCURRENT_REQUESTS:
                raise HttpError(503, "too many profiling requests in progress", _RETRY)
            self._profiling += 1
        try:
            yield
        finally:
            with self._idle:
                self._profiling -= 1

    def _busy(self, request: Any, why: str) -> None:
        body = json.dumps({"error": why, "status": 503}).encode()
        with contextlib.suppress(OSError):
            request.sendall(
                b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                + f"Retry-After: {_RETRY['Retry-After']}\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        _logger.debug("Profiling HTTP connection from %s failed.", client_address, exc_info=True)

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._connections == 0, timeout)
