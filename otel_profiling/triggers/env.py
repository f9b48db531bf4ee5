"""Triggers chosen by ``OTEL_PROFILING_*`` variables.

Each value is checked here, where it is read (see ``otel_profiling._env``): a
duration or cooldown outside its range is clamped to the nearest bound, and a
trigger whose settings cannot be used stays off; either way with one warning
naming the variable. The ranges below are the README's.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Callable, Dict, List, Optional

from otel_profiling._env import (
    env_bool,
    env_float,
    env_str,
    from_env,
    hidden,
    warn_env,
    warn_invalid,
)
from otel_profiling._limits import MAX_PERIOD_SECONDS, MAX_WINDOW_SECONDS
from otel_profiling.environment_variables import (
    OTEL_PROFILING_AT_START,
    OTEL_PROFILING_CPU_COOLDOWN,
    OTEL_PROFILING_CPU_FOR_SECONDS,
    OTEL_PROFILING_CPU_THRESHOLD,
    OTEL_PROFILING_DURATION,
    OTEL_PROFILING_HTTP_HOST,
    OTEL_PROFILING_HTTP_MAX_SECONDS,
    OTEL_PROFILING_HTTP_PORT,
    OTEL_PROFILING_HTTP_TOKEN,
    OTEL_PROFILING_INTERVAL,
    OTEL_PROFILING_JITTER,
    OTEL_PROFILING_MEMORY_COOLDOWN,
    OTEL_PROFILING_MEMORY_THRESHOLD,
    OTEL_PROFILING_SIGNAL,
    OTEL_PROFILING_THRESHOLD_DURATION,
)
from otel_profiling.triggers.base import Trigger
from otel_profiling.triggers.http import DEFAULT_MAX_SECONDS, HttpTrigger
from otel_profiling.triggers.http_auth import HOST_HINT, bind_host
from otel_profiling.triggers.interval import IntervalTrigger
from otel_profiling.triggers.safe_signals import ALLOWED, refusal
from otel_profiling.triggers.signals import SignalTrigger, parse_signal
from otel_profiling.triggers.startup import StartupTrigger
from otel_profiling.triggers.thresholds import CpuThresholdTrigger, MemoryThresholdTrigger

DEFAULT_SIGNAL = "SIGUSR2"
DEFAULT_DURATION = 10.0
DEFAULT_COOLDOWN = 300.0
DEFAULT_CPU_FOR_SECONDS = 30.0
MIN_INTERVAL_SECONDS = 1.0
MIN_DURATION_SECONDS = 0.1
MIN_COOLDOWN_SECONDS = 1.0
MIN_HTTP_MAX_SECONDS = 1.0
MIN_MEMORY_THRESHOLD = 1024 * 1024
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE | re.ASCII)

_logger = logging.getLogger(__name__)


def signal_trigger_from_env() -> Optional[SignalTrigger]:
    """``OTEL_PROFILING_SIGNAL`` (default SIGUSR2; ``none`` disables).

    Unset or invalid, the trigger takes its default, which gives way to an
    application server's own signals (see ``SignalTrigger``). Signals that end
    or stop a process, report faults or that servers use themselves are
    refused (see ``safe_signals``).
    """
    name = OTEL_PROFILING_SIGNAL
    value = env_str(name)
    if value is not None and value.lower() == "none":
        return None
    signum: Optional[int] = None
    if value:
        expected = f"{ALLOWED}, or none"
        try:
            signum = parse_signal(value)
        except ValueError:
            warn_invalid(name, value, expected, DEFAULT_SIGNAL)
        else:
            why = refusal(signum)
            if why is not None:
                warn_invalid(name, value, f"{expected} ({why})", DEFAULT_SIGNAL)
                signum = None
    if threading.current_thread() is not threading.main_thread():
        _logger.warning(
            "%s=%s: the signal trigger is off, because signal handlers can only be installed "
            "from the main thread and profiling was configured from thread %r. Configure it "
            "from the main thread, or set %s=none to silence this.",
            name,
            value or DEFAULT_SIGNAL,
            threading.current_thread().name,
            name,
        )
        return None
    return SignalTrigger(signum)


def parse_size(text: str) -> int:
    """``536870912``, ``512MiB``, ``1.5GB`` → bytes (K, M, G: 1000s; Ki, Mi, Gi: 1024s)."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a size such as 536870912, 512MiB or 1GB")
    power = " KMGT".index(match.group(2).upper() or " ")
    base = 1024 if match.group(3) else 1000
    return int(float(match.group(1)) * base**power)


def _seconds(name: str, default: float, minimum: float, maximum: float) -> float:
    value = env_float(name, default, minimum, maximum=maximum, unit="seconds")
    return default if value is None else value


def window_duration_from_env(
    default: Optional[float], interval: Optional[float] = None
) -> Optional[float]:
    """``OTEL_PROFILING_DURATION``: seconds a window lasts, 0.1 s to an hour.

    With ``interval``, at most the interval (windows must not overlap). Out of
    range, the nearest bound, as for every number (see ``_env``): a huge value
    (``1e12``, beyond ``threading.TIMEOUT_MAX``) is an hour, never an endless
    profile or a wait that overflows.
    """
    longest, unit = MAX_WINDOW_SECONDS, "seconds"
    if interval is not None and interval < MAX_WINDOW_SECONDS:
        longest, unit = interval, f"seconds (at most {OTEL_PROFILING_INTERVAL})"
    return env_float(
        OTEL_PROFILING_DURATION, default, MIN_DURATION_SECONDS, maximum=longest, unit=unit
    )


def interval_from_env() -> Optional[IntervalTrigger]:
    """``OTEL_PROFILING_INTERVAL`` / ``_DURATION`` / ``_JITTER`` (interval unset or 0: off)."""
    every = env_float(
        OTEL_PROFILING_INTERVAL,
        None,
        MIN_INTERVAL_SECONDS,
        maximum=MAX_PERIOD_SECONDS,
        unit="seconds",
        allow_zero=True,
    )
    if not every:
        at_start = env_bool(OTEL_PROFILING_AT_START, False)  # its window uses the duration
        if env_str(OTEL_PROFILING_DURATION) is not None and not at_start:
            _logger.warning(
                "OTEL_PROFILING_DURATION is set but OTEL_PROFILING_INTERVAL is not: "
                "no profiling windows. Set OTEL_PROFILING_INTERVAL (seconds between windows)."
            )
        return None
    default_duration = min(DEFAULT_DURATION, every)
    duration = window_duration_from_env(default_duration, every) or default_duration
    jitter = env_float(OTEL_PROFILING_JITTER, None, maximum=MAX_PERIOD_SECONDS, unit="seconds")
    return IntervalTrigger(every=every, duration=duration, jitter=jitter)


def http_from_env() -> Optional[HttpTrigger]:
    """``OTEL_PROFILING_HTTP_PORT`` (unset: off), ``_HOST``, ``_TOKEN``, ``_MAX_SECONDS``.

    A trigger that cannot be built (a bad port, a host other than loopback
    without a long enough token) stays off: it never opens a port.
    """
    port_text = env_str(OTEL_PROFILING_HTTP_PORT)
    if port_text is None:
        return None
    if not (port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535):
        warn_invalid(OTEL_PROFILING_HTTP_PORT, port_text, "a port from 0 to 65535", None)
        return None
    host_text = env_str(OTEL_PROFILING_HTTP_HOST, "127.0.0.1") or "127.0.0.1"
    try:
        host = bind_host(host_text)
    except ValueError as exc:
        warn_env(
            OTEL_PROFILING_HTTP_HOST,
            "Invalid value %r for environment variable %s: %s; %s, and the port in %s. "
            "The HTTP trigger is off.",
            host_text,
            OTEL_PROFILING_HTTP_HOST,
            exc,
            HOST_HINT,
            OTEL_PROFILING_HTTP_PORT,
        )
        return None
    token = env_str(OTEL_PROFILING_HTTP_TOKEN, show=hidden)
    if token is None and (os.environ.get(OTEL_PROFILING_HTTP_TOKEN) or "").strip():
        return None  # set but unusable (warned): never serve without the token meant
    max_seconds = _seconds(
        OTEL_PROFILING_HTTP_MAX_SECONDS,
        DEFAULT_MAX_SECONDS,
        MIN_HTTP_MAX_SECONDS,
        MAX_WINDOW_SECONDS,
    )
    try:
        trigger = HttpTrigger(
            host=host,
            port=int(port_text),
            token=token,
            max_seconds=max_seconds,
            raise_bind_errors=False,  # a busy port must not stop the application
        )
    except ValueError as exc:  # the message never holds the token
        _logger.warning(
            "The HTTP trigger is off (OTEL_PROFILING_HTTP_HOST=%r, OTEL_PROFILING_HTTP_TOKEN %s): "
            "%s",
            host,
            "unset" if token is None else "set",
            exc,
        )
        return None
    return trigger


def memory_threshold_from_env() -> Optional[MemoryThresholdTrigger]:
    """``OTEL_PROFILING_MEMORY_THRESHOLD`` (bytes, or 512MiB, 1GB...) and ``_MEMORY_COOLDOWN``."""
    name = OTEL_PROFILING_MEMORY_THRESHOLD
    text = env_str(name)
    if text is None:
        return None
    try:
        rss = parse_size(text)
    except ValueError:
        rss = 0
    if rss < MIN_MEMORY_THRESHOLD:
        warn_invalid(name, text, "a size of at least 1MiB, such as 536870912, 512MiB or 2GB", None)
        return None
    return MemoryThresholdTrigger(
        rss_bytes=rss,
        cooldown=_cooldown(OTEL_PROFILING_MEMORY_COOLDOWN),
        duration=_threshold_duration(),
    )


def cpu_threshold_from_env() -> Optional[CpuThresholdTrigger]:
    """``OTEL_PROFILING_CPU_THRESHOLD`` (% of one core), ``_CPU_FOR_SECONDS``, ``_CPU_COOLDOWN``."""
    percent = env_float(
        OTEL_PROFILING_CPU_THRESHOLD,
        None,
        maximum=100.0 * (os.cpu_count() or 1),
        unit="percent of one core",
    )
    if not percent:
        return None
    return CpuThresholdTrigger(
        percent=percent,
        for_seconds=_seconds(
            OTEL_PROFILING_CPU_FOR_SECONDS, DEFAULT_CPU_FOR_SECONDS, 0.0, MAX_WINDOW_SECONDS
        ),
        cooldown=_cooldown(OTEL_PROFILING_CPU_COOLDOWN),
        duration=_threshold_duration(),
    )


def _cooldown(name: str) -> float:
    return _seconds(name, DEFAULT_COOLDOWN, MIN_COOLDOWN_SECONDS, MAX_PERIOD_SECONDS)


def _threshold_duration() -> float:
    return _seconds(
        OTEL_PROFILING_THRESHOLD_DURATION,
        DEFAULT_DURATION,
        MIN_DURATION_SECONDS,
        MAX_WINDOW_SECONDS,
    )


TRIGGER_FACTORIES: Dict[str, Callable[[], Optional[Trigger]]] = {
    OTEL_PROFILING_INTERVAL: interval_from_env,
    OTEL_PROFILING_HTTP_PORT: http_from_env,
    OTEL_PROFILING_MEMORY_THRESHOLD: memory_threshold_from_env,
    OTEL_PROFILING_CPU_THRESHOLD: cpu_threshold_from_env,
}
"""Each trigger but the signal's, by the variable that turns it on."""


def triggers_from_env() -> List[Trigger]:
    """The triggers the environment asks for; each is registered with all configured profilers.

    The threshold triggers pick the profilers of their kind among them (heap
    for memory, CPU for CPU); the HTTP trigger routes by kind. One trigger
    that cannot be built never keeps the others from starting.
    """
    triggers: List[Trigger] = []
    signal_trigger = from_env("the trigger of OTEL_PROFILING_SIGNAL", signal_trigger_from_env, None)
    if signal_trigger is not None:
        triggers.append(signal_trigger)
    for variable, make in TRIGGER_FACTORIES.items():
        trigger = from_env(f"the trigger of {variable}", make, None)
        if trigger is not None:
            triggers.append(trigger)
    if env_bool(OTEL_PROFILING_AT_START, False):  # last: the others may end its window early
        triggers.append(StartupTrigger(window_duration_from_env(None)))
    return triggers
