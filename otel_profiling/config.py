"""``configure()``: the global agent, built and started from ``OTEL_*`` environment variables.

The variables (one table in the README): ``OTEL_SDK_DISABLED``,
``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (the resource),
``OTEL_PROFILES_EXPORTER`` and ``OTEL_EXPORTER_FSSPEC_PROFILES_*`` (where
profiles go), ``OTEL_BPP_*`` (the batch processor) and ``OTEL_PROFILING_*``
(what to profile and when). A bad value is logged naming the variable; the
application keeps running.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource

from otel_profiling._env import env_bool
from otel_profiling.agent import ProfilingAgent
from otel_profiling.exporters.env import DEFAULT_URL, exporters_from_env
from otel_profiling.global_agent import get_profiling_agent, set_profiling_agent
from otel_profiling.processors.batch import BatchProfileProcessor
from otel_profiling.profilers.env import profilers_from_env
from otel_profiling.resource import default_resource
from otel_profiling.triggers.env import triggers_from_env

__all__ = ["DEFAULT_URL", "configure", "exporters_from_env", "resource_from_env"]

_logger = logging.getLogger(__name__)
_configure_lock = threading.Lock()


def resource_from_env(tracer_provider: Optional[object] = None) -> Resource:
    """The tracer provider's resource when an SDK one is set, so profiles and traces agree.

    Otherwise ``Resource.create()`` (``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``) over a detected ``host.name``.
    """
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    resource = getattr(provider, "resource", None)
    if isinstance(resource, Resource):
        return resource
    return default_resource()


def configure(resource: Optional[Resource] = None) -> Optional[ProfilingAgent]:
    """Build, start and set the global agent from the environment; return it.

    Idempotent: when a global agent exists (from an earlier call or
    ``set_profiling_agent``) it is returned unchanged. Returns ``None``, starting
    nothing, when ``OTEL_SDK_DISABLED`` is true. ``resource`` overrides
    ``resource_from_env()``.
    """
    with _configure_lock:
        existing = get_profiling_agent()
        if existing is not None:
            return existing
        if env_bool("OTEL_SDK_DISABLED", False):
            _logger.debug("OTEL_SDK_DISABLED is true: profiling not configured.")
            return None
        agent = ProfilingAgent(resource if resource is not None else resource_from_env())
        for exporter in exporters_from_env():
            agent.add_profile_processor(BatchProfileProcessor(exporter))
        profilers = profilers_from_env()
        if profilers:
            for trigger in triggers_from_env():
                agent.register(trigger, *profilers)
        agent.start()
        set_profiling_agent(agent)
        return agent
