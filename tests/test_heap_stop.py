"""Heap profile stop: exact numbers for many live blocks, the library's own allocations left out.

Ground truth: the test knows how many objects of which size it keeps, and
from which line; the library's work during the window (encoding and
exporting another profile, a batch worker writing it) must leave no trace.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
import uuid
from typing import Any, List, Tuple

import fsspec
import pytest
from viewers import load_pprof

from otel_profiling import ProfilingAgent
from otel_profiling._threads import PACKAGE_DIR
from otel_profiling.exporters import FsspecProfileExporter, InMemoryProfileExporter
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler, HeapProfiler
from otel_profiling.profilers.heap_traces import live_stacks

BLOCKS = 100_000
BLOCK_LENGTH = 100  # every kept object is a fresh bytes of this length
OBJECT_SIZE = sys.getsizeof(bytes(BLOCK_LENGTH))  # what tracemalloc records for one
KEPT: List[Any] = []


def keep_blocks(slots: List[Any]) -> None:
    for index in range(len(slots)):
        slots[index] = bytes(BLOCK_LENGTH)  # one block per object, nothing else on this line


Frame = Tuple[str, str, int]  # function name, file, line
KEEP_LINE = keep_blocks.__code__.co_firstlineno + 2  # the line that allocates


def samples(data: bytes) -> List[Tuple[List[Frame], int, int]]:
    """A pprof heap profile as ``(frames root first, objects, bytes)`` per sample."""
    profile = load_pprof(data)
    strings = profile.string_table
    functions = {f.id: (strings[f.name], strings[f.filename]) for f in profile.function}
    locations = {
        loc.id: (*functions[loc.line[0].function_id], loc.line[0].line) for loc in profile.location
    }
    return [
        ([locations[i] for i in reversed(sample.location_id)], sample.value[0], sample.value[1])
        for sample in profile.sample
    ]


def kept_by(data: bytes, function: str = "keep_blocks", line: int = KEEP_LINE) -> Tuple[int, int]:
    """Objects and bytes allocated at ``function``'s ``line`` (the innermost frame).

    The line, not just the function: from Python 3.12 the interpreter may itself
    allocate at a function's entry (instrumentation data after a profiler ran).
    """
    rows = [
        (objects, size)
        for frames, objects, size in samples(data)
        if frames[-1][0] == function and frames[-1][2] == line
    ]
    return sum(r[0] for r in rows), sum(r[1] for r in rows)


def library_rows(data: bytes, *also: str) -> List[List[str]]:
    """The samples with a frame in the library (or in files matching ``also``)."""
    return [
        [file for _, file, _ in frames]
        for frames, _, size in samples(data)
        if size
        and any(
            file.startswith(PACKAGE_DIR) or any(a in file for a in also) for _, file, _ in frames
        )
    ]


def test_many_live_blocks_are_counted_exactly() -> None:
    slots: List[Any] = [None] * BLOCKS  # allocated before the window
    profiler = HeapProfiler(format="pprof", frames=16)  # shallower: cheaper under pytest
    profiler.start()
    keep_blocks(slots)
    data = profiler.stop()
    assert kept_by(data, "keep_blocks") == (BLOCKS, BLOCKS * OBJECT_SIZE)
    del slots


def test_the_librarys_own_work_in_the_window_is_left_out() -> None:
    """Encoding and exporting a CPU profile, on this thread and a batch worker, leaves nothing."""
    url = f"memory://own-{uuid.uuid4().hex}"
    agent = ProfilingAgent()
    agent.add_profile_processor(SimpleProfileProcessor(FsspecProfileExporter(url)))
    agent.add_profile_processor(BatchProfileProcessor(FsspecProfileExporter(url + "-batch")))
    slots: List[Any] = [None] * 2000
    agent.start()
    try:
        with agent.profile(HeapProfiler(format="pprof")) as heap:
            keep_blocks(slots)
            with agent.profile(CpuProfiler(), name="inner"):  # encoded and exported in the window
                time.sleep(0.05)
            assert agent.force_flush(30_000)  # the batch worker wrote it too
    finally:
        agent.shutdown()
    assert heap.profile is not None

    # The control: the library wrote profiles during the window, and they are still alive.
    fs = fsspec.filesystem("memory")
    root = url.replace("memory://", "/")
    for folder in (root, root + "-batch"):
        written = [p for p in fs.find(folder) if p.endswith(".cpuprofile")]
        assert written, f"the library exported nothing to {folder} during the window"
        assert json.loads(fs.cat_file(written[0]))["nodes"]

    data = heap.profile.data
    assert library_rows(data, "fsspec", "json/encoder.py", "json/__init__.py") == []
    assert kept_by(data, "keep_blocks") == (len(slots), len(slots) * OBJECT_SIZE)


def test_a_decorated_functions_allocations_are_the_applications() -> None:
    """The decorator's wrapper is library code that runs the application: what it calls counts."""
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    slots: List[Any] = [None] * 3000

    @agent.profile(HeapProfiler(format="pprof"), name="decorated")
    def job() -> None:
        keep_blocks(slots)

    try:
        job()
    finally:
        agent.shutdown()
    (heap,) = exporter.get_finished_profiles()
    assert kept_by(heap.data, "keep_blocks") == (len(slots), len(slots) * OBJECT_SIZE)
    innermost_library = [
        frames
        for frames, _, size in samples(heap.data)
        if size and frames[-1][1].startswith(PACKAGE_DIR)
    ]
    assert innermost_library == []


def test_growth_when_tracing_was_already_on_leaves_the_library_out() -> None:
    tracemalloc.start(8)
    try:
        before: List[Any] = [bytes(BLOCK_LENGTH) for _ in range(500)]  # alive before: not growth
        slots: List[Any] = [None] * 1500
        agent = ProfilingAgent()
        agent.add_profile_processor(SimpleProfileProcessor(InMemoryProfileExporter()))
        agent.start()
        try:
            with agent.profile(HeapProfiler(format="pprof")) as heap:
                keep_blocks(slots)
                with agent.profile(CpuProfiler(), name="inner"):
                    time.sleep(0.05)
        finally:
            agent.shutdown()
        assert tracemalloc.is_tracing()  # left running: it was not ours
    finally:
        tracemalloc.stop()
    assert heap.profile is not None
    assert kept_by(heap.profile.data, "keep_blocks") == (len(slots), len(slots) * OBJECT_SIZE)
    assert library_rows(heap.profile.data) == []
    del before


class _PublicOnly:
    """A snapshot seen through its public API only (no raw traces list)."""

    def __init__(self, snapshot: tracemalloc.Snapshot) -> None:
        self.traces = tuple(snapshot.traces)
        self.statistics = snapshot.statistics


def test_the_public_grouping_gives_the_same_stacks() -> None:
    tracemalloc.start(16)
    try:
        slots: List[Any] = [None] * 5000
        keep_blocks(slots)
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    fast = live_stacks(snapshot)
    public = live_stacks(_PublicOnly(snapshot))  # type: ignore[arg-type]
    assert fast == public
    line = keep_blocks.__code__.co_firstlineno + 2
    kept = [value for frames, value in fast.items() if frames[0] == (__file__, line)]
    assert kept == [(len(slots) * OBJECT_SIZE, len(slots))]


@pytest.mark.parametrize("frames", [1, 2, 64])
def test_truncated_stacks_keep_exact_totals(frames: int) -> None:
    slots: List[Any] = [None] * 4000
    profiler = HeapProfiler(format="pprof", frames=frames)
    profiler.start()
    keep_blocks(slots)
    assert kept_by(profiler.stop(), "keep_blocks") == (len(slots), len(slots) * OBJECT_SIZE)
