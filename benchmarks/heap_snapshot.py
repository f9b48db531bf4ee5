"""Heap snapshot of a heap with about 1,000,000 live gc-tracked objects, against its floor.

The floor is a bare walk of the same heap: ``gc.get_objects()`` and
``gc.get_referents()`` of each object, visiting every referent once (a set of
ids). Each measurement runs in a fresh process that imports the library and
then builds the same heap, so both walk the same objects and neither sees the
other's memory; peak extra memory is the process's peak RSS minus its RSS
just before the walk. Rounds interleave the floor and the snapshot, since the
machine's speed drifts; each round's ratio is reported with the medians. Wall
time is the measure; CPU time (``time.process_time``) is shown beside it, as
it moves less when other processes compete for the cores.

``--against NAME=PATH`` adds the snapshot of another copy of the library (a
directory holding an ``otel_profiling`` package, e.g. a ``git worktree`` of
another commit) to the same rounds, to compare two versions under the same
conditions; each round's ratio to this copy is reported too.

    python benchmarks/heap_snapshot.py [--objects 1000000] [--rounds 5]
        [--against NAME=PATH ...]
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
from typing import Any, Dict, List, Tuple

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
    objs = gc.get_objects()
    seen = set(map(id, objs))
    for obj in objs:
        for ref in gc.get_referents(obj):
            key = id(ref)
            if key not in seen:
                seen.add(key)
    return {"nodes": len(seen)}


def snapshot() -> Dict[str, float]:
    from otel_profiling.profilers import HeapSnapshotProfiler

    profiler = HeapSnapshotProfiler(collect=False)  # the heap was just collected
    profiler.start()
    data = profiler.stop()
    return {
        "nodes": profiler.last_node_count,
        "edges": profiler.last_edge_count,
        "bytes": len(data),
    }


def child(mode: str, objects: int, library: str) -> None:
    # Imported in both modes, before the heap is built: both walk the same heap.
    sys.path.insert(0, library)
    import otel_profiling.profilers  # noqa: F401

    build(objects)
    before = rss_mb()
    began, cpu = time.perf_counter(), time.process_time()
    result = floor_walk() if mode == "floor" else snapshot()
    result["seconds"] = time.perf_counter() - began
    result["cpu"] = time.process_time() - cpu
    result["extra_mb"] = peak_mb() - before
    result["tracked"] = len(gc.get_objects())
    print(json.dumps(result))


def run(mode: str, objects: int, library: Path) -> Dict[str, float]:
    command = [sys.executable, __file__, "--child", mode, "--objects", str(objects)]
    command += ["--library", str(library)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def named_path(text: str) -> Tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not (Path(path) / "otel_profiling").is_dir():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH with PATH/otel_profiling: {text!r}")
    return name, Path(path).resolve()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians)")
    parser.add_argument("--against", type=named_path, action="append", default=[])
    parser.add_argument("--child", choices=["floor", "snapshot"])
    parser.add_argument("--library", default=str(ROOT))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.objects, args.library)
        return
    copies = [("this", ROOT), *args.against]
    floors: List[Dict[str, float]] = []
    snaps: Dict[str, List[Dict[str, float]]] = {name: [] for name, _ in copies}
    for number in range(args.rounds):
        floors.append(run("floor", args.objects, ROOT))
        shift = number % len(copies)  # each copy goes first in turn
        for name, path in copies[shift:] + copies[:shift]:
            snaps[name].append(run("snapshot", args.objects, path))

    def median(rows: List[Dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    def ratios(rows: List[Dict[str, float]], base: List[Dict[str, float]], key: str) -> str:
        values = [row[key] / under[key] for row, under in zip(rows, base, strict=True)]
        by_round = ", ".join(f"{value:.2f}" for value in values)
        return f"{statistics.median(values):.2f}x (rounds: {by_round})"

    print(f"live gc-tracked objects: {floors[-1]['tracked']:,}; {args.rounds} rounds, medians")
    print(
        f"floor (gc walk): {median(floors, 'seconds'):.2f} s wall, {median(floors, 'cpu'):.2f} s"
        f" CPU, {floors[-1]['nodes']:,} distinct objects, peak extra memory "
        f"{max(f['extra_mb'] for f in floors):.0f} MiB"
    )
    for name, rows in snaps.items():
        last = rows[-1]
        print(
            f"snapshot [{name}]: {median(rows, 'seconds'):.2f} s wall, {median(rows, 'cpu'):.2f} s"
            f" CPU, {last['nodes']:,} nodes, {last['edges']:,} edges, "
            f"{last['bytes'] / 2**20:.0f} MiB written"
        )
        print(f"  to the floor, wall: {ratios(rows, floors, 'seconds')}")
        print(f"  to the floor, CPU:  {ratios(rows, floors, 'cpu')}")
        extra = sorted(round(row["extra_mb"]) for row in rows)
        print(f"  peak extra memory: {extra[-1]} MiB (rounds, sorted: {extra})")
        if name != "this":
            print(f"  to [this], wall: {ratios(rows, snaps['this'], 'seconds')}")
            print(f"  to [this], CPU:  {ratios(rows, snaps['this'], 'cpu')}")


if __name__ == "__main__":
    main()
