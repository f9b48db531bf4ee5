"""Triggers chosen by ``OTEL_PROFILING_*`` variables."""

from __future__ import annotations

import logging
import re
import signal
from typing import List, Optional

from otel_profiling._env import env_float, env_str
from otel_profiling.triggers.base import Trigger
from otel_profiling.triggers.http import DEFAULT_MAX_SECONDS, HttpTrigger
from otel_profiling.triggers.interval import IntervalTrigger
from otel_profiling.triggers.signals import SignalTrigger, parse_signal
from otel_profiling.triggers.thresholds import CpuThresholdTrigger, MemoryThresholdTrigger

DEFAULT_DURATION = 10.0
DEFAULT_COOLDOWN = 300.0
DEFAULT_CPU_FOR_SECONDS = 30.0
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)

_logger = logging.getLogger(__name__)


def signal_from_env() -> Optional[int]:
    """``OTEL_PROFILING_SIGNAL`` (default SIGUSR2; ``none`` disables)."""
    value = env_str("OTEL_PROFILING_SIGNAL", "SIGUSR2") or "SIGUSR2"
    if value.lower() == "none":
        return None
    try:
        return parse_signal(value)
    except ValueError as exc:
        _logger.warning("Invalid value for OTEL_PROFILING_SIGNAL: %s Using SIGUSR2.", exc)
        return signal.SIGUSR2


def parse_size(text: str) -> int:
    """``536870912``, ``512MiB``, ``1.5GB`` → bytes (K, M, G: 1000s; Ki, Mi, Gi: 1024s)."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a size such as 536870912, 512MiB or 1GB")
    power = " KMGT".index(match.group(2).upper() or " ")
    base = 1024 if match.group(3) else 1000
    return int(float(match.group(1)) * base**power)


def interval_from_env() -> Optional[IntervalTrigger]:
    """``OTEL_PROFILING_INTERVAL`` / ``_DURATION`` / ``_JITTER`` (unset interval: no windows)."""
    every = env_float("OTEL_PROFILING_INTERVAL", None)
    if every is None or every <= 0:
        if env_str("OTEL_PROFILING_DURATION") is not None:
            _logger.warning(
                "OTEL_PROFILING_DURATION is set but OTEL_PROFILING_INTERVAL is not: "
                "no profiling windows. Set OTEL_PROFILING_INTERVAL (seconds between windows)."
            )
        return None
    default_duration = min(DEFAULT_DURATION, every)
    duration = env_float("OTEL_PROFILING_DURATION", default_duration) or default_duration
    if duration > every:
        _logger.warning(
            "Invalid value %r for environment variable OTEL_PROFILING_DURATION: longer than "
            "OTEL_PROFILING_INTERVAL=%g; using the default %g.",
            duration,
            every,
            default_duration,
        )
        duration = default_duration
    jitter = env_float("OTEL_PROFILING_JITTER", None)
    return IntervalTrigger(every=every, duration=duration, jitter=jitter)


def http_from_env() -> Optional[HttpTrigger]:
    """``OTEL_PROFILING_HTTP_PORT`` (unset: off), ``_HOST``, ``_TOKEN``, ``_MAX_SECONDS``."""
    port_text = env_str("OTEL_PROFILING_HTTP_PORT")
    if port_text is None:
        return None
    if not port_text.isdigit() or int(port_text) > 65535:
        _logger.warning(
            "Invalid value %r for environment variable OTEL_PROFILING_HTTP_PORT: expected a "
            "port 0-65535; the HTTP trigger is off.",
            port_text,
        )
        return None
    host = env_str("OTEL_PROFILING_HTTP_HOST", "127.0.0.1") or "127.0.0.1"
    max_seconds = env_float("OTEL_PROFILING_HTTP_MAX_SECONDS", DEFAULT_MAX_SECONDS)
    try:
        trigger = HttpTrigger(
            host=host,
            port=int(port_text),
            token=env_str("OTEL_PROFILING_HTTP_TOKEN"),
            max_seconds=max_seconds or DEFAULT_MAX_SECONDS,
        )
    except ValueError as exc:  # e.g. a public host without a token: stay off, never open
        _logger.warning("The HTTP trigger is off: %s", exc)
        return None
    trigger._raise_bind_errors = False  # a busy port must not stop the application
    return trigger


def memory_threshold_from_env() -> Optional[MemoryThresholdTrigger]:
    """``OTEL_PROFILING_MEMORY_THRESHOLD`` (bytes, or 512MiB, 1GB...) and ``_MEMORY_COOLDOWN``."""
    text = env_str("OTEL_PROFILING_MEMORY_THRESHOLD")
    if text is None:
        return None
    try:
        rss = parse_size(text)
    except ValueError as exc:
        _logger.warning(
            "Invalid value for environment variable OTEL_PROFILING_MEMORY_THRESHOLD: %s; "
            "the memory threshold trigger is off.",
            exc,
        )
        return None
    return MemoryThresholdTrigger(
        rss_bytes=rss,
        cooldown=env_float("OTEL_PROFILING_MEMORY_COOLDOWN", DEFAULT_COOLDOWN) or 0.0,
        duration=_threshold_duration(),
    )


def cpu_threshold_from_env() -> Optional[CpuThresholdTrigger]:
    """``OTEL_PROFILING_CPU_THRESHOLD`` (% of one core), ``_CPU_FOR_SECONDS``, ``_CPU_COOLDOWN``."""
    percent = env_float("OTEL_PROFILING_CPU_THRESHOLD", None)
    if percent is None or percent <= 0:
        return None
    return CpuThresholdTrigger(
        percent=percent,
        for_seconds=env_float("OTEL_PROFILING_CPU_FOR_SECONDS", DEFAULT_CPU_FOR_SECONDS) or 0.0,
        cooldown=env_float("OTEL_PROFILING_CPU_COOLDOWN", DEFAULT_COOLDOWN) or 0.0,
        duration=_threshold_duration(),
    )


def _threshold_duration() -> float:
    value = env_float("OTEL_PROFILING_THRESHOLD_DURATION", DEFAULT_DURATION)
    return value if value else DEFAULT_DURATION


def triggers_from_env() -> List[Trigger]:
    """The triggers the environment asks for; each is registered with all configured profilers.

    The threshold triggers pick the profilers of their kind among them (heap
    for memory, CPU for CPU); the HTTP trigger routes by kind.
    """
    triggers: List[Trigger] = []
    signum = signal_from_env()
    if signum is not None:  # unset: the default, which gives way to a server's own signals
        triggers.append(SignalTrigger(signum if env_str("OTEL_PROFILING_SIGNAL") else None))
    for make in (
        interval_from_env,
        http_from_env,
        memory_threshold_from_env,
        cpu_threshold_from_env,
    ):
        trigger = make()
        if trigger is not None:
            triggers.append(trigger)
    return triggers
