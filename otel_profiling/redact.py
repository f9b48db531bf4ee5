"""Keeping secrets out of ``repr``, logs and errors."""

from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import urlsplit

_SECRET_NAME = re.compile(
    r"(key|secret|token|password|passwd|credential|sas|connection_string|signature|auth)",
    re.IGNORECASE,
)
_SAFE_NAMES = {"endpoint_url", "region_name", "use_ssl", "anon", "key_template"}


def redact_options(options: Mapping[str, Any]) -> dict:
    """A copy of fsspec ``storage_options`` with secret-looking values replaced by ``'***'``."""
    out: dict = {}
    for name, value in options.items():
        if isinstance(value, Mapping):
            out[name] = redact_options(value)
        elif name not in _SAFE_NAMES and _SECRET_NAME.search(name) and value is not None:
            out[name] = "***"
        elif isinstance(value, str):  # an endpoint_url may carry user:password@
            out[name] = redact_url(value)
        else:
            out[name] = value
    return out


# user-info (``user:password@``) after a scheme, anywhere in a text
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s?#]*@")
# a secret-looking query parameter (``?sig=...``, ``&X-Amz-Signature=...``)
_QUERY_SECRET = re.compile(
    r"([?&][A-Za-z0-9_.\-]*(?:key|secret|token|password|credential|signature|sig)"
    r"[A-Za-z0-9_.\-]*=)[^&#\s]*",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``scheme://user:password@host/...?sig=...`` → ``scheme://***@host/...?sig=***``.

    Works on any text: every URL in it is redacted.
    """
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub(r"\1***@", url))


def url_credentials(url: str) -> bool:
    """Whether ``url`` carries user-info with a password (``scheme://user:password@host``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return "@" in parts.netloc and ":" in parts.netloc.rpartition("@")[0]


def url_userinfo(url: str) -> bool:
    """Whether ``url`` carries any user-info (``scheme://something@host``)."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False


def secret_values(options: Mapping[str, Any]) -> list:
    """The secret-looking string values in ``options`` (nested), longest first."""
    found: list = []
    for name, value in options.items():
        if isinstance(value, Mapping):
            found.extend(secret_values(value))
        elif (
            isinstance(value, str)
            and len(value) >= 4
            and name not in _SAFE_NAMES
            and _SECRET_NAME.search(name)
        ):
            found.append(value)
    return sorted(set(found), key=len, reverse=True)


def scrub(text: str, secrets: list) -> str:
    """``text`` with every known secret value replaced by ``***`` and URLs redacted."""
    for value in secrets:
        text = text.replace(value, "***")
    return redact_url(text)
