"""Cost of ``ProfilingSpanProcessor`` per root span, idle and while a profile runs.

    python benchmarks/span_processor_overhead.py [spans]

Baseline: the same tracer provider without the processor, in the same run.
The "profiling" case runs a profile of a no-op profiler, so the numbers are
the processor's own cost (links recorded, URL set), not yappi's.
"""

from __future__ import annotations

import sys
import time
import uuid

from opentelemetry.sdk.trace import TracerProvider

from otel_profiling import ProfilingAgent, ProfilingSpanProcessor
from otel_profiling.exporters import FsspecProfileExporter
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers.base import Profiler
from otel_profiling.triggers.base import Trigger


class NullProfiler(Profiler):
    kind = ProfileKind.HEAP_SNAPSHOT

    def __init__(self) -> None:
        super().__init__()
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        self._running = True

    def stop(self) -> bytes:
        self._running = False
        return b"{}"


class Manual(Trigger):
    name = "manual"


def spans_per_second(provider: TracerProvider, count: int) -> float:
    tracer = provider.get_tracer("bench")
    start = time.perf_counter()
    for _ in range(count):
        with tracer.start_as_current_span("request"):
            pass
    return count / (time.perf_counter() - start)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    baseline = spans_per_second(TracerProvider(), count)

    agent = ProfilingAgent()
    agent.add_profile_processor(
        SimpleProfileProcessor(FsspecProfileExporter(f"memory://bench-{uuid.uuid4().hex}"))
    )
    trigger = Manual()
    agent.register(trigger, NullProfiler())
    agent.start()
    provider = TracerProvider()
    provider.add_span_processor(ProfilingSpanProcessor(agent))
    idle = spans_per_second(provider, count)
    assert trigger.target is not None
    trigger.target.start()
    profiling = spans_per_second(provider, count)
    trigger.target.stop()
    agent.shutdown()

    print(f"root spans: {count}")
    print(f"baseline (no processor):   {baseline:10.0f} spans/s")
    for label, rate in (("idle (no profile)", idle), ("while profiling", profiling)):
        extra_us = (1 / rate - 1 / baseline) * 1e6
        print(f"{label + ':':26} {rate:10.0f} spans/s  (+{extra_us:.1f} µs per span)")


if __name__ == "__main__":
    main()
