"""An application configured by environment variables only.

It toggles profiling with its own SIGUSR2 (the signal trigger from the
environment) around its work, times that work and records the ids of the span
that wraps the hot part, its own work and records the ids of the span that wraps the hot part,
then prints them as JSON and exits; the profile is sent at exit by whatever
exporter the environment names. ``heap`` as argument: keep a known number of
bytes alive instead.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import otel_profiling
from otel_profiling import ProfilingSpanProcessor

KEPT: list = []
BLOCK = 64 * 1024
BLOCKS = 160


def hot_work(seconds: float) -> int:
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        count += 1
    return count


def cold_work(seconds: float) -> int:
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        count += 1
    return count


def keep_memory() -> None:
    for _ in range(BLOCKS):
        KEPT.append(bytearray(BLOCK))


def wait_until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(ProfilingSpanProcessor())
    trace.set_tracer_provider(provider)
    agent = otel_profiling.configure()
    assert agent is not None
    truth: dict = {}
    os.kill(os.getpid(), signal.SIGUSR2)
    wait_until(lambda: bool(agent.active_profiles))
    if sys.argv[1:] == ["heap"]:
        keep_memory()
        truth["kept_bytes"] = BLOCK * BLOCKS
        truth["kept_objects"] = BLOCKS
    else:
        tracer = trace.get_tracer("otlp_app")
        began = time.perf_counter()
        cold_work(0.4)
        with tracer.start_as_current_span("GET /hot") as span:
            hot_began = time.perf_counter()
            hot_work(1.2)
            truth["hot_seconds"] = time.perf_counter() - hot_began
            context = span.get_span_context()
            truth["trace_id"] = f"{context.trace_id:032x}"
            truth["span_id"] = f"{context.span_id:016x}"
        cold_work(0.4)
        truth["main_seconds"] = time.perf_counter() - began
    os.kill(os.getpid(), signal.SIGUSR2)
    wait_until(lambda: not agent.active_profiles)
    print(json.dumps(truth), flush=True)


if __name__ == "__main__":
    main()
