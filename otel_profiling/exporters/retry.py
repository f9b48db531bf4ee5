"""Which export errors are worth retrying, and how long to wait between tries.

A transient failure (connection refused or reset, timeout, HTTP 5xx,
``SlowDown``, throttling) may succeed on the next try, so it is retried with
exponential backoff and full jitter until a deadline. A permanent one (access
denied, invalid credentials, missing bucket, bad request) will fail the same
way every time: it is reported once with its remedy instead of being retried
in a loop.
"""

from __future__ import annotations

import errno
import random
import socket
import time
from typing import Iterator, Optional

# HTTP statuses that say "try again later".
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# S3 error codes that are transient whatever the status says.
_TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "OperationAborted",
}
_TRANSIENT_ERRNOS = {
    errno.EBUSY,
    errno.EAGAIN,
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
}
# Exception class names (from botocore, aiohttp, urllib3, ...) that mean "the
# network or the server failed, not the request"; matched by name so that no
# client library has to be imported here.
_TRANSIENT_NAMES = {
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionError",
    "HTTPClientError",
    "ResponseParserError",
    "IncompleteRead",
    "ClientOSError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "ServerTimeoutError",
    "ClientPayloadError",
    "FSTimeoutError",
    "ProxyConnectionError",
}


class PermanentExportError(Exception):
    """An export failure that retrying will not fix; carries the remedy."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _http_status_and_code(exc: BaseException) -> tuple[Optional[int], str]:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None, ""
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(response.get("Error", {}).get("Code", ""))
    return (int(status) if status is not None else None), code


def is_transient(exc: BaseException) -> bool:
    """``True`` if ``exc`` (or what caused it) is a failure worth retrying."""
    for link in _chain(exc):
        if isinstance(link, PermanentExportError):
            return False
        status, code = _http_status_and_code(link)
        if code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS:
            return True
        if status is not None and 400 <= status < 500:
            return False
        if isinstance(link, (PermissionError, FileNotFoundError, ValueError, TypeError)):
            return False
        if isinstance(link, (TimeoutError, socket.timeout, ConnectionError)):
            return True
        if isinstance(link, OSError) and link.errno in _TRANSIENT_ERRNOS:
            return True
        if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(link).__mro__):
            return True
    # An unknown failure (EIO with no cause, ...) is given the benefit of the doubt:
    # retrying within the deadline costs little, and the profile is spooled afterwards.
    return not isinstance(exc, (PermissionError, FileNotFoundError))


def remedy_for(exc: BaseException) -> str:
    """What the operator should do about a permanent failure."""
    given = getattr(exc, "remedy", None)
    if given:
        return str(given)
    for link in _chain(exc):
        _, code = _http_status_and_code(link)
        if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}:
            return (
                "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / "
                "AWS_SESSION_TOKEN, or the exporter's access_key / secret_key)"
            )
    if isinstance(exc, PermissionError):
        return (
            "check the credentials and that they may write to the target "
            "(s3:PutObject, and s3:CreateBucket if the bucket is to be created)"
        )
    if isinstance(exc, FileNotFoundError):
        return "create the bucket or directory, or allow the exporter to create it"
    return "check the exporter's URL and storage options"


class Backoff:
    """Exponential backoff with full jitter, never sleeping past ``deadline``."""

    def __init__(
        self, deadline: float, initial: float = 0.1, maximum: float = 5.0, factor: float = 2.0
    ) -> None:
        self.deadline = deadline
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempts = 0

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self) -> bool:
        """Sleep before the next try; ``False`` (without sleeping) if the deadline would pass."""
        cap = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        delay = random.uniform(cap / 2, cap)
        if delay >= self.remaining():
            return False
        time.sleep(delay)
        return True
