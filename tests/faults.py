"""Fault injection for the reliability tests: HTTP proxies that fail, drip or deny, and a
server that never answers.

All listen on loopback in the test process and are real sockets: the
exporter under test talks to them exactly as it would to a misbehaving S3
endpoint or load balancer.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import itertools
import socket
import struct
import threading
from typing import Dict, List, Optional
from urllib.parse import urlsplit

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
}

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FlakyProxy:
    """HTTP proxy to ``upstream`` that fails every other request.

    Failures alternate between an HTTP 503 ``SlowDown`` answer and a TCP reset
    (``SO_LINGER`` 0) before any answer. Counters tell what happened.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.requests = 0
        self.failed_503 = 0
        self.resets = 0
        self.forwarded = 0
        self._counter = itertools.count()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    n = next(proxy._counter)
                    proxy.requests += 1
                if n % 2 == 1:
                    if (n // 2) % 2 == 0:
                        with proxy._lock:
                            proxy.failed_503 += 1
                        _answer_xml(self, 503, "Slow Down", _SLOW_DOWN)
                    else:
                        with proxy._lock:
                            proxy.resets += 1
                        _reset(self)
                    return
                status, reason, headers, data = _forward(
                    proxy.upstream_host, proxy.upstream_port, self, body
                )
                with proxy._lock:
                    proxy.forwarded += 1
                self.wfile.write(_response_bytes(status, reason, headers, data, self.command))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = _NamedThreadsServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FlakyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.close()
        self._thread.join()


class HangingServer:
    """Accepts TCP connections, reads what is sent, and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._held: List[socket.socket] = []
        self._drains: List[threading.Thread] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HangingServer:
        self._thread = threading.Thread(target=self._accept, name="fault-hang", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)  # kept open, never answered
            drain = threading.Thread(
                target=_drain, args=(conn, self._stop), name="fault-hang", daemon=True
            )
            self._drains.append(drain)
            drain.start()

    def stop(self) -> None:
        """Stop, and wait for its threads: each sees the stop within its 0.2 s poll."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for drain in self._drains:
            drain.join()
        for conn in self._held:
            conn.close()
        self._sock.close()


def _drain(conn: socket.socket, stop: threading.Event) -> None:
    conn.settimeout(0.2)
    while not stop.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


_ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


class FaultProxy:
    """HTTP proxy to ``upstream`` whose behaviour the test switches with ``mode``:

    * ``forward``: pass requests through;
    * ``slowdown``: answer 503 ``SlowDown`` (transient);
    * ``reset``: reset the TCP connection before answering (transient);
    * ``deny``: answer 403 ``AccessDenied`` (permanent);
    * ``drip``: pass the request through (the upstream acts on it), then send
      the answer one byte per ``drip_interval`` seconds until ``release()``.

    The mode is read when a request arrives, so a dripping answer goes on
    dripping after the mode changes, until released. ``dripping`` counts the
    answers being dripped right now: a client that gives up and closes its
    connection ends its drip at the next byte.
    """

    def __init__(self, upstream: str, drip_interval: float = 1.0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.mode = "forward"
        self.drip_interval = drip_interval
        self.requests: List[str] = []  # "METHOD path", in order of arrival
        self.dripping = 0
        self._released = threading.Event()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = proxy.mode
                with proxy._lock:
                    proxy.requests.append(f"{self.command} {self.path}")
                if mode == "slowdown":
                    _answer_xml(self, 503, "Slow Down", _SLOW_DOWN)
                elif mode == "deny":
                    _answer_xml(self, 403, "Forbidden", _ACCESS_DENIED)
                elif mode == "reset":
                    _reset(self)
                else:
                    status, reason, headers, data = _forward(
                        proxy.upstream_host, proxy.upstream_port, self, body
                    )
                    raw = _response_bytes(status, reason, headers, data, self.command)
                    if mode == "drip":
                        self._drip(raw)
                    else:
                        self.wfile.write(raw)

            def _drip(self, raw: bytes) -> None:
                with proxy._lock:
                    proxy.dripping += 1
                try:
                    for index in range(len(raw)):
                        if proxy._released.is_set():
                            self.wfile.write(raw[index:])
                            return
                        self.wfile.write(raw[index : index + 1])
                        self.wfile.flush()
                        proxy._released.wait(proxy.drip_interval)
                except OSError:  # the client gave up and closed the connection
                    self.close_connection = True
                finally:
                    with proxy._lock:
                        proxy.dripping -= 1

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = _NamedThreadsServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        assert mode in {"forward", "slowdown", "reset", "deny", "drip"}, mode
        if mode == "drip":
            self._released.clear()
        self.mode = mode

    def release(self) -> None:
        """Let every dripping answer finish at once."""
        self._released.set()

    def count(self, method: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.startswith(method + " "))

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.close()
        self._thread.join()


class _NamedThreadsServer(http.server.ThreadingHTTPServer):
    """Request threads named ``fault-...``, so a test can tell them from the library's.

    ``close()`` ends them too: a request thread on a kept-alive connection waits for the
    client's next request for as long as the client keeps its connection (a cached
    filesystem's pool keeps it for the rest of the run), so without it every proxy would
    leave threads and sockets behind for the later tests.
    """

    daemon_threads = True

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._requests: Dict[threading.Thread, socket.socket] = {}
        self._requests_lock = threading.Lock()

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        thread = threading.Thread(
            target=self._serve_one,
            args=(request, client_address),
            name="fault-proxy-request",
            daemon=True,
        )
        with self._requests_lock:
            self._requests[thread] = request
        thread.start()

    def _serve_one(self, request, client_address):  # type: ignore[no-untyped-def]
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._requests_lock:
                self._requests.pop(threading.current_thread(), None)

    def close(self) -> None:
        """Stop accepting, end every open connection (its thread reads EOF), join them."""
        self.shutdown()
        self.server_close()
        with self._requests_lock:
            requests = list(self._requests.items())
        for _, request in requests:
            with contextlib.suppress(OSError):  # already closed by its handler
                request.shutdown(socket.SHUT_RDWR)
        for thread, _ in requests:
            # a handler still forwarding waits at most for its upstream's answer (moto's, on
            # loopback); 30 s is _forward's own timeout
            thread.join(30)


def _answer_xml(
    handler: http.server.BaseHTTPRequestHandler, status: int, reason: str, xml: bytes
) -> None:
    """An S3-style error answer, then the connection closes."""
    handler.send_response(status, reason)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", str(len(xml)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(xml)
    handler.close_connection = True


def _reset(handler: http.server.BaseHTTPRequestHandler) -> None:
    """A TCP reset (``SO_LINGER`` 0) before any answer."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.close_connection = True
    handler.connection.close()


def _forward(
    host: str, port: int, handler: http.server.BaseHTTPRequestHandler, body: bytes
) -> tuple:
    """Send the handler's request upstream; (status, reason, headers, body) of the answer."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.putrequest(handler.command, handler.path, skip_host=True, skip_accept_encoding=True)
        for name, value in handler.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                conn.putheader(name, value)
        if body and "Content-Length" not in handler.headers:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        data = response.read()
        return response.status, response.reason, response.getheaders(), data
    finally:
        conn.close()


def _response_bytes(status: int, reason: str, headers: list, data: bytes, method: str) -> bytes:
    """The answer as sent on the wire (a HEAD answer keeps the object's Content-Length)."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    for name, value in headers:
        if name.lower() in _HOP_BY_HOP or (name.lower() == "content-length" and method != "HEAD"):
            continue
        lines.append(f"{name}: {value}")
    if method != "HEAD":
        lines.append(f"Content-Length: {len(data)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (b"" if method == "HEAD" else data)


def thread_names() -> List[str]:
    """Names of the live threads of this process, except the test's own fault servers."""
    return sorted(
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.name.startswith("fault-")
    )


__all__ = ["FaultProxy", "FlakyProxy", "HangingServer", "thread_names"]
