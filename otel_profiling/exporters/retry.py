"""Which export errors are worth retrying, what to do about the others, and backoff.

A transient failure (connection refused or reset, timeout, HTTP 5xx,
``SlowDown``, throttling) may succeed on the next try, so it is retried with
exponential backoff and full jitter until a deadline. A permanent one (access
denied, invalid or missing credentials, missing bucket, invalid bucket name,
a path through a file, a name too long, a read-only target, a full disk) will
fail the same way on the next try: it is not retried, and is reported once
with its remedy.
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
# Local or mounted storage: the same call fails the same way until someone acts.
_PERMANENT_ERRNOS = {
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EINVAL,
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
# ... and names of errors in the request or the configuration.
_PERMANENT_NAMES = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "ParamValidationError",
    "InvalidS3AddressingStyleError",
    "UnknownSignatureVersionError",
}

_CREDENTIALS_REMEDY = (
    "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, "
    "or the exporter's access_key / secret_key, or storage_options key / secret)"
)
_REMEDY_BY_CODE = {
    "InvalidAccessKeyId": _CREDENTIALS_REMEDY,
    "SignatureDoesNotMatch": _CREDENTIALS_REMEDY,
    "ExpiredToken": _CREDENTIALS_REMEDY,
    "InvalidToken": _CREDENTIALS_REMEDY,
    "InvalidBucketName": (
        "use a valid bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, "
        "starting and ending with a letter or digit"
    ),
    "NoSuchBucket": "create the bucket, or let the exporter create it (create_container=True)",
    "AccessDenied": (
        "check that the credentials may write to the target (s3:PutObject, and "
        "s3:CreateBucket if the bucket is to be created)"
    ),
}
_REMEDY_BY_NAME = {
    "NoCredentialsError": (
        "no credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an "
        "AWS profile or role), or pass key / secret in the storage options"
    ),
    "PartialCredentialsError": _CREDENTIALS_REMEDY,
    "ParamValidationError": (
        "the request was refused before sending: check the bucket name and the URL "
        "(OTEL_EXPORTER_FSSPEC_PROFILES_URL) and the storage options"
    ),
}
_REMEDY_BY_ERRNO = {
    errno.ENOTDIR: "a part of the target path is a file, not a directory: choose another path",
    errno.EISDIR: "the target path is a directory: choose another key template",
    errno.ENAMETOOLONG: (
        "the path is too long for the file system: shorten the URL path, the key template, "
        "or the values of their placeholders"
    ),
    errno.ELOOP: "the target path loops through symbolic links: choose another path",
    errno.EROFS: "the target file system is read-only: choose a writable location",
    errno.EACCES: "the process may not write there: fix the directory's permissions or owner",
    errno.EPERM: "the process may not write there: fix the directory's permissions or owner",
    errno.ENOSPC: "the target disk is full: free space or choose another location",
    errno.EDQUOT: "the disk quota is exhausted: free space or raise the quota",
    errno.EFBIG: "the profile is larger than the target accepts: choose another location",
    errno.EINVAL: "the target refused the path: check the URL and the key template",
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


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


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
        names = _names(link)
        if names & _PERMANENT_NAMES:
            return False
        if isinstance(link, (PermissionError, FileNotFoundError, ValueError, TypeError)):
            return False
        if isinstance(link, NotImplementedError):  # a read-only or incomplete fsspec backend
            return False
        if isinstance(link, (TimeoutError, socket.timeout, ConnectionError)):
            return True
        if isinstance(link, OSError) and link.errno in _PERMANENT_ERRNOS:
            return False
        if isinstance(link, OSError) and link.errno in _TRANSIENT_ERRNOS:
            return True
        if names & _TRANSIENT_NAMES:
            return True
    # An unknown failure (EIO with no cause, ...) is given the benefit of the doubt:
    # retrying within the deadline costs little, and the profile is spooled afterwards.
    return True


def remedy_for(exc: BaseException) -> str:
    """What the operator should do about a permanent failure."""
    given = getattr(exc, "remedy", None)
    if given:
        return str(given)
    for link in _chain(exc):
        _, code = _http_status_and_code(link)
        if code in _REMEDY_BY_CODE:
            return _REMEDY_BY_CODE[code]
        for name in _names(link) & set(_REMEDY_BY_NAME):
            return _REMEDY_BY_NAME[name]
        if isinstance(link, OSError) and link.errno in _REMEDY_BY_ERRNO:
            return _REMEDY_BY_ERRNO[link.errno]
    if isinstance(exc, PermissionError):
        return _REMEDY_BY_CODE["AccessDenied"]
    if isinstance(exc, FileNotFoundError):
        return "create the bucket or directory, or let the exporter create it"
    if isinstance(exc, NotImplementedError):
        return "this fsspec backend cannot write objects: choose a writable URL scheme"
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

    def next_delay(self) -> Optional[float]:
        """How long to wait before the next try; ``None`` if the deadline would pass first."""
        cap = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        delay = random.uniform(cap / 2, cap)
        return None if delay >= self.remaining() else delay

    def wait(self) -> bool:
        """Sleep before the next try; ``False`` (without sleeping) if the deadline would pass."""
        delay = self.next_delay()
        if delay is None:
            return False
        time.sleep(delay)
        return True
