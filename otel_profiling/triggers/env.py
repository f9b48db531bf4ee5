"""Triggers chosen by ``OTEL_PROFILING_*`` variables."""

from __future__ import annotations

import logging
import signal
from typing import List, Optional

from otel_profiling._env import env_str
from otel_profiling.triggers.base import Trigger
from otel_profiling.triggers.signals import SignalTrigger, parse_signal

_logger = logging.getLogger(__name__)


def signal_from_env() -> Optional[signal.Signals]:
    """``OTEL_PROFILING_SIGNAL`` (default SIGUSR2; ``none`` disables)."""
    value = env_str("OTEL_PROFILING_SIGNAL", "SIGUSR2") or "SIGUSR2"
    if value.lower() == "none":
        return None
    try:
        return parse_signal(value)
    except ValueError as exc:
        _logger.warning("Invalid value for OTEL_PROFILING_SIGNAL: %s Using SIGUSR2.", exc)
        return signal.SIGUSR2


def triggers_from_env() -> List[Trigger]:
    """The triggers the environment asks for; each drives all configured profilers."""
    triggers: List[Trigger] = []
    signum = signal_from_env()
    if signum is not None:
        triggers.append(SignalTrigger(signum))
    return triggers
