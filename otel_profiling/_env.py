"""Reading ``OTEL_*`` environment variables the way the OpenTelemetry SDK does.

An invalid value never raises: it is logged once, naming the variable, and the
default is used instead, so a typo in a deployment cannot crash the host.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

_logger = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _raw(name: str) -> Optional[str]:
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _invalid(name: str, value: str, expected: str, default: object) -> None:
    _logger.warning(
        "Invalid value %r for environment variable %s: expected %s; using the default %r.",
        value,
        name,
        expected,
        default,
    )


def env_str(name: str, default: Optional[str] = None) -> Optional[str]:
    """The variable's stripped value, or ``default`` when unset or empty."""
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    _invalid(name, value, "true or false", default)
    return default


def env_int(name: str, default: int, minimum: int = 0) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        _invalid(name, value, f"an integer >= {minimum}", default)
        return default
    if number < minimum:
        _invalid(name, value, f"an integer >= {minimum}", default)
        return default
    return number


def env_float(name: str, default: Optional[float], minimum: float = 0.0) -> Optional[float]:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        _invalid(name, value, f"a number >= {minimum}", default)
        return default
    if number < minimum or number != number:
        _invalid(name, value, f"a number >= {minimum}", default)
        return default
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]
