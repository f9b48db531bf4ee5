"""A real OTLP profiles receiver for the tests: HTTP (protobuf, gzip too) and gRPC.

Requests are decoded with the official generated classes and every one is
run through ``otlp_checker.check``; a failed check is kept and re-raised by
the test (``receiver.errors``). ``script`` makes the next answers fail:
a list of ``(http_status, retry_after)`` or gRPC code names consumed in order.
Either serves TLS when given a server ``ssl.SSLContext`` (HTTP) or
``grpc.ssl_server_credentials`` (gRPC).
"""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
import traceback
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, List, Optional, Tuple

import grpc
from opentelemetry.proto.collector.profiles.v1development import (
    profiles_service_pb2,
    profiles_service_pb2_grpc,
)
from otlp_checker import check

Request = profiles_service_pb2.ExportProfilesServiceRequest
Response = profiles_service_pb2.ExportProfilesServiceResponse


class Receiver:
    """What both kinds of server share: received requests, scripted failures, errors."""

    def __init__(self) -> None:
        self.requests: List[Any] = []
        self.attempts = 0
        self.headers: List[dict] = []
        self.errors: List[str] = []
        self.script: List[Any] = []
        self.rejected = 0
        self.lock = threading.Lock()
        self.received = threading.Event()

    def next_failure(self) -> Optional[Any]:
        with self.lock:
            self.attempts += 1
            return self.script.pop(0) if self.script else None

    def accept(self, body: bytes, headers: dict) -> None:
        request = Request.FromString(body)
        try:
            check(request)
        except AssertionError:
            self.errors.append(traceback.format_exc())
        with self.lock:
            self.requests.append(request)
            self.headers.append(headers)
        self.received.set()

    def raise_errors(self) -> None:
        assert not self.errors, "\n".join(self.errors)


class HttpReceiver(Receiver):
    """HTTP, or HTTPS with ``tls``: the handshake runs on the request's thread, and one that
    fails is counted in ``tls_failures`` (``connections`` counts every connection)."""

    def __init__(self, port: int = 0, tls: Optional[ssl.SSLContext] = None) -> None:
        super().__init__()
        receiver = self
        self.tls = tls
        self.connections = 0
        self.tls_failures = 0

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                with receiver.lock:
                    receiver.connections += 1
                if receiver.tls is not None:
                    try:
                        self.request.do_handshake()
                    except OSError:
                        with receiver.lock:
                            receiver.tls_failures += 1
                        _drain(self.request)
                        raise
                super().setup()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                failure = receiver.next_failure()
                if failure is not None:
                    status, retry_after, message = failure
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", str(retry_after))
                    data = _status_body(message)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                assert self.headers.get("Content-Type") == "application/x-protobuf"
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.accept(body, dict(self.headers))
                response = Response()
                if receiver.rejected:
                    response.partial_success.rejected_profiles = receiver.rejected
                    response.partial_success.error_message = "sample too old"
                data = response.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> HttpReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    """A refused TLS handshake is what the TLS tests expect: no traceback on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def _drain(connection: Any) -> None:
    """After a refused handshake, read the raw socket until the client closes it.

    Closing with the client's request unread would send a TCP reset, which can
    overtake the TLS alert: the client would see a reset instead of the alert
    a real receiver's refusal carries.
    """
    connection.settimeout(10)
    try:
        while socket.socket.recv(connection, 65536):
            pass
    except OSError:
        pass


def _status_body(message: str) -> bytes:
    """A ``google.rpc.Status`` with ``message`` (field 2), as OTLP/HTTP error bodies are."""
    text = message.encode()
    return b"\x12" + bytes([len(text)]) + text


class GrpcReceiver(Receiver):
    """gRPC, over TLS when given ``credentials`` (``grpc.ssl_server_credentials``);
    ``max_message`` lowers the largest request it takes (gRPC's default: 4 MiB)."""

    def __init__(
        self,
        port: int = 0,
        credentials: Optional[grpc.ServerCredentials] = None,
        max_message: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.tls = credentials is not None
        receiver = self

        class Servicer(profiles_service_pb2_grpc.ProfilesServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - generated name
                failure = receiver.next_failure()
                if failure is not None:
                    code, retry_delay = failure
                    if retry_delay is not None:
                        context.set_trailing_metadata(
                            (("grpc-status-details-bin", _retry_info_status(code, retry_delay)),)
                        )
                    context.abort(getattr(grpc.StatusCode, code), f"scripted {code}")
                receiver.accept(request.SerializeToString(), dict(context.invocation_metadata()))
                return Response()

        self.executor = futures.ThreadPoolExecutor(max_workers=4)
        options = [] if max_message is None else [("grpc.max_receive_message_length", max_message)]
        self.server = grpc.server(self.executor, options=options)
        profiles_service_pb2_grpc.add_ProfilesServiceServicer_to_server(Servicer(), self.server)
        address = f"127.0.0.1:{port}"
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> GrpcReceiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None).wait(10)
        self.executor.shutdown(wait=True)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _retry_info_status(code: str, seconds: float) -> bytes:
    """``google.rpc.Status{code, details: [Any(RetryInfo{retry_delay})]}`` by hand."""
    whole, nanos = int(seconds), int((seconds - int(seconds)) * 1e9)
    duration = b"\x08" + _varint(whole) + (b"\x10" + _varint(nanos) if nanos else b"")
    retry_info = _field(1, duration)
    any_msg = _field(1, b"type.googleapis.com/google.rpc.RetryInfo") + _field(2, retry_info)
    number = getattr(grpc.StatusCode, code).value[0]
    return b"\x08" + _varint(number) + _field(3, any_msg)


def profiles_of(receiver: Receiver) -> List[Tuple[Any, Any, Any]]:
    """``(profile, dictionary, resource)`` for every profile received."""
    out = []
    for request in receiver.requests:
        for rp in request.resource_profiles:
            for sp in rp.scope_profiles:
                for profile in sp.profiles:
                    out.append((profile, request.dictionary, rp.resource))
    return out
