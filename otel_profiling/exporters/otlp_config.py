"""Settings of the OTLP profiles exporter, read as OpenTelemetry's span exporters read theirs.

Each setting comes from its profiles variable (``OTEL_EXPORTER_OTLP_PROFILES_*``),
else the generic one (``OTEL_EXPORTER_OTLP_*``), else the default. As the
OpenTelemetry specification says, the generic endpoint is a base to which
HTTP adds ``/v1development/profiles``; the profiles endpoint is used as
given (``/v1/profiles`` or a vendor's path works). A value that cannot be
used gets one warning and the default; header values are never shown. So
does a TLS file that cannot be used (``otlp_tls`` checks it): it is ignored,
and a client key or certificate goes only with the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple
from urllib.parse import unquote, urlsplit

from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_INSECURE,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
)

from otel_profiling._env import env_bool, env_int, env_str, hidden, warn_invalid
from otel_profiling.environment_variables import (
    OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_PROFILES_COMPRESSION,
    OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROFILES_HEADERS,
    OTEL_EXPORTER_OTLP_PROFILES_INSECURE,
    OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL,
    OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT,
)
from otel_profiling.exporters.otlp_tls import CLIENT_SETTINGS, TlsSettingError, load_tls
from otel_profiling.redact import redact_url

HTTP_PROTOBUF = "http/protobuf"
GRPC = "grpc"
PROTOCOLS = (HTTP_PROTOBUF, GRPC)
HTTP_PATH = "/v1development/profiles"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_TIMEOUT_MILLIS = 10_000
MIN_TIMEOUT_MILLIS = 100
MAX_TIMEOUT_MILLIS = 600_000
COMPRESSIONS = ("gzip", "none")
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?[^/@]*@")  # scheme optional (gRPC)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")  # printable ASCII, as HTTP and gRPC metadata take


@dataclass
class OtlpConfig:
    """Where and how the exporter sends: the values a user may set, checked."""

    endpoint: str = ""
    protocol: str = HTTP_PROTOBUF
    headers: Dict[str, str] = field(default_factory=dict)
    timeout_millis: float = DEFAULT_TIMEOUT_MILLIS
    compression: str = "none"
    certificate: Optional[str] = None
    client_key: Optional[str] = None
    client_certificate: Optional[str] = None
    insecure: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"OTLP protocol {self.protocol!r} is not supported: choose "
                f"{' or '.join(PROTOCOLS)}."
            )
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                f"OTLP compression {self.compression!r} is not supported: choose gzip or none."
            )
        check_headers(self.headers)
        if not self.endpoint:
            self.endpoint = (
                DEFAULT_HTTP_ENDPOINT + HTTP_PATH
                if self.protocol == HTTP_PROTOBUF
                else DEFAULT_GRPC_ENDPOINT
            )
        try:
            scheme = urlsplit(self.endpoint).scheme
            if self.protocol == GRPC:
                self.grpc_target()
        except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
            raise ValueError(f"OTLP endpoint {shown_endpoint(self.endpoint)!r}: {exc}.") from None
        if _USERINFO.match(self.endpoint):
            raise ValueError(
                f"OTLP endpoint {shown_endpoint(self.endpoint)!r} holds user-info, which is "
                "never sent (and would show in errors): give credentials as a header, e.g. "
                "OTEL_EXPORTER_OTLP_PROFILES_HEADERS=authorization=Basic%20<base64>"
            )
        if self.protocol == HTTP_PROTOBUF and scheme not in ("http", "https"):
            raise ValueError(
                f"OTLP endpoint {shown_endpoint(self.endpoint)!r}: an HTTP endpoint is an "
                "http:// or https:// URL, e.g. http://collector:4318/v1development/profiles."
            )

    def __repr__(self) -> str:
        names = ", ".join(sorted(self.headers))
        files = "".join(
            f", {setting}={getattr(self, setting)!r}"
            for setting in ("certificate", "client_key", "client_certificate")
            if getattr(self, setting)
        )
        return (
            f"OtlpConfig(endpoint={shown_endpoint(self.endpoint)!r}, protocol={self.protocol!r}, "
            f"headers=[{names}] (values not shown), timeout_millis={self.timeout_millis:g}, "
            f"compression={self.compression!r}{files}, tls={self.uses_tls()})"
        )

    def uses_tls(self) -> bool:
        """HTTP: an ``https://`` endpoint. gRPC: ``https://``, or no scheme unless insecure."""
        if self.protocol == GRPC:
            return not self.grpc_target()[1]
        return urlsplit(self.endpoint).scheme == "https"

    def grpc_target(self) -> Tuple[str, bool]:
        """``host:port`` and whether the channel is plain text (no TLS)."""
        parts = urlsplit(self.endpoint if "//" in self.endpoint else f"//{self.endpoint}")
        target = parts.netloc or parts.path
        if parts.scheme == "https":
            return target, False
        if parts.scheme == "http":
            return target, True
        return target, bool(self.insecure)


def check_headers(headers: Dict[str, str]) -> None:
    """A header HTTP or gRPC would refuse only when sending, and then with its value in the
    error (a token in a log): refused here, naming the header, never its value."""
    for key, value in headers.items():
        if not _HEADER_NAME.fullmatch(key):
            raise ValueError(f"header name {key!r} is not a valid HTTP header name")
        if not _HEADER_VALUE.fullmatch(value):
            raise ValueError(
                f"the value of header {key!r} holds a control or non-ASCII character "
                "(not shown); headers take printable ASCII"
            )


def parse_headers(text: str) -> Dict[str, str]:
    """``key=value,...`` (values URL-decoded, as the specification says)."""
    headers: Dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("an item is not key=value")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    check_headers(headers)
    return headers


def _pick(profiles: str, generic: str) -> Tuple[Optional[str], str]:
    """The profiles variable's value, else the generic one's, and the name it came from."""
    value = env_str(profiles)
    return (value, profiles) if value is not None else (env_str(generic), generic)


def _tls_files(files: Dict[str, Tuple[Optional[str], str]]) -> Dict[str, Optional[str]]:
    """The TLS file settings that can be used; each that cannot gets one warning and is
    ignored (a client key or certificate with the other: one is no use alone)."""
    values = {setting: value for setting, (value, _) in files.items()}
    while any(values.values()):
        try:
            load_tls(**values)
            break
        except TlsSettingError as exc:
            dropped = CLIENT_SETTINGS if exc.setting in CLIENT_SETTINGS else (exc.setting,)
            also = " (no client certificate is sent)" if exc.setting in CLIENT_SETTINGS else ""
            warn_invalid(
                files[exc.setting][1],
                exc.path,
                f"a PEM file that can be used, but {exc.problem}{also}",
                None,
            )
            values.update(dict.fromkeys(dropped))
    return values


def _choice(profiles: str, generic: str, allowed: Tuple[str, ...], default: str) -> str:
    for name in (profiles, generic):
        value = env_str(name)
        if value is None:
            continue
        if value.lower() in allowed:
            return value.lower()
        warn_invalid(name, value, " or ".join(allowed), default)
        return default
    return default


def config_from_env() -> OtlpConfig:
    """The settings from the environment; never raises (a bad value: warning, default)."""
    protocol = _choice(
        OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL, PROTOCOLS, HTTP_PROTOBUF
    )
    endpoint_name = OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT
    given = env_str(endpoint_name, show=_shown_url)
    endpoint = given
    if given is None:
        endpoint_name = OTEL_EXPORTER_OTLP_ENDPOINT  # a base: HTTP adds the profiles path
        given = env_str(endpoint_name, show=_shown_url)
        http_base = given is not None and protocol == HTTP_PROTOBUF
        endpoint = given.rstrip("/") + HTTP_PATH if http_base and given is not None else given
    headers: Dict[str, str] = {}
    for name in (OTEL_EXPORTER_OTLP_PROFILES_HEADERS, OTEL_EXPORTER_OTLP_HEADERS):
        text = env_str(name, show=hidden)
        if text is None:
            continue
        try:
            headers = parse_headers(text)
        except ValueError as exc:
            expected = f"key=value pairs separated by commas that HTTP allows ({exc})"
            warn_invalid(name, text, expected, None, show=hidden)
        break
    timeout_name = (
        OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT
        if env_str(OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT) is not None
        else OTEL_EXPORTER_OTLP_TIMEOUT
    )
    timeout = env_int(
        timeout_name,
        DEFAULT_TIMEOUT_MILLIS,
        MIN_TIMEOUT_MILLIS,
        maximum=MAX_TIMEOUT_MILLIS,
        unit="ms",
    )
    compression = _choice(
        OTEL_EXPORTER_OTLP_PROFILES_COMPRESSION,
        OTEL_EXPORTER_OTLP_COMPRESSION,
        COMPRESSIONS,
        "none",
    )
    insecure_name = (
        OTEL_EXPORTER_OTLP_PROFILES_INSECURE
        if env_str(OTEL_EXPORTER_OTLP_PROFILES_INSECURE) is not None
        else OTEL_EXPORTER_OTLP_INSECURE
    )
    tls_files = _tls_files(
        {
            "certificate": _pick(
                OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE, OTEL_EXPORTER_OTLP_CERTIFICATE
            ),
            "client_key": _pick(
                OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY, OTEL_EXPORTER_OTLP_CLIENT_KEY
            ),
            "client_certificate": _pick(
                OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE,
                OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
            ),
        }
    )
    config = OtlpConfig(
        endpoint="",
        protocol=protocol,
        headers=headers,
        timeout_millis=timeout,
        compression=compression,
        insecure=env_bool(insecure_name, False),
        **tls_files,
    )
    if endpoint is not None and given is not None:
        try:
            config = OtlpConfig(**{**config.__dict__, "endpoint": endpoint})
        except ValueError:  # the variable's own value is shown, not the URL made from it
            warn_invalid(
                endpoint_name,
                given,
                _expected_endpoint(protocol, endpoint_name, given),
                config.endpoint,
                show=_shown_url,
            )
    return config


def shown_endpoint(url: str) -> str:
    """``url`` without its user-info, also where it has no scheme (``user:pw@host:4317``)."""
    return redact_url(_USERINFO.sub(r"\1***@", url))


def _shown_url(url: str) -> str:
    return repr(shown_endpoint(url))


def _expected_endpoint(protocol: str, name: str, given: str) -> str:
    no_userinfo = ""
    if _USERINFO.match(given):
        headers = OTEL_EXPORTER_OTLP_PROFILES_HEADERS
        no_userinfo = f" without user-info (credentials go in a header: {headers})"
    if protocol == GRPC:
        return "a URL such as http://collector:4317" + no_userinfo
    path = HTTP_PATH if name == OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT else ""
    return f"an http:// or https:// URL such as http://collector:4318{path}" + no_userinfo
