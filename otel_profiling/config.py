"""``configure()``: the global agent, built and started from ``OTEL_*`` environment variables.

The variables (one table in the README): ``OTEL_SDK_DISABLED``,
``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (the resource),
``OTEL_PROFILES_EXPORTER`` and ``OTEL_EXPORTER_FSSPEC_PROFILES_*`` (where
profiles go), ``OTEL_BPP_*`` (the batch processor) and ``OTEL_PROFILING_*``
(what to profile and when). A bad value is logged naming the variable, and
its default (or the nearest bound of its range) is used: the application
keeps running and ``configure()`` never raises because of the environment.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from typing import List, Optional, Sequence

from opentelemetry.sdk.environment_variables import (
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.resources import Resource

from otel_profiling._env import env_bool, from_env, one_warning_per_variable
from otel_profiling._exit import flush_on_sigterm, sigterm_flush_refusal
from otel_profiling.agent import ProfilingAgent
from otel_profiling.environment_variables import OTEL_PROFILING_FLUSH_ON_SIGTERM
from otel_profiling.exporters.base import ProfileExporter
from otel_profiling.exporters.env import DEFAULT_URL, exporters_from_env
from otel_profiling.global_agent import get_profiling_agent, set_profiling_agent
from otel_profiling.processors.batch import BatchProfileProcessor
from otel_profiling.processors.spool import Spool
from otel_profiling.profilers.base import Profiler
from otel_profiling.profilers.env import profilers_from_env
from otel_profiling.resource import resource_from_env
from otel_profiling.triggers.base import Trigger
from otel_profiling.triggers.env import triggers_from_env

__all__ = [
    "DEFAULT_URL",
    "agent_from_env",
    "configure",
    "exporters_from_env",
    "resource_from_env",
]

_logger = logging.getLogger(__name__)
_configure_lock = threading.Lock()


def agent_from_env(
    resource: Optional[Resource] = None, extra_triggers: Sequence[Trigger] = ()
) -> Optional[ProfilingAgent]:
    """A started agent built from the environment (not set as the global one).

    The one way an agent is built from the environment: ``configure()``
    (called by the application, by ``opentelemetry-instrument`` and by
    programs started with ``otel-profiling run``) builds it here.

    Never raises because of the environment: each value is checked where it
    is read, and each piece (an exporter's processor, the profilers, each
    trigger) is built on its own, so one that fails anyway is logged and left
    out while the rest runs. ``None`` only if the agent could not start at all
    (logged). ``extra_triggers`` drive the same profilers as the others.
    """
    with one_warning_per_variable():  # several pieces read the same variables
        return _agent_from_env(resource, extra_triggers)


def _agent_from_env(
    resource: Optional[Resource], extra_triggers: Sequence[Trigger]
) -> Optional[ProfilingAgent]:
    agent = ProfilingAgent(resource if resource is not None else resource_from_env())
    exporters: List[ProfileExporter] = from_env("the exporters", exporters_from_env, [])
    for exporter in exporters:
        processor = from_env(
            f"the batch processor of {type(exporter).__name__}",
            functools.partial(_batch_processor, exporter, agent.resource),
            None,
        )
        if processor is not None:
            agent.add_profile_processor(processor)
    profilers: List[Profiler] = from_env("the profilers", profilers_from_env, [])
    if profilers:
        for trigger in [*triggers_from_env(), *extra_triggers]:
            agent.register(trigger, *profilers)
    try:
        agent.start()
    except Exception:  # noqa: BLE001 - the host application must start regardless
        _logger.error(
            "otel-profiling could not start; the application runs unprofiled.", exc_info=True
        )
        with contextlib.suppress(Exception):  # end what did start; already reported
            agent.shutdown()
        return None
    if env_bool(OTEL_PROFILING_FLUSH_ON_SIGTERM, False):
        refusal = sigterm_flush_refusal()
        if refusal is None:
            flush_on_sigterm()
        else:
            _logger.warning(
                "%s is true, but the SIGTERM flush was not installed: %s.",
                OTEL_PROFILING_FLUSH_ON_SIGTERM,
                refusal,
            )
    return agent


def _batch_processor(exporter: ProfileExporter, resource: Resource) -> BatchProfileProcessor:
    """The agent's processor for ``exporter``, spooling under the agent's service."""
    return BatchProfileProcessor(exporter, spool=Spool.for_exporter(exporter, resource) or False)


def configure(resource: Optional[Resource] = None) -> Optional[ProfilingAgent]:
    """Build, start and set the global agent from the environment; return it.

    Idempotent: when a global agent exists (from an earlier call or
    ``set_profiling_agent``) it is returned unchanged. Returns ``None``, starting
    nothing, when ``OTEL_SDK_DISABLED`` is true. ``resource`` overrides
    ``resource_from_env()``. Never raises because of an environment value: a
    bad one is logged (one warning naming the variable) and its default used.
    """
    with _configure_lock:
        existing = get_profiling_agent()
        if existing is not None:
            return existing
        if env_bool(OTEL_SDK_DISABLED, False):
            _logger.debug("OTEL_SDK_DISABLED is true: profiling not configured.")
            return None
        agent = agent_from_env(resource)
        if agent is not None:
            set_profiling_agent(agent)
        return agent
