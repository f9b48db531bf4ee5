"""The yappi engine's cost against bare yappi, side by side in one process.

Two workloads — call-heavy (small methods, constructors, recursion) and a
web-handler mix (JSON, regular expressions, objects, sorting) — each run
under, in turn:

* no profiler;
* bare yappi: ``clear_stats``, ``set_clock_type``, ``start(builtins=True)``,
  workload, ``stop``, its stats read with ``get_func_stats()``;
* ``CpuProfiler(engine="yappi")`` writing ``.cpuprofile`` (the derived call
  tree) and writing ``pstats`` (the call graph): ``start``, workload,
  ``stop()`` returning the bytes.

The runs take turns for ``--rounds`` rounds; each line shows the medians
over rounds of the workload time alone and of the time from start to stats
or bytes, and the median of each round's workload ratio to that round's bare
yappi run (rounds pair up, so load that changes between rounds cancels).
Target: the engine within 1.05x bare yappi.

    python benchmarks/yappi_engine.py [--clock wall|cpu] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

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


def call_heavy() -> float:
    """About 2 million Python calls."""
    total = 0.0
    for i in range(200_000):
        total += scale(Point(i, i + 1), 0.5).norm()
    for _ in range(30):
        total += fib(18)
    return total


WORD = re.compile(r"[a-z]+")


class Order:
    def __init__(self, raw: Dict[str, object]) -> None:
        self.id = int(raw["id"])  # type: ignore[call-overload]
        self.items = list(raw["items"])  # type: ignore[call-overload]
        self.note = str(raw["note"])

    def total(self) -> float:
        return sum(item["price"] * item["qty"] for item in self.items)

    def words(self) -> List[str]:
        return WORD.findall(self.note.lower())


def handle(body: str) -> str:
    order = Order(json.loads(body))
    ranked = sorted(order.items, key=lambda item: (-item["price"], item["sku"]))
    return json.dumps({"id": order.id, "total": order.total(), "top": ranked[0]["sku"],
                       "words": len(order.words())})  # fmt: skip


def web_handler() -> int:
    """3,000 requests: parse JSON, build objects, a regex, a sort, write JSON."""
    body = json.dumps(
        {
            "id": 7,
            "items": [{"sku": f"s{i}", "price": i % 13 + 0.5, "qty": i % 3 + 1} for i in range(40)],
            "note": "Leave the parcel at the door, ring twice, thank you " * 4,
        }
    )
    return sum(len(handle(body)) for _ in range(3_000))


def no_profiler(work: Callable[[], object], clock: str) -> Tuple[float, float]:
    began = time.perf_counter()
    work()
    seconds = time.perf_counter() - began
    return seconds, seconds


def bare_yappi(work: Callable[[], object], clock: str) -> Tuple[float, float]:
    began = time.perf_counter()
    yappi.clear_stats()
    yappi.set_clock_type(clock)
    yappi.start(builtins=True)
    work_began = time.perf_counter()
    work()
    worked = time.perf_counter() - work_began
    yappi.stop()
    yappi.get_func_stats()
    total = time.perf_counter() - began
    yappi.clear_stats()
    return worked, total


def engine(fmt: str) -> Callable[[Callable[[], object], str], Tuple[float, float]]:
    def run(work: Callable[[], object], clock: str) -> Tuple[float, float]:
        profiler = CpuProfiler(fmt, engine="yappi", clock=clock)
        began = time.perf_counter()
        profiler.start()
        work_began = time.perf_counter()
        work()
        worked = time.perf_counter() - work_began
        profiler.stop()
        return worked, time.perf_counter() - began

    return run


RUNS = {
    "no profiler": no_profiler,
    "bare yappi": bare_yappi,
    "engine, cpuprofile": engine("cpuprofile"),
    "engine, pstats": engine("pstats"),
}


def measure(
    work: Callable[[], object], clock: str, rounds: int
) -> Dict[str, Tuple[float, float, float]]:
    """Per run, the runs taking turns each round: the medians of the workload time and of the
    time from start to result, and the median of each round's workload ratio to bare yappi."""
    samples: Dict[str, List[Tuple[float, float]]] = {name: [] for name in RUNS}
    for _ in range(rounds):
        for name, run in RUNS.items():
            samples[name].append(run(work, clock))
    floor = samples["bare yappi"]
    return {
        name: (
            statistics.median(worked for worked, _ in values),
            statistics.median(total for _, total in values),
            statistics.median(mine[0] / bare[0] for mine, bare in zip(values, floor, strict=True)),
        )
        for name, values in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    version = sys.version.split()[0]
    print(f"clock {args.clock}, median of {args.rounds} interleaved rounds, Python {version}")
    for label, work in (("call-heavy", call_heavy), ("web handler", web_handler)):
        results = measure(work, args.clock, args.rounds)
        base, floor = results["no profiler"][0], results["bare yappi"]
        print(f"\n{label}")
        for name, (worked, total, paired) in results.items():
            print(
                f"  {name:20} workload {worked:.3f} s ({worked / base:.2f}x no profiler, "
                f"{paired:.3f}x bare yappi round by round)   start to result {total:.3f} s "
                f"({total / floor[1]:.3f}x bare yappi)"
            )


if __name__ == "__main__":
    main()
