"""A process that grows past a MemoryThresholdTrigger's threshold on request.

Usage: memory_app.py URL MARGIN_BYTES COOLDOWN
The threshold is the resident size at start plus MARGIN_BYTES. Commands on stdin:
``count`` prints how many profiles were exported so far, ``grow N`` allocates and
touches N more bytes, ``quit`` shuts down and prints one JSON line per profile.
"""

from __future__ import annotations

import json
import sys

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import FsspecProfileExporter, InMemoryProfileExporter
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor
from otel_profiling.profilers import HeapSnapshotProfiler
from otel_profiling.triggers import MemoryThresholdTrigger
from otel_profiling.triggers.thresholds import resident_bytes


def main() -> None:
    url, margin, cooldown = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    threshold = resident_bytes() + margin
    memory = InMemoryProfileExporter()
    agent = ProfilingAgent()
    trigger = MemoryThresholdTrigger(rss_bytes=threshold, cooldown=cooldown, poll_interval=0.05)
    agent.register(trigger, HeapSnapshotProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(memory))
    agent.add_profile_processor(BatchProfileProcessor(FsspecProfileExporter(url)))
    agent.start()
    held = []
    print("ready", threshold, flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "grow":
            held.append(bytearray(b"\x01") * int(command[1]))  # touched: resident
            print("grown", resident_bytes(), flush=True)
        elif command[0] == "count":
            print("count", len(memory.get_finished_profiles()), flush=True)
        elif command[0] == "quit":
            break
    agent.shutdown()
    for profile in memory.get_finished_profiles():
        print(json.dumps({"key": profile.key, "attributes": dict(profile.attributes)}))


if __name__ == "__main__":
    main()
