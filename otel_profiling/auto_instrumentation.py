"""``opentelemetry-instrument`` support: profiling with no code change.

Registered as an ``opentelemetry_post_instrument`` hook, so it runs after the
user's distro and configurator (whatever they are) have set the tracer
provider, and replaces neither. With ``OTEL_PROFILING_ENABLED=true`` it calls
``configure()`` (whose resource is then the tracer provider's) and, unless
``OTEL_PROFILING_TRACE_LINKS=false``, adds a ``ProfilingSpanProcessor`` to an
SDK tracer provider. It never raises: a failure is logged and the application
runs unprofiled.
"""

from __future__ import annotations

import logging
import weakref

from opentelemetry import trace

from otel_profiling._env import env_bool
from otel_profiling.agent import ProfilingAgent
from otel_profiling.config import configure
from otel_profiling.environment_variables import (
    OTEL_PROFILING_ENABLED,
    OTEL_PROFILING_TRACE_LINKS,
)

_logger = logging.getLogger(__name__)
_linked: weakref.WeakSet = weakref.WeakSet()  # tracer providers given a ProfilingSpanProcessor


def link_tracer_provider(agent: ProfilingAgent, provider: object = None) -> bool:
    """Add a ``ProfilingSpanProcessor`` to the (global) SDK tracer provider, once."""
    from opentelemetry.sdk.trace import TracerProvider

    from otel_profiling.tracing import ProfilingSpanProcessor

    provider = provider if provider is not None else trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider) or provider in _linked:
        return False
    provider.add_span_processor(ProfilingSpanProcessor(agent))
    _linked.add(provider)
    return True


def post_instrument() -> None:
    """The ``opentelemetry_post_instrument`` hook."""
    try:
        if not env_bool(OTEL_PROFILING_ENABLED, False):
            return
        agent = configure()
        if agent is None:
            return
        if env_bool(OTEL_PROFILING_TRACE_LINKS, True):
            link_tracer_provider(agent)
    except Exception:  # noqa: BLE001 - the application must start regardless
        _logger.exception("otel-profiling could not start; the application runs unprofiled.")
