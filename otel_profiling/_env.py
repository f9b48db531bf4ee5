"""Reading ``OTEL_*`` environment variables: each value is checked where it is read.

A value that cannot be used never raises. One warning names the variable, the
value (never a secret's) and what is used instead: the default, or, for a
number outside its range, the nearest bound. So a typo in a deployment can
neither stop the host nor leave a profiler running for good.

The rules, for every variable:

- unset, empty or only whitespace: the default, silently (as the OpenTelemetry
  specification says of an empty value); surrounding whitespace is ignored;
- not valid UTF-8: the default;
- a number must be written in ASCII (``int("²")`` fails and ``int("٣")`` is 3:
  neither is what a deployment meant) and be finite; a negative one, or one
  that does not parse, gets the default; one outside the variable's range is
  clamped to the nearest bound.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from contextvars import ContextVar
from typing import Callable, Iterator, Optional, Set, TypeVar

_logger = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

T = TypeVar("T")
N = TypeVar("N", int, float)


Show = Callable[[str], str]
"""How a value appears in a warning: ``repr``, ``hidden``, or a redaction."""


_warned: ContextVar[Optional[Set[str]]] = ContextVar("otel_profiling_env_warned", default=None)


def hidden(value: str) -> str:
    """For secrets: the value never appears."""
    return "(not shown: it may hold a secret)"


@contextlib.contextmanager
def one_warning_per_variable() -> Iterator[None]:
    """Within: each variable is warned about once, however many pieces read it.

    One setup reads some variables several times (the batch settings and the
    spool once per exporter, the window duration for the interval and the
    start); the user should still see one warning per bad value.
    """
    token = _warned.set(set())
    try:
        yield
    finally:
        _warned.reset(token)


def warn_env(name: str, message: str, *args: object) -> None:
    """Log ``message`` about variable ``name``, unless it was already warned about (see above)."""
    seen = _warned.get()
    if seen is not None:
        if name in seen:
            return
        seen.add(name)
    _logger.warning(message, *args)


def warn_invalid(
    name: str, value: str, expected: str, default: object, *, show: Show = repr
) -> None:
    """The one warning for a value that cannot be used: the default is used instead."""
    instead = "ignoring it (as if unset)" if default is None else f"using the default {default!r}"
    warn_env(
        name,
        "Invalid value %s for environment variable %s: expected %s; %s.",
        show(value),
        name,
        expected,
        instead,
    )


def warn_clamped(name: str, value: str, expected: str, used: object) -> None:
    """The one warning for a number outside its range: the nearest bound is used."""
    warn_env(
        name,
        "Invalid value %r for environment variable %s: expected %s; using %r, the nearest bound.",
        value,
        name,
        expected,
        used,
    )


def _raw(name: str, default: object = None, *, show: Show = repr) -> Optional[str]:
    """The stripped value; ``None`` when unset, blank, or not UTF-8 (which is warned about)."""
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 arrive as lone surrogates
        warn_invalid(name, value, "UTF-8 text", default, show=show)
        return None
    value = value.strip()
    return value or None


def env_str(name: str, default: Optional[str] = None, *, show: Show = repr) -> Optional[str]:
    """The variable's stripped value, or ``default`` when unset, blank or not UTF-8.

    ``show``: how a warning shows the value (``hidden`` for a secret).
    """
    value = _raw(name, default, show=show)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name, default)
    if value is None:
        return default
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    warn_invalid(name, value, "true or false", default)
    return default


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _expected(kind: str, minimum: float, maximum: Optional[float], unit: str) -> str:
    unit = f" {unit}" if unit else ""
    if maximum is None:
        return f"{kind} >= {_number_text(minimum)}{unit}"
    return f"{kind} from {_number_text(minimum)} to {_number_text(maximum)}{unit}"


def _parse(text: str, parse: Callable[[str], N]) -> Optional[N]:
    """``text`` as a finite, non-negative number written in ASCII; ``None`` if it is not one."""
    if not text.isascii():
        return None
    try:
        number = parse(text)
    except ValueError:
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None  # (an int is always finite, and may be too large for a float)
    return number if number >= 0 else None


def _clamp(
    name: str,
    text: str,
    number: N,
    minimum: N,
    maximum: Optional[N],
    expected: str,
    allow_zero: bool = False,
) -> N:
    if number < minimum and not (allow_zero and number == 0):
        warn_clamped(name, text, expected, minimum)
        return minimum
    if maximum is not None and number > maximum:
        warn_clamped(name, text, expected, maximum)
        return maximum
    return number


def env_int(
    name: str, default: int, minimum: int = 0, *, maximum: Optional[int] = None, unit: str = ""
) -> int:
    """An integer variable (``unit`` for the warning, e.g. ``"ms"``), clamped into range."""
    text = _raw(name, default)
    if text is None:
        return default
    expected = _expected("an integer", minimum, maximum, unit)
    number = _parse(text, int)
    if number is None:
        warn_invalid(name, text, expected, default)
        return default
    return _clamp(name, text, number, minimum, maximum, expected)


def env_float(
    name: str,
    default: Optional[float],
    minimum: float = 0.0,
    *,
    maximum: Optional[float] = None,
    unit: str = "",
    allow_zero: bool = False,
) -> Optional[float]:
    """A number variable (``unit`` for the warning, e.g. ``"seconds"``), clamped into range.

    ``allow_zero``: 0 is kept (it means "off"), not raised to ``minimum``.
    """
    text = _raw(name, default)
    if text is None:
        return default
    expected = _expected("a number", minimum, maximum, unit)
    if allow_zero:
        expected = f"0 or {expected}"
    number = _parse(text, float)
    if number is None:
        warn_invalid(name, text, expected, default)
        return default
    return _clamp(name, text, number, float(minimum), maximum, expected, allow_zero)


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name, default)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def from_env(what: str, build: Callable[[], T], fallback: T) -> T:
    """``build()``, or ``fallback`` when it fails: one piece of a setup never stops the rest.

    The env readers do not raise on bad values; this is the last guard against
    anything else (a plugin, a bug), logged with its traceback, naming ``what``.
    """
    try:
        return build()
    except Exception:  # noqa: BLE001 - the host application must start regardless
        _logger.error(
            "otel-profiling: %s could not be set up and is left out.", what, exc_info=True
        )
        return fallback
