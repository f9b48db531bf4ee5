"""Encoding a CPU profile of a workload that touches 10,000 distinct functions.

Measures ``CpuProfiler.stop()`` (stop to bytes: yappi's stats, the call tree
and the encoding) for every CPU format, against the floor measured in the
same run: stopping bare yappi and reading its stats (``get_func_stats()``).

    python benchmarks/cpu_encode.py [--functions 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import yappi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_profiling.profilers import CpuProfiler  # noqa: E402


def make_functions(count: int) -> List[Callable[[int], int]]:
    """``count`` distinct functions; each calls two others, so the graph fans out."""
    lines = []
    for i in range(count):
        a, b = (i * 7 + 1) % count, (i * 13 + 5) % count
        lines.append(
            f"def f{i}(depth):\n"
            f"    if depth <= 0:\n        return {i}\n"
            f"    return f{a}(depth - 1) + f{b}(depth - 2)\n"
        )
    namespace: Dict[str, object] = {}
    exec(compile("".join(lines), "generated_functions.py", "exec"), namespace)  # noqa: S102
    return [namespace[f"f{i}"] for i in range(count)]  # type: ignore[misc]


def workload(functions: List[Callable[[int], int]]) -> None:
    for function in functions:
        function(3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--functions", type=int, default=10_000)
    args = parser.parse_args()
    functions = make_functions(args.functions)

    yappi.set_clock_type("wall")
    yappi.clear_stats()
    yappi.start(builtins=True)
    workload(functions)
    began = time.perf_counter()
    yappi.stop()
    stats = yappi.get_func_stats()
    floor = time.perf_counter() - began
    touched = len(stats)
    yappi.clear_stats()
    print(f"functions touched: {touched:,}")
    print(f"floor (yappi stop + get_func_stats): {floor:.3f} s")

    for fmt in ("cpuprofile", "pprof", "folded", "pstats", "callgrind"):
        profiler = CpuProfiler(format=fmt, engine="yappi")  # the yappi engine's encoding
        profiler.start()
        workload(functions)
        began = time.perf_counter()
        data = profiler.stop()
        seconds = time.perf_counter() - began
        print(
            f"{fmt:>10}: stop to bytes {seconds:.3f} s ({seconds / floor:.1f}x floor), "
            f"{len(data) / 2**20:.1f} MiB (target <= 0.5 s)"
        )


if __name__ == "__main__":
    main()
