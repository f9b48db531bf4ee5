"""A program profiled by the sampling engine in pprof format, and what it measured.

It runs ``hot()`` (0.9 s), ``warm()`` (0.3 s) and 0.3 s of work at module
level, writes the profile to ``argv[1]`` and ``{name: seconds}`` as JSON to
``argv[2]``. Its only thread is the main thread, so shares are its own.
"""

import json
import sys
import time

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def hot() -> None:
    spin(0.9)


def warm() -> None:
    spin(0.3)


measured = {}
agent = ProfilingAgent()
agent.add_profile_processor(SimpleProfileProcessor(InMemoryProfileExporter()))
agent.start()
with agent.profile(CpuProfiler(format="pprof")) as handle:
    began = time.perf_counter()
    hot()
    measured["hot"] = time.perf_counter() - began
    warm()
    measured["warm"] = time.perf_counter() - began - measured["hot"]
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:  # time on <module> itself
        pass
    measured["window"] = time.perf_counter() - began
assert handle.profile is not None
measured["duration"] = handle.profile.duration.total_seconds()
with open(sys.argv[1], "wb") as out:
    out.write(handle.profile.data)
with open(sys.argv[2], "w") as out:
    json.dump(measured, out)
agent.shutdown()
