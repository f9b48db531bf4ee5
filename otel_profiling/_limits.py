"""The longest durations the library accepts, and the check constructors share.

Every duration the library waits on is finite and bounded: an infinite or huge
one would leave a profiler (yappi, tracemalloc) running for good, and one
above ``threading.TIMEOUT_MAX`` makes the waiting thread die with
``OverflowError``. Constructors raise ``ValueError`` naming the argument and
its range; environment values are clamped into their ranges by ``_env``.
"""

from __future__ import annotations

import math

MAX_WINDOW_SECONDS = 3600.0
"""The longest a profile may run: a window, an HTTP request, an open-ended HTTP window."""

MAX_PERIOD_SECONDS = 86400.0
"""The longest wait between two profiles: an interval, a cooldown."""

MAX_EXPORT_TIMEOUT_MILLIS = 600_000
"""The longest export timeout (batch processor, exporters): shutdown waits that long at most."""

ENV_MIN_EXPORT_TIMEOUT_MILLIS = 1_000
"""The shortest export timeout from the environment: a few ms would fail every export."""


def check_number(
    what: str,
    value: object,
    *,
    minimum: float = 0.0,
    maximum: float = math.inf,
    allow_minimum: bool = False,
    unit: str = "seconds",
) -> float:
    """``value`` as a finite float in range, else ``ValueError`` naming ``what`` and the range.

    The range is ``(minimum, maximum]``, or ``[minimum, maximum]`` with
    ``allow_minimum``.
    """
    low = f">= {minimum:g}" if allow_minimum else f"> {minimum:g}"
    high = "" if maximum == math.inf else f" and <= {maximum:g}"
    wanted = f"a number of {unit} {low}{high}"
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what}={value!r} is not a number: use {wanted}.") from None
    too_low = number < minimum or (number == minimum and not allow_minimum)
    if not math.isfinite(number) or too_low or number > maximum:
        raise ValueError(f"{what}={value!r}: use {wanted}.")
    return number
