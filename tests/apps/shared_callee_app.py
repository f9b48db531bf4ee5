"""A program that knows what its CPU profile must say, profiled through SIGUSR2.

``handler_a()`` calls ``shared(False)`` 50 times and ``handler_b()`` calls
``shared(True)`` once; only ``shared(True)`` reaches ``slow_leaf()``, a 2 ms
spin, and only ``shared(False)`` reaches ``cheap_leaf()``. The program sends
itself SIGUSR2 to start and to stop the profile (``CpuProfiler(engine="yappi")``),
times its own hot code with ``time.perf_counter``, writes the profile's payload
to OUTPUT and prints its measurements and the profile's attributes as JSON.

Usage: shared_callee_app.py OUTPUT [SECONDS]
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import SignalTrigger

measured = {"slow_leaf": 0.0, "shared_from_a": 0.0, "shared_from_b": 0.0}


def slow_leaf() -> None:
    began = time.perf_counter()
    end = began + 0.002
    while time.perf_counter() < end:
        pass
    measured["slow_leaf"] += time.perf_counter() - began


def cheap_leaf() -> int:
    return 1


def shared(slow: bool) -> None:
    if slow:
        slow_leaf()
    else:
        cheap_leaf()


def handler_a() -> None:
    began = time.perf_counter()
    for _ in range(50):
        shared(False)
    measured["shared_from_a"] += time.perf_counter() - began


def handler_b() -> None:
    began = time.perf_counter()
    shared(True)
    measured["shared_from_b"] += time.perf_counter() - began


def serve(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        handler_a()
        handler_b()


def signal_myself() -> float:
    """Send SIGUSR2 (the profile's start or stop); how long sending it took."""
    began = time.perf_counter()
    os.kill(os.getpid(), signal.SIGUSR2)
    return time.perf_counter() - began


def main() -> None:
    output, seconds = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.register(SignalTrigger(signal.SIGUSR2), CpuProfiler(engine="yappi"))
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    signal_myself()
    deadline = time.monotonic() + 30
    while not agent.active_profiles and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.perf_counter()
    serve(seconds)
    measured["window"] = time.perf_counter() - began
    measured["stop_signal"] = signal_myself()
    deadline = time.monotonic() + 60
    while not exporter.get_finished_profiles() and time.monotonic() < deadline:
        time.sleep(0.01)
    agent.shutdown()
    (profile,) = exporter.get_finished_profiles()
    with open(output, "wb") as file:
        file.write(profile.data)
    print(json.dumps({"measured": measured, "attributes": dict(profile.attributes)}))


if __name__ == "__main__":
    main()
