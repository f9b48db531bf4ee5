"""The HTTP trigger's endpoints: paths and methods, request parsing, responses.

Under ``/debug/profile``, routed to the registered profiler of the matching kind:

- ``GET /cpu?seconds=N``, ``GET /heap?seconds=N``: profile for N seconds and
  return the profile; ``GET /snapshot``: take a heap snapshot and return it.
- ``POST /cpu/start`` / ``POST /cpu/stop`` (and ``/heap/...``): an
  open-ended window; ``stop`` returns the profile.
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
    return routes


ROUTES = _routes()
_PARAMS = {"timed": {"seconds"}}
_PROFILING_ACTIONS = {"timed", "snapshot", "start", "stop"}


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
                self._json(200, {"endpoints": index(trigger)})
        except HttpError as exc:
            self._json(exc.status, {"error": exc.message, "status": exc.status}, exc.headers)
        except Exception as exc:  # never let a request kill the server thread
            _logger.exception("Profiling HTTP request failed.")
            self._json(500, {"error": f"internal error: {type(exc).__name__}", "status": 500})

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
