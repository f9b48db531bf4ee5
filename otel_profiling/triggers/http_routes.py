"""The HTTP trigger's endpoints: paths and methods, request parsing, responses.

Under ``/debug/profile``, routed to the registered profiler of the matching kind:

- ``GET /cpu?seconds=N``, ``GET /heap?seconds=N``: profile for N seconds and
  return the profile; ``GET /snapshot``: take a heap snapshot and return it.
- ``POST /cpu/start`` / ``POST /cpu/stop`` (and ``/heap/...``): an
  open-ended window; ``stop`` returns the profile.

Go's ``net/http/pprof`` paths, so ``go tool pprof http://host:port/debug/pprof/profile``,
the Collector's ``pprofreceiver`` and Parca-style scrapers pull profiles with no code:

- ``GET /debug/pprof/profile?seconds=N``: a CPU profile as gzipped pprof;
- ``GET /debug/pprof/heap?seconds=N``: a heap profile as gzipped pprof (the
  memory allocated during the N seconds and still alive: tracemalloc sees
  only what is allocated while it traces);
- ``GET /debug/pprof/``: an HTML index of those two, as Go's.

Errors under ``/debug/pprof`` are answered as Go's are (plain text with
``X-Go-Pprof: 1``), the only form ``go tool pprof`` prints the message of.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict, List, Optional, Protocol, Tuple
from urllib.parse import parse_qs, urlsplit

from otel_profiling.profile import Profile, ProfileKind, ProfileStatus
from otel_profiling.triggers.base import TriggerTarget
from otel_profiling.triggers.http_auth import HttpError
from otel_profiling.triggers.http_server import (
    HEAD_TIMEOUT,
    WRITE_TIMEOUT,
    HeadReader,
    ProfilingServer,
)

_logger = logging.getLogger("otel_profiling.triggers.http")

PREFIX = "/debug/profile"
DEFAULT_SECONDS = 30.0
PATHS: Dict[str, ProfileKind] = {
    "cpu": ProfileKind.CPU_PROFILE,
    "heap": ProfileKind.HEAP_PROFILE,
    "snapshot": ProfileKind.HEAP_SNAPSHOT,
}
PPROF_PREFIX = "/debug/pprof"
PPROF_PATHS: Dict[str, ProfileKind] = {
    "profile": ProfileKind.CPU_PROFILE,
    "heap": ProfileKind.HEAP_PROFILE,
}
GO_ONLY = {
    "goroutine": "where every thread is: a wall-clock /debug/pprof/profile?seconds=1 shows it",
    "allocs": "memory allocated in a window and still alive: /debug/pprof/heap?seconds=N",
    "block": "time threads wait, under the wall clock: /debug/pprof/profile?seconds=N",
    "mutex": "time threads wait, under the wall clock: /debug/pprof/profile?seconds=N",
    "threadcreate": "threads are the roots of /debug/pprof/profile?seconds=N",
    "cmdline": "not served (a command line may hold secrets)",
    "symbol": "profiles carry their function names already",
    "trace": "Go's execution tracer has no counterpart",
}
"""Go's other ``/debug/pprof`` names, each with what answers its question here, if anything."""
_PPROF_INDEX = """<html><head><title>/debug/pprof/</title></head><body>
<p>/debug/pprof/ of a Python process (otel-profiling): gzipped pprof, for
<code>go tool pprof -top URL</code>.</p>
<table>
<tr><td><a href="/debug/pprof/profile">profile</a></td>
<td>{profile}CPU profile for <code>seconds</code> (default 30).</td></tr>
<tr><td><a href="/debug/pprof/heap">heap</a></td>
<td>{heap}memory allocated during <code>seconds</code> (default 30) and still alive.</td></tr>
</table>
<p>{go_only}: no counterpart (see the 404 message of each).</p>
</body></html>
"""


class Endpoint(Protocol):
    """What the handler asks of the trigger it serves (``HttpTrigger`` is one)."""

    max_seconds: float

    @property
    def target(self) -> Optional[TriggerTarget]: ...

    def authorized(self, header: Optional[str]) -> bool: ...

    def key_for(self, profile: Profile) -> str: ...

    def timed(self, kind: ProfileKind, seconds: float, reason: str) -> Profile: ...

    def open_window(self, kind: ProfileKind, reason: str) -> Profile: ...

    def close_window(self, kind: ProfileKind) -> Profile: ...


def path_of(kind: ProfileKind) -> str:
    return next(name for name, value in PATHS.items() if value is kind)


def _routes() -> Dict[str, Dict[str, Tuple[str, Optional[ProfileKind]]]]:
    """path → method → (action, kind)."""
    routes: Dict[str, Dict[str, Tuple[str, Optional[ProfileKind]]]] = {
        PREFIX: {"GET": ("index", None)}
    }
    for name, kind in PATHS.items():
        if kind is ProfileKind.HEAP_SNAPSHOT:
            routes[f"{PREFIX}/{name}"] = {"GET": ("snapshot", kind)}
        else:
            routes[f"{PREFIX}/{name}"] = {"GET": ("timed", kind)}
            routes[f"{PREFIX}/{name}/start"] = {"POST": ("start", kind)}
            routes[f"{PREFIX}/{name}/stop"] = {"POST": ("stop", kind)}
    routes[PPROF_PREFIX] = {"GET": ("pprof-index", None)}
    for name, kind in PPROF_PATHS.items():
        routes[f"{PPROF_PREFIX}/{name}"] = {"GET": ("pprof", kind)}
    return routes


ROUTES = _routes()
_PARAMS = {"timed": {"seconds"}, "pprof": {"seconds"}}
_PROFILING_ACTIONS = {"timed", "snapshot", "start", "stop", "pprof"}


class Handler(BaseHTTPRequestHandler):
    """One request: authorise, route, run the profiling action, answer (JSON on errors)."""

    server: ProfilingServer
    timeout = HEAD_TIMEOUT
    server_version = "otel-profiling"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the request is read through the deadline instead
        deadline = time.monotonic() + HEAD_TIMEOUT
        self.rfile = io.BufferedReader(HeadReader(self.connection, deadline))

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
        trigger: Endpoint = self.server.endpoint
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
                raise HttpError(404, _unknown(path))
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
            elif action == "pprof-index":
                self._send(200, "text/html; charset=utf-8", pprof_index(trigger), {})
            else:
                self._json(200, {"endpoints": index(trigger)})
        except HttpError as exc:
            self._error(exc)
        except Exception as exc:  # never let a request kill the server thread
            _logger.exception("Profiling HTTP request failed.")
            self._error(HttpError(500, f"internal error: {type(exc).__name__}"))

    def _act(
        self,
        trigger: Endpoint,
        reason: str,
        action: str,
        kind: ProfileKind,
        query: Dict[str, str],
    ) -> None:
        """Run one profiling action and answer it; errors are raised as ``HttpError``."""
        if action == "timed":
            seconds = self._seconds(query, trigger.max_seconds)
            self._profile(trigger, trigger.timed(kind, seconds, reason))
        elif action == "snapshot":
            self._profile(trigger, trigger.timed(kind, 0.0, reason))
        elif action == "pprof":
            seconds = self._seconds(query, trigger.max_seconds)
            self._pprof(trigger.timed(kind, seconds, reason))
        elif action == "start":
            profile = trigger.open_window(kind, reason)
            self._json(200, {"status": "started", **describe(trigger, profile)})
        else:
            self._profile(trigger, trigger.close_window(kind))

    @staticmethod
    def _query(text: str, allowed: set) -> Dict[str, str]:
        try:
            parsed = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
        except ValueError:
            raise HttpError(400, f"malformed query string {text!r}") from None
        unknown = sorted(set(parsed) - allowed)
        if unknown:
            expected = ", ".join(sorted(allowed)) or "none"
            text = "" if "debug" not in unknown else " (no text form: read it with go tool pprof)"
            raise HttpError(
                400, f"unknown parameter(s) {', '.join(unknown)}; expected: {expected}{text}"
            )
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

    def _profile(self, trigger: Endpoint, profile: Profile) -> None:
        if profile.status is ProfileStatus.ERROR:
            raise HttpError(500, f"the profiler failed: {profile.error}")
        name = posixpath.basename(trigger.key_for(profile))  # the stored object's name
        headers = {
            "Content-Disposition": f'attachment; filename="{name}"',
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

    def _error(self, exc: HttpError) -> None:
        """JSON; under ``/debug/pprof`` plain text as Go's ``serveError``, so pprof prints it."""
        if not urlsplit(self.path).path.startswith(PPROF_PREFIX):
            self._json(exc.status, {"error": exc.message, "status": exc.status}, exc.headers)
            return
        headers = {"X-Go-Pprof": "1", "X-Content-Type-Options": "nosniff", **exc.headers}
        self._send(exc.status, "text/plain; charset=utf-8", f"{exc.message}\n".encode(), headers)

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


def _unknown(path: str) -> str:
    """The 404 message: for one of Go's other profiles, what answers its question here."""
    name = path[len(PPROF_PREFIX) + 1 :] if path.startswith(PPROF_PREFIX + "/") else ""
    if name in GO_ONLY:
        return (
            f"Go's {name} profile has no counterpart in a Python process ({GO_ONLY[name]}); "
            f"{PPROF_PREFIX}/ answers profile and heap"
        )
    if name:
        return f"unknown profile {name!r}; {PPROF_PREFIX}/ answers profile and heap"
    return f"unknown path {path!r}; see GET {PREFIX}/ for the endpoints"


def pprof_index(trigger: Endpoint) -> bytes:
    """Go's ``/debug/pprof/`` index page, for the two profiles served here."""
    target = trigger.target
    kinds = {p.kind for p in target.profilers} if target is not None else set()
    missing = {
        name: "" if kind in kinds else "(no profiler of this kind registered: 404) "
        for name, kind in PPROF_PATHS.items()
    }
    return _PPROF_INDEX.format(go_only=", ".join(GO_ONLY), **missing).encode()


def describe(trigger: Endpoint, profile: Profile) -> Dict[str, Any]:
    return {"kind": profile.kind.value, "name": profile.name, "key": trigger.key_for(profile)}


def index(trigger: Endpoint) -> List[Dict[str, Any]]:
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
