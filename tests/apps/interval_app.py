"""A process profiled in windows: IntervalTrigger(every, duration) for a while, then a report.

Usage: interval_app.py URL EVERY DURATION RUN_SECONDS
Exports to URL and prints one JSON line per exported profile (start, end, trigger, reason).
"""

from __future__ import annotations

import json
import sys
import time

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import FsspecProfileExporter, InMemoryProfileExporter
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import IntervalTrigger


def interval_workload_leaf(n: int) -> int:
    return sum(i * i for i in range(n))


def main() -> None:
    url, every, duration, run_for = sys.argv[1], *map(float, sys.argv[2:5])
    memory = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.register(IntervalTrigger(every=every, duration=duration), CpuProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(memory))
    agent.add_profile_processor(BatchProfileProcessor(FsspecProfileExporter(url)))
    agent.start()
    end = time.monotonic() + run_for
    while time.monotonic() < end:
        interval_workload_leaf(2000)
    agent.shutdown()
    for profile in memory.get_finished_profiles():
        print(
            json.dumps(
                {
                    "key": profile.key,
                    "start": profile.start_time.timestamp(),
                    "end": profile.end_time.timestamp(),
                    "attributes": dict(profile.attributes),
                }
            )
        )


if __name__ == "__main__":
    main()
