"""Exit without shutdown, with profiles left for the exit hook: ``exit_app.py URL MODE [ENDPOINT]``.

``queued``: a profile waits in the queue (60 s schedule delay; the worker
runs). ``running``: a profile is still running, so the exit hook ends it and
the processor gets its first profile only then (no worker, and the exporter
never wrote before). The app forbids new threads from the moment the exit
hooks run, as Python 3.12.0 and 3.12.1 do by themselves, and prints
``threads-refused N`` at the very end.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time

from otel_profiling import ProfileKind, ProfilingAgent
from otel_profiling.exporters import FsspecProfileExporter
from otel_profiling.processors import BatchProfileProcessor
from otel_profiling.profilers import Profiler
from otel_profiling.triggers import Trigger

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)


class Clock(Profiler):
    """Measures the window; its payload names the mode, so the test knows which profile it is."""

    kind = ProfileKind.CPU_PROFILE

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self._t0: float | None = None

    @property
    def running(self) -> bool:
        return self._t0 is not None

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> bytes:
        assert self._t0 is not None
        elapsed, self._t0 = time.perf_counter() - self._t0, None
        return f'{{"label": "{self.label}", "seconds": {elapsed:.6f}}}'.encode()


class Once(Trigger):
    name = "once"


refused = []


def forbid_new_threads() -> None:
    def start(self: threading.Thread) -> None:
        refused.append(self.name)
        raise RuntimeError("can't create new thread at interpreter shutdown")

    threading.Thread.start = start  # type: ignore[method-assign]


def main() -> None:
    url, mode = sys.argv[1], sys.argv[2]
    options = {}
    if len(sys.argv) > 3:
        options = {
            "endpoint_url": sys.argv[3],
            "config_kwargs": {
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            },
        }
    trigger = Once()
    agent = ProfilingAgent(exit_timeout_millis=20_000)
    agent.register(trigger, Clock(mode))
    agent.add_profile_processor(
        BatchProfileProcessor(FsspecProfileExporter(url, options), schedule_delay_millis=60_000)
    )
    agent.start()
    # registered after the agent's hook, so it runs before it (reverse order)
    threading._register_atexit(forbid_new_threads)  # type: ignore[attr-defined]
    atexit.register(lambda: print("threads-refused", len(refused), flush=True))
    assert trigger.target is not None
    trigger.target.start()
    time.sleep(0.05)
    if mode == "queued":
        trigger.target.stop()
    print("exiting", flush=True)


main()
