"""Idle cost of armed triggers: a call-heavy workload with every trigger armed and nothing
profiling, against the same workload with no agent, alternating in one process.

Run: PYTHONPATH=. python benchmarks/idle_cost.py [--blocks 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import time
from typing import List

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import BatchProfileProcessor
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import (
    CpuThresholdTrigger,
    HttpTrigger,
    IntervalTrigger,
    MemoryThresholdTrigger,
    SignalTrigger,
)

DAY = 86_400.0


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def moved(self, dx: int) -> Point:
        return Point(self.x + dx, self.y)


def fibonacci(n: int) -> int:
    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)


def workload() -> int:
    """About 700 k Python calls: recursion, object creation, method calls."""
    total = fibonacci(27)
    point = Point(0, 0)
    for i in range(200_000):
        point = point.moved(i & 1)
    return total + point.x


def timed(runs: int, clock=time.process_time) -> List[float]:  # type: ignore[no-untyped-def]
    """Durations of ``runs`` workloads. The default clock is the process's CPU time (all
    threads, so the triggers' own threads count), which other load on the machine
    disturbs far less than wall time."""
    times = []
    for _ in range(runs):
        begun = clock()
        workload()
        times.append(clock() - begun)
    return times


def armed_agent() -> tuple:
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    profiler = CpuProfiler()
    agent.register(SignalTrigger(signal.SIGUSR2), profiler)
    agent.register(IntervalTrigger(every=DAY, duration=10, jitter=DAY), profiler)  # armed
    agent.register(HttpTrigger(), profiler)
    agent.register(MemoryThresholdTrigger(rss_bytes=1 << 50, kinds=None), profiler)
    agent.register(CpuThresholdTrigger(percent=10_000, for_seconds=1), profiler)
    agent.add_profile_processor(BatchProfileProcessor(exporter))
    return agent.start(), exporter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--wall", action="store_true", help="wall time instead of CPU time")
    args = parser.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    timed(3)  # warm up
    off: List[float] = []
    on: List[float] = []
    profiled = 0
    for _ in range(args.blocks):
        off.extend(timed(args.runs, clock))
        agent, exporter = armed_agent()
        on.extend(timed(args.runs, clock))
        profiled += len(agent.active_profiles)
        agent.shutdown()
        profiled += len(exporter.get_finished_profiles())
    base, armed = statistics.median(off), statistics.median(on)
    print(f"clock: {'wall' if args.wall else 'process CPU time'}")
    print(f"workload runs: {len(off)} without agent, {len(on)} with all triggers armed")
    print(f"median without agent: {base * 1000:.1f} ms   min {min(off) * 1000:.1f} ms")
    print(f"median armed, idle:   {armed * 1000:.1f} ms   min {min(on) * 1000:.1f} ms")
    print(f"ratio (median): {armed / base:.4f}x   ratio (min): {min(on) / min(off):.4f}x")
    if profiled:
        print(f"WARNING: {profiled} profile(s) were taken during the run; rerun.")


if __name__ == "__main__":
    main()
