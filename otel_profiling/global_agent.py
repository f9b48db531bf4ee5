"""The process-wide agent, like ``get_tracer_provider`` / ``set_tracer_provider``.

``configure()`` sets it; ``ProfilingSpanProcessor()`` without an agent and the
``opentelemetry-instrument`` hook read it. It is set once: a second
``set_profiling_agent`` is refused with a warning, as the tracer provider's is.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from otel_profiling.agent import ProfilingAgent

_logger = logging.getLogger(__name__)

_lock = threading.Lock()
_agent: Optional[ProfilingAgent] = None


def get_profiling_agent() -> Optional[ProfilingAgent]:
    """The global agent, or ``None`` when none was set (or profiling is disabled)."""
    return _agent


def set_profiling_agent(agent: ProfilingAgent) -> bool:
    """Make ``agent`` the global agent; ``False`` (and a warning) if one is already set."""
    global _agent
    with _lock:
        if _agent is not None and _agent is not agent:
            _logger.warning("Overriding of the global ProfilingAgent is not allowed; ignored.")
            return False
        _agent = agent
        return True


def _reset_profiling_agent() -> Optional[ProfilingAgent]:
    """Forget the global agent (for tests); returns it so the caller can shut it down."""
    global _agent
    with _lock:
        agent, _agent = _agent, None
        return agent
