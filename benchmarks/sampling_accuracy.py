"""How true the CPU engines are on a thread that alternates CPU bursts and waits.

A request handler computes for a few milliseconds, then waits on I/O. The
program below does that for a few seconds, timing its own bursts and waits
with ``perf_counter``, and compares them with what each engine's profile
gives the two functions. Burst and wait lengths vary from shorter than the
interpreter's switch interval (5 ms) to far longer.

    python benchmarks/sampling_accuracy.py [--seconds 3] [--load N]

``--load N`` runs N busy processes beside it, as on a loaded machine or a
container at its CPU quota. Results: ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from typing import Dict, List, Tuple

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler

PHASES: List[Tuple[float, float]] = [(0.003, 0.002), (0.012, 0.008), (0.05, 0.03), (0.2, 0.1)]
ENGINES = [("sampling", "wall"), ("sampling", "cpu"), ("yappi", "wall")]


def burst(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def wait(seconds: float) -> None:
    time.sleep(seconds)


def profiled_seconds(folded: str, unit_ns: float) -> Dict[str, float]:
    """Inclusive seconds of ``burst`` and ``wait`` in a folded profile."""
    found = {"burst": 0.0, "wait": 0.0}
    for line in folded.splitlines():
        stack, value = line.rsplit(" ", 1)
        names = {frame.split(" (")[0].rsplit(".", 1)[-1] for frame in stack.split(";")}
        for name in found:
            if name in names:
                found[name] += int(value) * unit_ns / 1e9
    return found


def run(engine: str, clock: str, phases: Tuple[float, float], seconds: float) -> str:
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    busy = idle = busy_cpu = 0.0
    with agent.profile(CpuProfiler(engine=engine, clock=clock, format="folded")):
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            # each span holds one call and a clock read: under load a thread_time()
            # system call may itself wait for a core, which belongs to neither
            cpu = time.thread_time()
            a = time.perf_counter()
            burst(phases[0])
            busy += time.perf_counter() - a
            busy_cpu += time.thread_time() - cpu
            b = time.perf_counter()
            wait(phases[1])
            idle += time.perf_counter() - b
    agent.shutdown()
    profile = exporter.get_finished_profiles()[0]
    got = profiled_seconds(profile.data.decode(), 1e3)  # folded time is in microseconds
    phase = f"{phases[0] * 1e3:g} / {phases[1] * 1e3:g} ms"
    if clock == "cpu":  # the truth is the CPU time the bursts used; the waits use none
        truth, wait_truth = busy_cpu, 0.0
    else:
        truth, wait_truth = busy, idle
    burst_cell = f"{got['burst']:.2f} s ({(got['burst'] / truth - 1) * 100:+.0f} %)"
    wait_cell = f"{got['wait']:.2f} s"
    if wait_truth:
        wait_cell += f" ({(got['wait'] / wait_truth - 1) * 100:+.0f} %)"
    row = [
        phase,
        f"{engine}, {clock}",
        f"{truth:.2f} s",
        f"{wait_truth:.2f} s",
        burst_cell,
        wait_cell,
    ]
    return "| " + " | ".join(row) + " |"


def _spin_forever() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--load", type=int, default=0, help="busy processes to run beside")
    args = parser.parse_args()
    hogs = [multiprocessing.Process(target=_spin_forever, daemon=True) for _ in range(args.load)]
    for hog in hogs:
        hog.start()
    try:
        print(f"load: {args.load} busy process(es)")
        print("| burst / wait | engine, clock | burst | wait | burst in the profile | wait in it |")
        print("|---|---|---|---|---|---|")
        for phases in PHASES:
            for engine, clock in ENGINES:
                print(run(engine, clock, phases, args.seconds), flush=True)
    finally:
        for hog in hogs:
            hog.terminate()


if __name__ == "__main__":
    main()
