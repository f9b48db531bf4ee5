"""``configure()``: an agent built and started from ``OTEL_*`` environment variables."""

from __future__ import annotations

import logging
import signal
from typing import List, Optional

from otel_profiling._env import env_bool, env_list, env_str
from otel_profiling.agent import ProfilingAgent
from otel_profiling.exporters.base import ProfileExporter
from otel_profiling.exporters.console import ConsoleProfileExporter
from otel_profiling.exporters.storage import FsspecProfileExporter
from otel_profiling.processors.batch import BatchProfileProcessor
from otel_profiling.profilers.base import Profiler
from otel_profiling.profilers.cpu import CpuProfiler
from otel_profiling.triggers.signals import SignalTrigger, parse_signal

_logger = logging.getLogger(__name__)

DEFAULT_URL = "file://./profiles"


def exporter_from_env() -> List[ProfileExporter]:
    names = env_list("OTEL_PROFILES_EXPORTER", ["fsspec"])
    exporters: List[ProfileExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            exporters.append(ConsoleProfileExporter())
        elif name == "fsspec":
            url = env_str("OTEL_EXPORTER_FSSPEC_PROFILES_URL", DEFAULT_URL) or DEFAULT_URL
            exporters.append(FsspecProfileExporter(url))
        else:
            raise ValueError(
                f"Unknown exporter {name!r} in OTEL_PROFILES_EXPORTER: use fsspec, console or none."
            )
    return exporters


def profilers_from_env() -> List[Profiler]:
    profilers: List[Profiler] = []
    for name in env_list("OTEL_PROFILING_PROFILERS", ["cpu"]):
        if name == "cpu":
            profilers.append(CpuProfiler())
        else:
            _logger.warning(
                "Unknown profiler %r in OTEL_PROFILING_PROFILERS: use cpu; ignored.", name
            )
    return profilers


def signal_from_env() -> Optional[signal.Signals]:
    value = env_str("OTEL_PROFILING_SIGNAL", "SIGUSR2") or "SIGUSR2"
    if value.lower() == "none":
        return None
    try:
        return parse_signal(value)
    except ValueError as exc:
        _logger.warning("Invalid OTEL_PROFILING_SIGNAL: %s Using SIGUSR2.", exc)
        return signal.SIGUSR2


def configure() -> Optional[ProfilingAgent]:
    """Build and start an agent from the environment; ``None`` when ``OTEL_SDK_DISABLED``."""
    if env_bool("OTEL_SDK_DISABLED", False):
        return None
    agent = ProfilingAgent()
    for exporter in exporter_from_env():
        agent.add_profile_processor(BatchProfileProcessor(exporter))
    profilers = profilers_from_env()
    signum = signal_from_env()
    if signum is not None and profilers:
        agent.register(SignalTrigger(signum), *profilers)
    return agent.start()
