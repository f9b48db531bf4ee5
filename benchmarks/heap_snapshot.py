"""Heap snapshot of a heap with about 1,000,000 live gc-tracked objects, against its floor.

The floor is a bare walk of the same heap: ``gc.get_objects()`` and
``gc.get_referents()`` of each object, visiting every referent once (a set of
ids). Each measurement runs in a fresh process that imports the library and
then builds the same heap, so both walk the same objects and neither sees the
other's memory; peak extra memory is the process's peak RSS minus its RSS
just before the snapshot.

    python benchmarks/heap_snapshot.py [--objects 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent


class Record:
    def __init__(self, number: int) -> None:
        self.number = number
        self.name = f"record-{number}"
        self.tags = [number % 7, "tag"]
        self.meta = {"tags": self.tags, "kind": "record"}


HEAP: List[Any] = []


def build(objects: int) -> None:
    """Three gc-tracked objects per record (instance, list, dict) plus an int and a str."""
    HEAP.extend(Record(i) for i in range(max(objects - len(gc.get_objects()), 0) // 3))
    gc.collect()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor_walk() -> Dict[str, float]:
    began = time.perf_counter()
    objs = gc.get_objects()
    seen = set(map(id, objs))
    for obj in objs:
        for ref in gc.get_referents(obj):
            key = id(ref)
            if key not in seen:
                seen.add(key)
    return {"seconds": time.perf_counter() - began, "nodes": len(seen)}


def snapshot() -> Dict[str, float]:
    from otel_profiling.profilers import HeapSnapshotProfiler

    profiler = HeapSnapshotProfiler(collect=False)  # the heap was just collected
    before = rss_mb()
    began = time.perf_counter()
    profiler.start()
    data = profiler.stop()
    seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "nodes": profiler.last_node_count,
        "edges": profiler.last_edge_count,
        "bytes": len(data),
        "extra_mb": peak_mb() - before,
    }


def child(mode: str, objects: int) -> None:
    # Imported in both modes, before the heap is built: both walk the same heap.
    sys.path.insert(0, str(ROOT))
    import otel_profiling.profilers  # noqa: F401

    build(objects)
    result = floor_walk() if mode == "floor" else snapshot()
    result["tracked"] = len(gc.get_objects())
    print(json.dumps(result))


def run(mode: str, objects: int) -> Dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--objects", str(objects)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="floor/snapshot pairs (median)")
    parser.add_argument("--child", choices=["floor", "snapshot"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.objects)
        return
    floors, snaps = [], []
    for _ in range(args.rounds):  # interleaved, so a slow stretch of the machine hits both
        floors.append(run("floor", args.objects))
        snaps.append(run("snapshot", args.objects))
    floor = statistics.median(f["seconds"] for f in floors)
    snap = statistics.median(s["seconds"] for s in snaps)
    last = snaps[-1]
    print(f"live gc-tracked objects: {floors[-1]['tracked']:,}; {args.rounds} rounds, medians")
    print(f"floor (gc walk): {floor:.2f} s, {floors[-1]['nodes']:,} distinct objects")
    print(
        f"snapshot: {snap:.2f} s, {last['nodes']:,} nodes, {last['edges']:,} edges, "
        f"{last['bytes'] / 2**20:.0f} MiB written"
    )
    ratios = ", ".join(
        f"{s['seconds'] / f['seconds']:.2f}" for f, s in zip(floors, snaps, strict=True)
    )
    print(f"ratio to floor: {snap / floor:.2f}x (target <= 3x); by round: {ratios}")
    extra = max(s["extra_mb"] for s in snaps)
    print(f"peak extra memory: {extra:.0f} MiB, the largest of the rounds (target <= 150 MiB)")


if __name__ == "__main__":
    main()
