"""A traced application: one request span, handled while a SIGUSR2 profile runs.

The span is what an instrumentation library would create. The app raises
SIGUSR2 itself (before and after the request) and waits, for the test's sake
only, until the profile is running so the request falls inside it.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from opentelemetry import trace
from opentelemetry.trace import format_trace_id

from otel_profiling import get_profiling_agent


def report_leaf(n: int) -> int:
    return sum(i * i for i in range(n))


def wait_until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def main() -> None:
    agent = get_profiling_agent()
    assert agent is not None, "the opentelemetry-instrument hook did not configure profiling"
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGUSR2)
    wait_until(lambda: bool(agent.active_profiles))
    tracer = trace.get_tracer("traced_app")
    with tracer.start_as_current_span("GET /report") as span:
        with tracer.start_as_current_span("render"):
            for _ in range(200):
                report_leaf(2000)
        print("trace_id:" + format_trace_id(span.get_span_context().trace_id), flush=True)
    os.kill(os.getpid(), signal.SIGUSR2)
    wait_until(lambda: not agent.active_profiles)
    sys.stdin.readline()
    print("done", flush=True)


if __name__ == "__main__":
    main()
