"""Who may use the HTTP trigger: the bearer token and the addresses it must guard.

A token is printable ASCII without spaces; off loopback it is required and
at least ``MIN_PUBLIC_TOKEN_LENGTH`` characters. It is compared in constant
time and never appears in a message.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from typing import Dict, Optional

MIN_PUBLIC_TOKEN_LENGTH = 16
"""Shortest token accepted on an address other than loopback."""


class HttpError(Exception):
    """An error response: status code and a message for the JSON body."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


_HOST_NAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$",
    re.ASCII,
)

HOST_HINT = "give a host name or IP address alone (such as 127.0.0.1, ::1 or 0.0.0.0)"
"""The fix for a refused host; callers add where the port goes."""


def bind_host(host: str) -> str:
    """``host`` as the server binds it (``[::1]`` → ``::1``); else ``ValueError`` saying why.

    ``""`` is every interface, as for ``socket.bind`` (the environment's empty
    value is unset: loopback).

    A URL, ``host:port`` or a value with spaces would only fail later, at bind
    time, or be taken for a public address and refused for want of a token:
    the message names the real problem instead.
    """
    if not isinstance(host, str):
        raise ValueError("it is not a string")
    if not host:
        return host  # every interface, as for ``socket.bind``
    if "://" in host:
        raise ValueError(f"it has a scheme ({host.split('://', 1)[0]}://)")
    if any(ch.isspace() for ch in host):
        raise ValueError("it has spaces")
    if "/" in host:
        raise ValueError("it has a path")
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in inner:
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            pass
        else:
            return inner
    if ":" in host:
        address, _, port = host.rpartition(":")
        bracketed = address.startswith("[") and address.endswith("]")
        if port.isascii() and port.isdigit() and address and (bracketed or ":" not in address):
            raise ValueError(f"it has a port (:{port})")
        raise ValueError("it is not an IP address (a colon is only valid in an IPv6 address)")
    if not _HOST_NAME.match(host):
        raise ValueError("it is not a host name (letters, digits, '-' and '.') or an IP address")
    return host


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token(host: str, token: Optional[str]) -> None:
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


def token_matches(token: Optional[bytes], header: Optional[str]) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (any header when there is none)."""
    if token is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token)
