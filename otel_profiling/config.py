"""``configure()``: an agent built and started from ``OTEL_*`` environment variables."""

from __future__ import annotations

import logging
from typing import List, Optional

from otel_profiling._env import env_bool, env_list, env_str
from otel_profiling.agent import ProfilingAgent
from otel_profiling.exporters.base import ProfileExporter
from otel_profiling.exporters.console import ConsoleProfileExporter
from otel_profiling.exporters.storage import FsspecProfileExporter
from otel_profiling.processors.batch import BatchProfileProcessor
from otel_profiling.profilers.env import profilers_from_env
from otel_profiling.triggers.env import triggers_from_env

_logger = logging.getLogger(__name__)

DEFAULT_URL = "file://./profiles"


def exporters_from_env() -> List[ProfileExporter]:
    """``OTEL_PROFILES_EXPORTER``: a comma list of ``fsspec`` (default), ``console``, ``none``."""
    exporters: List[ProfileExporter] = []
    for name in env_list("OTEL_PROFILES_EXPORTER", ["fsspec"]):
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


def configure() -> Optional[ProfilingAgent]:
    """Build and start an agent from the environment; ``None`` when ``OTEL_SDK_DISABLED``."""
    if env_bool("OTEL_SDK_DISABLED", False):
        return None
    agent = ProfilingAgent()
    for exporter in exporters_from_env():
        agent.add_profile_processor(BatchProfileProcessor(exporter))
    profilers = profilers_from_env()
    if profilers:
        for trigger in triggers_from_env():
            agent.register(trigger, *profilers)
    return agent.start()
