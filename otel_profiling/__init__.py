"""otel-profiling: CPU and memory profiles as an OpenTelemetry signal.

A trigger starts and stops a profiler; the finished ``Profile`` goes through
processors to exporters, and the fsspec exporter writes it to any storage URL
as ``{kind}-{start_time}.{extension}``.
"""

from otel_profiling._exit import flush_on_sigterm
from otel_profiling.agent import ProfilingAgent
from otel_profiling.config import configure
from otel_profiling.global_agent import get_profiling_agent, set_profiling_agent
from otel_profiling.profile import Profile, ProfileKind, ProfileStatus
from otel_profiling.tracing import ProfilingSpanProcessor
from otel_profiling.version import __version__

__all__ = [
    "Profile",
    "ProfileKind",
    "ProfileStatus",
    "ProfilingAgent",
    "ProfilingSpanProcessor",
    "__version__",
    "configure",
    "flush_on_sigterm",
    "get_profiling_agent",
    "set_profiling_agent",
]
