"""``OtlpProfileExporter``: profiles to an OpenTelemetry Collector, Pyroscope, ... over OTLP.

Installed with the ``otlp`` extra (``opentelemetry-proto``, and ``grpcio``
for gRPC); HTTP uses the standard library. A batch becomes one request
(``otlp_model``), sent over ``http/protobuf`` (default) or ``grpc``,
optionally gzipped. Delivery follows the rest of the pipeline: the request is
retried within the export's deadline on the statuses the OTLP specification
calls retryable (``RETRYABLE_HTTP``, ``RETRYABLE_GRPC``, ``RESOURCE_EXHAUSTED``
with a ``RetryInfo``), waiting what ``Retry-After`` or ``RetryInfo`` asks, with
``retry.Backoff`` otherwise; what is not sent goes back to the processor, which
spools it. Any other status is permanent: logged once with the receiver's
message, not retried. One that refuses the content (``REFUSED_DATA_*``) would
refuse it from the spool too: those profiles are dropped, as the specification
says, and counted in ``refused_profiles``. A partial
success (``rejected_profiles``) is logged and counted. A heap snapshot has no
OTLP shape: skipped here (one log line, counted in ``skipped_profiles``), it
still goes to the other exporters. After ``os.fork()`` the child opens its
own channel. Header values never appear in logs, ``repr`` or errors. TLS
(``otlp_tls``): the files are loaded when the exporter is made; a failed
handshake is permanent, with its fix named.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import logging
import threading
import time
import urllib.error
from typing import Any, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from otel_profiling._fork import renew_after_fork
from otel_profiling.exporters.base import PerProfileExporter, has_payload
from otel_profiling.exporters.otlp_config import GRPC, HTTP_PATH, OtlpConfig, config_from_env
from otel_profiling.exporters.otlp_http import post
from otel_profiling.exporters.otlp_tls import (
    CLOSED_HINT,
    Tls,
    handshake_failure,
    is_handshake_refusal,
    load_tls,
)
from otel_profiling.exporters.retry import Backoff
from otel_profiling.formats.protowire import fields
from otel_profiling.profile import Profile
from otel_profiling.redact import redact_url
from otel_profiling.version import __version__, install_command

_logger = logging.getLogger(__name__)

EXTRA_HINT = install_command("otlp")
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
RETRYABLE_GRPC = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
)
"""The specification's retryable gRPC codes; ``RESOURCE_EXHAUSTED`` only with a ``RetryInfo``."""
REFUSED_DATA_HTTP = frozenset({400, 413})
REFUSED_DATA_GRPC = frozenset({"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"})
"""Answers that refuse the request's content (bad data, too large): sending it again, now or
from the spool, gets the same answer, so its profiles are dropped, as the specification says."""
USER_AGENT = f"otel-profiling-OTLP-Exporter-Python/{__version__}"
"""What the specification asks an OTLP exporter to send: the exporter, its language, version."""
MAX_REQUEST_BYTES = 4 * 2**20
"""Largest request built from several profiles (the gRPC default receive limit)."""
HTTP_TO_GRPC = (
    "the receiver answered in HTTP/2 only: this is likely its gRPC port (4317 by default); "
    "set OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL=grpc, or keep http/protobuf and use its "
    "HTTP port (4318 by default)"
)
GRPC_TO_HTTP = (
    "the receiver does not speak HTTP/2: this is likely its http/protobuf port (4318 by "
    "default); set OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL=http/protobuf, or keep grpc and use "
    "its gRPC port (4317 by default)"
)
"""A protocol sent to the other's port: a setting to fix, not retried (the profiles are kept)."""
_MAX_MESSAGE = 300  # characters of a receiver's error message kept in logs
MAX_RECONNECT_BACKOFF_MS = 5000
"""Longest wait between gRPC's reconnection attempts (its own default: 120 s, reached after
a few minutes of outage): the channel would wait up to that long after the receiver is
back before trying it, while every export in between fails at once."""
_SENT, _DROPPED, _UNSENT = "sent", "dropped", "unsent"  # what became of one request


def _require_proto() -> None:
    try:
        import opentelemetry.proto.profiles.v1development.profiles_pb2  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"The OTLP profiles exporter needs opentelemetry-proto >= 1.43 ({exc}). "
            f"Fix: {EXTRA_HINT}"
        ) from None


class _Failure(Exception):
    """One failed try: whether to retry, how long the receiver asked to wait, and whether
    it refused the content itself (``drop``: never sent again)."""

    def __init__(
        self, message: str, retry: bool, wait: Optional[float] = None, drop: bool = False
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.wait = wait
        self.drop = drop


def _retry_after(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _retry_info(status_details: bytes) -> Optional[float]:
    """The delay of a ``google.rpc.RetryInfo`` inside ``grpc-status-details-bin``."""
    try:
        for number, _, detail in fields(status_details):
            if number != 3 or not isinstance(detail, bytes):
                continue
            parts = {n: v for n, _, v in fields(detail)}
            type_url = parts.get(1, b"")
            if not (isinstance(type_url, bytes) and type_url.endswith(b"google.rpc.RetryInfo")):
                continue
            body = parts.get(2, b"")
            for n, _, duration in fields(body if isinstance(body, bytes) else b""):
                if n == 1 and isinstance(duration, bytes):
                    d = {k: int(v) for k, _, v in fields(duration)}  # type: ignore[arg-type]
                    return d.get(1, 0) + d.get(2, 0) / 1e9
    except ValueError:
        return None
    return None


def _refused(message: str, drop: bool = False) -> _Failure:
    """A receiver's answer that retrying will not change (``drop``: nor sending it later)."""
    return _Failure(
        f"the receiver refused the request: {message}; check its version "
        "(profiles v1development) and its logs",
        False,
        drop=drop,
    )


class OtlpProfileExporter(PerProfileExporter):
    """Sends profiles as OTLP ``ExportProfilesServiceRequest`` messages.

    ``config`` defaults to the environment (``OTEL_EXPORTER_OTLP_PROFILES_*``,
    then ``OTEL_EXPORTER_OTLP_*``). With TLS, its certificate files are loaded
    here: one that cannot be used raises ``ValueError`` naming it. A batch is
    sent in requests of at most ``max_request_bytes`` (4 MiB) each, a larger
    profile alone. Counters: ``sent_profiles``,
    ``skipped_profiles`` (no OTLP shape), ``rejected_profiles`` (the receiver
    reported them rejected in a partial success), ``refused_profiles`` (their
    request was refused for its content: dropped, not returned as unsent).
    """

    def __init__(
        self, config: Optional[OtlpConfig] = None, *, max_request_bytes: int = MAX_REQUEST_BYTES
    ) -> None:
        _require_proto()
        if config is None:
            config = config_from_env()
        if config.protocol == GRPC:
            try:
                import grpc  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    f"The OTLP exporter's grpc protocol needs grpcio ({exc}). Fix: {EXTRA_HINT}, "
                    "or use OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL=http/protobuf."
                ) from None
        self.config = config
        self._tls: Optional[Tls] = None
        if config.uses_tls():
            self._tls = load_tls(config.certificate, config.client_key, config.client_certificate)
        self.max_request_bytes = int(max_request_bytes)
        self.sent_profiles = 0
        self.skipped_profiles = 0
        self.rejected_profiles = 0
        self.refused_profiles = 0
        self._stopped = False
        self._renew()
        renew_after_fork(self, OtlpProfileExporter._renew)

    def _renew(self) -> None:
        """Per-process state: a forked child makes its own channel and reports anew."""
        self._channel: Any = None
        self._stub: Any = None
        self._lock = threading.Lock()
        self._reported: set = set()
        self._failing = False
        self._not_before = 0.0  # time.monotonic() before which the receiver asked for no try

    def __repr__(self) -> str:
        return f"OtlpProfileExporter({self.config!r})"

    @property
    def destination(self) -> str:
        return redact_url(self.config.endpoint)

    # -- export ---------------------------------------------------------------------------
    def export_unsent(
        self,
        profiles: Sequence[Profile],
        timeout_millis: Optional[float] = None,
        *,
        resend: bool = False,
    ) -> List[Profile]:
        """Send ``profiles`` (retried until the deadline); return those not sent.

        Profiles share a request up to ``max_request_bytes``; each request
        succeeds or fails for all its profiles.
        """
        from otel_profiling.exporters.otlp_model import (
            UnsupportedProfile,
            build_request,
            decode_profile,
        )
        from otel_profiling.formats import ProfileFormatError

        if self._stopped:
            _logger.warning("Exporter is shut down; %d profile(s) not exported.", len(profiles))
            return list(profiles)
        converted = []
        for profile in profiles:
            if not has_payload(profile):
                continue
            try:
                converted.append((profile, decode_profile(profile)))
            except UnsupportedProfile as exc:
                self.skipped_profiles += 1
                _logger.info("OTLP exporter skips %s: %s.", profile.key, exc)
            except (ProfileFormatError, ValueError) as exc:
                self.skipped_profiles += 1
                _logger.error(
                    "OTLP exporter cannot convert %s (%s); it is skipped here.", profile.key, exc
                )
        if not converted:
            return []
        timeout = self.config.timeout_millis
        if timeout_millis is not None:
            timeout = min(timeout, max(timeout_millis, 0.0))
        deadline = time.monotonic() + timeout / 1000
        unsent: List[Profile] = []
        for group, alone in self._groups(converted, build_request):
            request = alone if alone is not None else build_request(group)
            body = request.SerializeToString()
            outcome = self._send(body, deadline)
            if outcome == _SENT:
                self.sent_profiles += len(group)
            elif outcome == _DROPPED:
                self.refused_profiles += len(group)
            else:
                unsent.extend(profile for profile, _ in group)
        return unsent

    def _groups(self, converted: List[Any], build: Any) -> Iterator[Tuple[List[Any], Any]]:
        """Profiles packed into requests of at most ``max_request_bytes`` (receivers refuse
        bigger messages: gRPC's default limit is 4 MiB); a bigger profile goes alone. A
        group of one comes with its request (built to be measured: building it again would
        double the cost of the usual batch of one), else ``None``. One group at a time,
        so that only one request is held."""
        group: List[Any] = []
        alone: Any = None
        size = 0
        for item in converted:
            request = build([item])
            own = request.ByteSize()
            if group and size + own <= self.max_request_bytes:
                group.append(item)
                size += own
                alone = None
            else:
                if group:
                    yield group, alone
                group, alone, size = [item], request, own
        if group:
            yield group, alone

    def _send(self, body: bytes, deadline: float) -> str:
        """One request, retried within ``deadline``: ``_SENT`` once the receiver took it,
        ``_DROPPED`` if it refused the content, else ``_UNSENT``."""
        backoff = Backoff(deadline)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._report_transient("no answer before the export deadline")
                return _UNSENT
            if self._stopped:  # shut down meanwhile: no new channel, no more tries
                return _UNSENT
            wait = self._not_before - time.monotonic()
            if wait > 0:  # e.g. a re-send from the spool before the time the receiver asked
                self._report_transient(f"the receiver asked to wait {wait:.1f} s more")
                return _UNSENT
            try:
                if self.config.protocol == GRPC:
                    response = self._send_grpc(body, remaining)
                else:
                    response = self._send_http(body, deadline)
            except _Failure as failure:
                if not failure.retry:
                    self._report_permanent(str(failure), failure.drop)
                    return _DROPPED if failure.drop else _UNSENT
                # the receiver's Retry-After / RetryInfo is a floor: never sooner than asked,
                # never a tight loop when it asks for 0
                delay = backoff.next_delay()
                if delay is not None and failure.wait is not None:
                    delay = max(delay, failure.wait)
                if delay is None or delay >= deadline - time.monotonic():
                    if failure.wait is not None:  # honoured by the next exports too
                        self._not_before = time.monotonic() + failure.wait
                    self._report_transient(str(failure))
                    return _UNSENT
                time.sleep(delay)
                continue
            self._succeeded(response)
            return _SENT

    # -- HTTP ------------------------------------------------------------------------------
    def _send_http(self, body: bytes, deadline: float) -> bytes:
        headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": USER_AGENT,  # a user-agent of the configured headers replaces it
            **self.config.headers,
        }
        if self.config.compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        context = self._tls.context if self._tls is not None else None
        try:
            return post(self.config.endpoint, body, headers, deadline, context)
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                location = redact_url(str(exc.headers.get("Location", "")))[:_MAX_MESSAGE]
                raise _Failure(
                    f"HTTP {exc.code}: the receiver redirects to {location!r}, which is not "
                    "followed (a POST would lose its body); set the endpoint to that URL",
                    False,
                ) from None
            message = _http_message(exc)
            if exc.code in RETRYABLE_HTTP:
                raise _Failure(
                    f"HTTP {exc.code} {message}", True, _retry_after(exc.headers.get("Retry-After"))
                ) from None
            if exc.code == 404 and urlsplit(self.config.endpoint).path in ("", "/"):
                message += (
                    f" (the endpoint is used as given: its path is likely {HTTP_PATH}; "
                    "OTEL_EXPORTER_OTLP_ENDPOINT, unlike the profiles one, gets it added)"
                )
            raise _refused(f"HTTP {exc.code} {message}", exc.code in REFUSED_DATA_HTTP) from None
        except http.client.BadStatusLine as exc:
            if _is_http2_frame(str(exc.args[0] if exc.args else "")):
                raise _Failure(HTTP_TO_GRPC, False) from None
            raise _Failure(f"BadStatusLine: {exc!r}"[:_MAX_MESSAGE], True) from None
        except (OSError, TimeoutError, http.client.HTTPException) as exc:  # refused, reset, ...
            # a URLError wraps the cause; an SSLError's own ``reason`` is only a code name
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if is_handshake_refusal(reason):
                raise _Failure(handshake_failure(str(reason)[:_MAX_MESSAGE]), False) from None
            text = f"{type(exc).__name__}: {reason}"[:_MAX_MESSAGE]
            raise _Failure(text, True) from None

    # -- gRPC ------------------------------------------------------------------------------
    def _grpc_stub(self) -> Any:
        with self._lock:
            if self._stub is None:
                import grpc
                from opentelemetry.proto.collector.profiles.v1development import (
                    profiles_service_pb2_grpc,
                )

                target, _ = self.config.grpc_target()
                tls = self._tls
                # within an export's timeout the channel tries the receiver again (gRPC's
                # first wait, 1 s, is the floor)
                backoff = min(MAX_RECONNECT_BACKOFF_MS, max(int(self.config.timeout_millis), 1000))
                options = (
                    ("grpc.primary_user_agent", USER_AGENT),
                    ("grpc.max_reconnect_backoff_ms", backoff),
                )
                if tls is None:
                    self._channel = grpc.insecure_channel(target, options=options)
                else:
                    credentials = grpc.ssl_channel_credentials(
                        root_certificates=tls.root_certificates,
                        private_key=tls.private_key,
                        certificate_chain=tls.certificate_chain,
                    )
                    self._channel = grpc.secure_channel(target, credentials, options)
                self._stub = profiles_service_pb2_grpc.ProfilesServiceStub(self._channel)
            return self._stub

    def _send_grpc(self, body: bytes, timeout: float) -> bytes:
        import grpc
        from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
            ExportProfilesServiceRequest,
        )

        stub = self._grpc_stub()
        request = ExportProfilesServiceRequest.FromString(body)
        compression = grpc.Compression.Gzip if self.config.compression == "gzip" else None
        try:
            response = stub.Export(
                request,
                timeout=timeout,
                metadata=tuple(self.config.headers.items()),
                compression=compression,
            )
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            name = code.name if code is not None else "UNKNOWN"
            details = exc.details() if callable(getattr(exc, "details", None)) else ""
            details = str(details or "")[:_MAX_MESSAGE]
            message = f"gRPC {name}: {details}"
            if self._tls is not None and name == "UNAVAILABLE":
                if "handshake failed" in details.lower():
                    raise _Failure(handshake_failure(message), False) from None
                if "socket closed" in details.lower() and self._tls.private_key is None:
                    message += CLOSED_HINT
            if name == "UNAVAILABLE" and "Failed parsing HTTP/2" in details:
                raise _Failure(GRPC_TO_HTTP, False) from None
            if name == "RESOURCE_EXHAUSTED" and "larger than max" in details:
                message += (
                    "; the receiver's message size limit (gRPC's default is 4 MiB) is below "
                    "this request's (Collector: raise max_recv_msg_size_mib)"
                )
            delay = _grpc_retry_delay(exc)
            if name in RETRYABLE_GRPC or (name == "RESOURCE_EXHAUSTED" and delay is not None):
                raise _Failure(message, True, delay) from None
            raise _refused(message, name in REFUSED_DATA_GRPC) from None
        return bytes(response.SerializeToString())

    # -- outcomes --------------------------------------------------------------------------
    def _succeeded(self, response: bytes) -> None:
        from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
            ExportProfilesServiceResponse,
        )

        if self._failing:
            _logger.info("OTLP profiles receiver %s works again.", self.destination)
        self._failing = False
        self._reported.clear()
        try:
            parsed = ExportProfilesServiceResponse.FromString(response)
        except Exception:  # noqa: BLE001 - an empty or non-protobuf 2xx body is a success
            return
        partial = parsed.partial_success
        if partial.rejected_profiles or partial.error_message:
            self.rejected_profiles += int(partial.rejected_profiles)
            _logger.warning(
                "OTLP profiles receiver %s rejected %d profile(s): %s",
                self.destination,
                partial.rejected_profiles,
                partial.error_message[:_MAX_MESSAGE] or "(no message)",
            )

    def _report_permanent(self, message: str, drop: bool = False) -> None:
        if message in self._reported:
            return
        self._reported.add(message)
        _logger.error(
            "Could not send profiles to %s: %s. Retrying will not fix this, so it is not "
            "retried%s.",
            self.destination,
            message,
            (
                "; the receiver refused their content, so they are dropped (counted in "
                "refused_profiles), as the OTLP specification says"
            )
            if drop
            else "",
        )

    def _report_transient(self, message: str) -> None:
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        _logger.log(level, "Could not send profiles to %s: %s", self.destination, message)

    def shutdown(self) -> None:
        self._stopped = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()


def _http_message(exc: Any) -> str:
    """The receiver's message: a ``google.rpc.Status`` body, or text."""
    try:
        data = exc.read(4096)
    except Exception:  # noqa: BLE001
        return str(exc.reason)
    message = ""
    content_type = str(exc.headers.get("Content-Type", "")) if exc.headers else ""
    if "protobuf" in content_type:  # a google.rpc.Status: its message is field 2
        try:
            for number, _, value in fields(data):
                if number == 2 and isinstance(value, bytes):
                    message = value.decode("utf-8", "replace")
        except ValueError:
            message = ""
    else:
        message = data.decode("utf-8", "replace").strip()
    return (message or str(exc.reason))[:_MAX_MESSAGE]


def _is_http2_frame(line: str) -> bool:
    """Whether an answer's first line is an HTTP/2 frame: a 3-byte length, then the type
    ``SETTINGS`` (4), which an HTTP/2-only server (gRPC) sends first, to HTTP/1.1 too."""
    return len(line) >= 9 and line[3] == "\x04" and not line.startswith("HTTP/")


def _grpc_retry_delay(exc: Any) -> Optional[float]:
    trailers: Tuple[Any, ...] = ()
    try:
        trailers = tuple(exc.trailing_metadata() or ())
    except Exception:  # noqa: BLE001
        return None
    for key, value in trailers:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return _retry_info(value)
    return None


def otlp_exporter_from_env() -> OtlpProfileExporter:
    """The ``otlp`` exporter of ``OTEL_PROFILES_EXPORTER``."""
    return OtlpProfileExporter(config_from_env())
