"""CPU profile overhead on a call-heavy workload, against bare yappi with the same clock.

Three runs of the same workload, taking turns, best of ``--repeat`` each:

* no profiler;
* bare yappi (``start`` with the same clock and builtins, ``stop``,
  ``get_func_stats``): the floor;
* ``CpuProfiler`` (``start``, workload, ``stop()`` returning the encoded profile).

Both the workload time and the end-to-end time (start to bytes) are shown.

    python benchmarks/cpu_overhead.py [--clock wall|cpu] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, List, Tuple

import yappi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_profiling.profilers import CpuProfiler  # noqa: E402


class Point:
    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def norm(self) -> float:
        return (self.x * self.x + self.y * self.y) ** 0.5


def scale(point: Point, factor: float) -> Point:
    return Point(point.x * factor, point.y * factor)


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def workload() -> float:
    """About 4 million Python calls: small methods, constructors, recursion."""
    total = 0.0
    for i in range(450_000):
        total += scale(Point(i, i + 1), 0.5).norm()
    for _ in range(60):
        total += fib(18)
    return total


def interleaved(
    runs: List[Callable[[], Tuple[float, float]]], repeat: int
) -> List[Tuple[float, float]]:
    """Best of ``repeat`` for each run, the runs taking turns so load changes hit all alike."""
    results: List[List[Tuple[float, float]]] = [[] for _ in runs]
    for _ in range(repeat):
        for slot, run in enumerate(runs):
            results[slot].append(run())
    return [(min(r[0] for r in rs), min(r[1] for r in rs)) for rs in results]


def bare() -> Tuple[float, float]:
    began = time.perf_counter()
    workload()
    seconds = time.perf_counter() - began
    return seconds, seconds


def bare_yappi(clock: str) -> Tuple[float, float]:
    yappi.clear_stats()
    yappi.set_clock_type(clock)
    began = time.perf_counter()
    yappi.start(builtins=True)
    work_began = time.perf_counter()
    workload()
    work = time.perf_counter() - work_began
    yappi.stop()
    yappi.get_func_stats()
    total = time.perf_counter() - began
    yappi.clear_stats()
    return work, total


def library(clock: str) -> Tuple[float, float]:
    profiler = CpuProfiler(clock=clock)
    began = time.perf_counter()
    profiler.start()
    work_began = time.perf_counter()
    workload()
    work = time.perf_counter() - work_began
    profiler.stop()
    return work, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    none, floor, ours = interleaved(
        [bare, lambda: bare_yappi(args.clock), lambda: library(args.clock)], args.repeat
    )
    print(f"clock: {args.clock}")
    print(f"no profiler:  workload {none[0]:.3f} s")
    print(
        f"bare yappi:   workload {floor[0]:.3f} s ({floor[0] / none[0]:.2f}x no profiler), "
        f"start to stats {floor[1]:.3f} s"
    )
    print(f"CpuProfiler:  workload {ours[0]:.3f} s, start to bytes {ours[1]:.3f} s")
    print(
        f"ratio to bare yappi: workload {ours[0] / floor[0]:.3f}x, "
        f"end to end {ours[1] / floor[1]:.3f}x (target <= 1.1x)"
    )


if __name__ == "__main__":
    main()
