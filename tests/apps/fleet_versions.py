"""Two versions of a small service, profiled through the public API into one bucket.

Version 1.0 spends its time in ``common()``, ``old()`` and a little in
``helper()``; version 2.0 in ``common()``, ``new()`` and more in ``helper()``.
Each function spins on ``time.perf_counter`` for its part of a round, and the
program times every call itself: it prints, as JSON, the seconds it measured
in each function and in all the profiled windows together (the ground truth
the diff is checked against).

    python fleet_versions.py VERSION URL STORAGE_OPTIONS_JSON WINDOWS COLOUR
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable, Dict

from opentelemetry.sdk.resources import Resource

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import FsspecProfileExporter
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler

PLAN = {
    "1.0": {"common": 0.5, "old": 0.4, "helper": 0.1},
    "2.0": {"common": 0.3, "new": 0.4, "helper": 0.3},
}
ROUND = 0.25  # seconds per round of calls
ROUNDS = 4  # rounds per profiled window


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def common(seconds: float) -> None:
    spin(seconds)


def old(seconds: float) -> None:
    spin(seconds)


def new(seconds: float) -> None:
    spin(seconds)


def helper(seconds: float) -> None:
    spin(seconds)


FUNCTIONS: Dict[str, Callable[[float], None]] = {
    "common": common,
    "old": old,
    "new": new,
    "helper": helper,
}


def main() -> None:
    version, url, options, windows, colour = sys.argv[1:6]
    resource = Resource.create({"service.name": "shop", "service.version": version})
    agent = ProfilingAgent(resource)
    agent.add_profile_processor(
        SimpleProfileProcessor(FsspecProfileExporter(url, json.loads(options)))
    )
    agent.start()
    spent = {name: 0.0 for name in PLAN[version]}
    profiled = 0.0
    for _ in range(int(windows)):
        with agent.profile(CpuProfiler(), name="round", attributes={"deploy.colour": colour}):
            began = time.perf_counter()
            for _ in range(ROUNDS):
                for name, share in PLAN[version].items():
                    started = time.perf_counter()
                    FUNCTIONS[name](share * ROUND)
                    spent[name] += time.perf_counter() - started
            profiled += time.perf_counter() - began
    agent.shutdown()
    print(json.dumps({"spent": spent, "profiled": profiled}))


if __name__ == "__main__":
    main()
