"""One OTLP/HTTP request that ends by its deadline and never follows a redirect.

``urllib``'s timeout bounds each socket operation, not the request: a receiver
(or a proxy) that answers a byte every few seconds would hold an export, and
the process's exit, for as long as it likes. Here every send and receive gets
the time left before the deadline as its timeout, so the whole request ends
by then. Proxies from the environment (``https_proxy``, ...) still apply.

A redirect is not followed: ``urllib`` turns a redirected POST into a GET
without its body (the profiles would be counted as sent while none arrived)
and carries the request's headers, tokens included, to the new host. The
caller sees the 3xx status and names the new location.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
import urllib.request
from typing import Any, Dict, Optional


class _DeadlineSocket:
    """A connected socket whose every send and receive ends by ``deadline``.

    Like ``socket.socket``, it stays open while a file made from it (the
    response being read) is, even after the connection closes it.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._files = 0
        self._closed = False

    def _arm(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer before the export deadline")
        self._sock.settimeout(remaining)

    def sendall(self, data: Any) -> None:
        self._arm()
        self._sock.sendall(data)

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        self._files += 1
        return io.BufferedReader(socket.SocketIO(self, "rb"))  # type: ignore[arg-type]

    def _decref_socketios(self) -> None:
        """A file made by ``makefile`` is closed."""
        self._files -= 1
        if self._closed and self._files <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._files <= 0:
            self._sock.close()

    def __getattr__(self, name: str) -> Any:  # fileno, setsockopt, ...
        return getattr(self._sock, name)


class _HttpConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self.deadline)


class _HttpsConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        super().connect()  # the TLS handshake included
        self.sock = _DeadlineSocket(self.sock, self.deadline)


class _HttpHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: float) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: Any) -> Any:
        connection: Any = _HttpConnection  # takes the deadline too
        return self.do_open(connection, req, deadline=self._deadline)


class _HttpsHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: float, context: Optional[ssl.SSLContext]) -> None:
        super().__init__(context=context)
        self._deadline = deadline
        self._tls = context

    def https_open(self, req: Any) -> Any:
        connection: Any = _HttpsConnection
        return self.do_open(connection, req, context=self._tls, deadline=self._deadline)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx response becomes an HTTPError for the caller


def post(
    url: str,
    body: bytes,
    headers: Dict[str, str],
    deadline: float,
    context: Optional[ssl.SSLContext] = None,
) -> bytes:
    """POST ``body``; the response body of a 2xx answer. Raises what ``urlopen`` raises
    (``HTTPError`` for any other status, 3xx included), or ``TimeoutError`` at the deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no answer before the export deadline")
    opener = urllib.request.build_opener(
        _HttpHandler(deadline), _HttpsHandler(deadline, context), _NoRedirect()
    )
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with opener.open(request, timeout=remaining) as response:
        return bytes(response.read())
