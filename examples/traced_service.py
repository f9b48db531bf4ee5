"""Profiling next to tracing: a request span points at its profile, the profile at its trace.

    python examples/traced_service.py            # writes under ./profiles

The usual OpenTelemetry setup plus two lines (``configure()`` and
``ProfilingSpanProcessor``). The script profiles itself with SIGUSR2 around one
"request", then prints the URL found on the span and the trace ids found on
the profile.
"""

from __future__ import annotations

import os
import signal
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_trace_id

from otel_profiling import ProfilingSpanProcessor, configure
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import SimpleProfileProcessor


def handle_request() -> int:
    return sum(sum(i * i for i in range(3000)) for _ in range(300))


def wait_until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def main() -> None:
    os.environ.setdefault("OTEL_SERVICE_NAME", "traced-service")
    os.environ.setdefault("OTEL_EXPORTER_FSSPEC_PROFILES_URL", "file://./profiles")

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    agent = configure()  # from OTEL_* variables; uses the tracer provider's resource
    assert agent is not None, "OTEL_SDK_DISABLED is set"
    provider.add_span_processor(ProfilingSpanProcessor())  # links spans and profiles

    finished = InMemoryProfileExporter()  # only to print the profile's attributes below
    agent.add_profile_processor(SimpleProfileProcessor(finished))

    os.kill(os.getpid(), signal.SIGUSR2)  # start profiling
    wait_until(lambda: bool(agent.active_profiles))
    with trace.get_tracer(__name__).start_as_current_span("GET /report") as span:
        handle_request()
    os.kill(os.getpid(), signal.SIGUSR2)  # stop: the profile is exported
    wait_until(lambda: bool(finished.get_finished_profiles()))
    agent.shutdown()

    [request] = spans.get_finished_spans()
    [profile] = finished.get_finished_profiles()
    print("trace id:              ", format_trace_id(span.get_span_context().trace_id))
    print("span -> profile:       ", request.attributes["profiling.profile.url"])
    print("profile -> trace ids:  ", ", ".join(profile.attributes["profiling.trace_ids"]))


if __name__ == "__main__":
    main()
