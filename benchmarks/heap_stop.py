"""Heap profile stop time for 20 000 / 100 000 / 1 000 000 live blocks, against its floor.

The floor is ``tracemalloc.take_snapshot()`` alone: the one step any heap
profile needs and that holds the GIL. ``stop`` is ``HeapProfiler.stop()``
whole: snapshot, tracing stopped, grouping by stack, the library's own
allocations left out, function names, the tree and the ``.heapprofile``
encoding. ``old`` (``--old``) is the previous implementation's first step,
``take_snapshot().filter_traces(...)`` run while still tracing, for comparison.

Each measurement runs in a fresh process that allocates the same blocks (one
``bytes`` object each, from 20 stacks 12 to 31 frames deep) inside the window.
Meanwhile a thread of the "application" sleeps 1 ms in a loop; the longest gap
between two of its ticks is the longest the application was stalled. Rounds
are interleaved (every size and variant once per round) and medians reported.

    python benchmarks/heap_stop.py [--rounds 5] [--sizes 20000,100000,1000000] [--old]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
KEPT: List[Any] = []


def allocate(blocks: int) -> None:
    """``blocks`` live objects from 20 different stacks."""
    per_stack = blocks // 20
    for stack in range(20):
        _nested(10 + stack, per_stack, 40 + stack * 8)


def _nested(depth: int, count: int, size: int) -> None:
    if depth:
        _nested(depth - 1, count, size)
    else:
        KEPT.extend(bytes(size) for _ in range(count))


class Ticker:
    """A thread ticking every 1 ms; ``longest`` is the longest gap between ticks (seconds)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> Ticker:
        self._thread.start()
        time.sleep(0.05)
        self.longest = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(variant: str, blocks: int) -> Dict[str, float]:
    from otel_profiling.profilers import HeapProfiler

    profiler = HeapProfiler()
    if variant == "stop":
        profiler.start()
    else:
        tracemalloc.start(profiler.frames)
    allocate(blocks)
    with Ticker() as ticker:
        began = time.perf_counter()
        if variant == "stop":
            data = profiler.stop()
        elif variant == "snapshot":
            data = b""
            tracemalloc.take_snapshot()
        else:  # the previous implementation's first step, still tracing
            data = b""
            package = str(ROOT / "otel_profiling" / "*")
            tracemalloc.take_snapshot().filter_traces(
                (
                    tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, package),
                )
            )
        seconds = time.perf_counter() - began
    if tracemalloc.is_tracing():
        tracemalloc.stop()
    return {"seconds": seconds, "stall": ticker.longest, "bytes": len(data)}


def child(variant: str, blocks: int) -> Dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(blocks)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="20000,100000,1000000")
    parser.add_argument("--old", action="store_true", help="also time the old filter_traces step")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = ["snapshot", "stop"] + (["old"] if args.old else [])
    results: Dict[tuple, List[Dict[str, float]]] = {}
    for round_ in range(args.rounds):
        for blocks in sizes:
            for variant in variants:
                result = child(variant, blocks)
                results.setdefault((blocks, variant), []).append(result)
                print(
                    f"round {round_ + 1} {blocks:>9} {variant:<8} "
                    f"{result['seconds']:.3f} s, longest stall {result['stall'] * 1000:.0f} ms",
                    file=sys.stderr,
                )
    print(f"Python {sys.version.split()[0]}, medians of {args.rounds} interleaved rounds")
    print(
        "| live blocks | take_snapshot() alone | HeapProfiler.stop() | ratio | "
        "longest stall: snapshot / stop |" + (" old first step |" if args.old else "")
    )
    print("|---|---|---|---|---|" + ("---|" if args.old else ""))
    for blocks in sizes:
        med = {
            v: {
                k: statistics.median(r[k] for r in results[(blocks, v)])
                for k in ("seconds", "stall")
            }
            for v in variants
        }
        line = (
            f"| {blocks:,} | {med['snapshot']['seconds']:.3f} s | {med['stop']['seconds']:.3f} s | "
            f"{med['stop']['seconds'] / med['snapshot']['seconds']:.1f}× | "
            f"{med['snapshot']['stall'] * 1000:.0f} ms / {med['stop']['stall'] * 1000:.0f} ms |"
        )
        if args.old:
            line += f" {med['old']['seconds']:.2f} s |"
        print(line)


if __name__ == "__main__":
    main()
