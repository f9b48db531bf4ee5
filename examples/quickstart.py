"""Profile the bundled workload on SIGUSR2 and export the profile, no server needed.

    python examples/quickstart.py                       # writes under ./profiles
    python examples/quickstart.py s3://bucket/profiles  # any fsspec URL

SIGUSR2 starts the CPU profiler, the workload runs, SIGUSR2 stops it; the
profile goes through a BatchProfileProcessor to the FsspecProfileExporter.
Open the printed .cpuprofile in Chrome DevTools (Performance panel) or
https://www.speedscope.app.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import run_workload  # noqa: E402

from otel_profiling import ProfilingAgent  # noqa: E402
from otel_profiling.exporters import FsspecProfileExporter, InMemoryProfileExporter  # noqa: E402
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor  # noqa: E402
from otel_profiling.profilers import CpuProfiler  # noqa: E402
from otel_profiling.triggers import SignalTrigger  # noqa: E402


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    url = sys.argv[1] if len(sys.argv) > 1 else "file://" + str(Path("profiles").resolve())
    exporter = FsspecProfileExporter(url)
    written = InMemoryProfileExporter()  # remembers what was exported, to print it

    agent = ProfilingAgent()
    agent.register(SignalTrigger(signal.SIGUSR2), CpuProfiler())
    agent.add_profile_processor(BatchProfileProcessor(exporter))
    agent.add_profile_processor(SimpleProfileProcessor(written))
    agent.start()

    os.kill(os.getpid(), signal.SIGUSR2)  # start profiling (on the trigger's thread)
    deadline = time.monotonic() + 10
    while not agent.active_profiles and time.monotonic() < deadline:
        time.sleep(0.01)
    run_workload()
    os.kill(os.getpid(), signal.SIGUSR2)  # stop profiling: the profile is exported
    while not written.get_finished_profiles() and time.monotonic() < deadline + 10:
        time.sleep(0.01)
    agent.shutdown()

    for profile in written.get_finished_profiles():
        print(f"{profile.kind.value} profile ({len(profile.data)} bytes) written to:")
        print(f"  {exporter.url_for(profile)}")
    return 0 if written.get_finished_profiles() else 1


if __name__ == "__main__":
    sys.exit(main())
