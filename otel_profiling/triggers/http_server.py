"""The HTTP trigger's server: connection and request bounds, and the head deadline.

A client that can reach the port cannot lock authorised users out: the whole
request head must arrive within ``HEAD_TIMEOUT`` seconds (a per-read timeout
alone lets a client drip one header line at a time for as long as it likes),
connections are capped at ``MAX_CONNECTIONS``, and only authorised requests
take one of the ``MAX_CONCURRENT_REQUESTS`` profiling slots. Each connection
is served on a library thread.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Iterator, Type

from otel_profiling import _threads
from otel_profiling.triggers.http_auth import HttpError

_logger = logging.getLogger("otel_profiling.triggers.http")

MAX_CONCURRENT_REQUESTS = 8
"""Authorised profiling requests served at once."""
MAX_CONNECTIONS = 32
"""Connections served at once, authorised or not (each on a library thread)."""
HEAD_TIMEOUT = 5.0
"""Seconds for a client to send its whole request line and headers."""
WRITE_TIMEOUT = 30.0
"""Seconds one write of a response may block on a client that does not read."""
RETRY = {"Retry-After": f"{HEAD_TIMEOUT:g}"}


class HeadReader(io.RawIOBase):
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


class ProfilingServer(HTTPServer):
    """``HTTPServer`` serving each connection on a library thread.

    Two bounds: ``MAX_CONNECTIONS`` connections at once (beyond, an
    immediate 503), and ``MAX_CONCURRENT_REQUESTS`` profiling slots, taken
    only once a request is authorised, so clients without the token cannot
    use them up.
    """

    # A restarted service binds its fixed port again while the last one's connections are in
    # TIME_WAIT, as Go's listeners do; a port another process listens on is still refused.
    # Not on Windows, where SO_REUSEADDR would let two processes share the port.
    allow_reuse_address = sys.platform != "win32"
    request_queue_size = MAX_CONNECTIONS  # the listen backlog (socketserver's default is 5)

    def __init__(
        self, host: str, port: int, handler: Type[BaseHTTPRequestHandler], endpoint: Any
    ) -> None:
        self.endpoint = endpoint  # what the handler serves (the HttpTrigger)
        if ":" in host:
            self.address_family = socket.AF_INET6
        self._connections = 0
        self._profiling = 0
        self._idle = threading.Condition()
        super().__init__((host.strip("[]"), port), handler)

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
                raise HttpError(503, "too many profiling requests in progress", RETRY)
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
                + f"Retry-After: {RETRY['Retry-After']}\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        _logger.debug("Profiling HTTP connection from %s failed.", client_address, exc_info=True)

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._connections == 0, timeout)
