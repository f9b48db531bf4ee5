"""TLS for the OTLP exporter: the certificate files, loaded once, and what a refusal means.

The files (``OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE``, ``_CLIENT_KEY``,
``_CLIENT_CERTIFICATE``, PEM) are read and checked when the exporter is made,
never while sending: a file that cannot be used is a configuration error
naming the variable and the path, not a network error to retry. The CA file
replaces the system's trusted CAs, as in OpenTelemetry's exporters; the client
key and certificate go together (mutual TLS). The key's content never appears
in a message or ``repr``.

A handshake the receiver's certificate fails, or the receiver refuses, will
fail again the same way: ``handshake_failure`` words it with its fix, and the
exporter does not retry it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Optional

from otel_profiling.environment_variables import (
    OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY,
)

VARIABLES = {
    "certificate": OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE,
    "client_key": OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY,
    "client_certificate": OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE,
}
"""Each TLS setting of ``OtlpConfig`` and the variable that sets it."""

CLIENT_SETTINGS = ("client_key", "client_certificate")

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"

# an SSLError that says the connection dropped, not that the handshake was refused
_DROPPED = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


class TlsSettingError(ValueError):
    """A TLS file that cannot be used: which setting, its path, and the problem."""

    def __init__(self, setting: str, path: str, problem: str) -> None:
        self.setting = setting
        self.path = path
        self.problem = problem
        super().__init__(f"{VARIABLES[setting]}={path!r} cannot be used: {problem}")


@dataclass(frozen=True)
class Tls:
    """The loaded files: an ``ssl.SSLContext`` for HTTPS, the PEM bytes for gRPC."""

    context: ssl.SSLContext = field(repr=False)
    root_certificates: Optional[bytes] = field(default=None, repr=False)
    private_key: Optional[bytes] = field(default=None, repr=False)
    certificate_chain: Optional[bytes] = field(default=None, repr=False)


def _read(setting: str, path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise TlsSettingError(setting, path, f"it cannot be read ({exc.strerror or exc})") from None


def _no_passphrase() -> str:
    raise TlsSettingError(
        "client_key", "", "the key is encrypted; give a key file without a passphrase"
    )


def load_tls(
    certificate: Optional[str] = None,
    client_key: Optional[str] = None,
    client_certificate: Optional[str] = None,
) -> Tls:
    """Read and check the files; ``TlsSettingError`` names the first one that cannot be used."""
    context = ssl.create_default_context()
    root = None
    if certificate:
        root = _read("certificate", certificate)
        if _PEM_CERTIFICATE not in root:
            raise TlsSettingError(
                "certificate", certificate, "it holds no PEM certificate (-----BEGIN CERTIFICATE)"
            )
        context = ssl.create_default_context(cadata=root.decode("ascii", "replace"))
    if bool(client_key) != bool(client_certificate):
        given, missing = (
            ("client_key", "client_certificate") if client_key else CLIENT_SETTINGS[::-1]
        )
        raise TlsSettingError(
            given,
            str(client_key or client_certificate),
            f"mutual TLS needs {VARIABLES[missing]} too",
        )
    key = chain = None
    if client_key and client_certificate:
        key = _read("client_key", client_key)
        chain = _read("client_certificate", client_certificate)
        if _PEM_CERTIFICATE not in chain:
            raise TlsSettingError(
                "client_certificate", client_certificate, "it holds no PEM certificate"
            )
        try:
            context.load_cert_chain(client_certificate, client_key, password=_no_passphrase)
        except TlsSettingError as exc:
            raise TlsSettingError("client_key", client_key, exc.problem) from None
        except ssl.SSLError as exc:
            raise TlsSettingError(
                "client_key",
                client_key,
                f"it does not match {VARIABLES['client_certificate']} or is no PEM private key "
                f"({exc.reason or exc})",
            ) from None
    return Tls(context, root, key, chain)


def is_handshake_refusal(error: object) -> bool:
    """An ``ssl`` error that will recur on every try (not a dropped connection)."""
    return isinstance(error, ssl.SSLError) and not isinstance(error, _DROPPED)


def handshake_failure(detail: str) -> str:
    """What a failed TLS handshake means, and the fix (``detail``: the TLS library's words)."""
    if "CERTIFICATE_VERIFY_FAILED" in detail:
        return (
            f"the receiver's TLS certificate is not trusted ({detail}). Fix: set "
            f"{OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE} to the PEM file of the CA that signed it"
        )
    if "ALERT" in detail.upper():
        return (
            f"the receiver refused the TLS handshake ({detail}). If it requires a client "
            f"certificate (mutual TLS), set {OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY} and "
            f"{OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE} to one it trusts"
        )
    return (
        f"TLS handshake failed ({detail}). Check that the receiver serves TLS on this port; "
        "for plain text use an http:// endpoint"
    )


CLOSED_HINT = (
    "; a receiver that requires a client certificate (mutual TLS) closes the connection "
    f"without one: then set {OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY} and "
    f"{OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE}"
)
"""Added to a gRPC "socket closed" over TLS without a client certificate: gRPC reports a
refused client no other way, so it stays a retried failure, with the likely fix named."""
