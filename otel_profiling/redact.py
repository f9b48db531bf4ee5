"""Keeping secrets out of ``repr``, logs and errors."""

from __future__ import annotations

import re
from typing import Any, Mapping

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
        else:
            out[name] = value
    return out


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/@]*@")


def redact_url(url: str) -> str:
    """``scheme://user:password@host/...`` → ``scheme://***@host/...``."""
    return _USERINFO.sub(r"\1***@", url)


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
    """``text`` with every known secret value replaced by ``***``."""
    for value in secrets:
        text = text.replace(value, "***")
    return redact_url(text)
