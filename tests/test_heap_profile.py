"""Heap profiles (tracemalloc) read back as their viewers read them."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import tracemalloc
import types
from pathlib import Path
from typing import Any, List

import pytest
from support import wait_for
from viewers import (
    heapprofile_totals,
    load_folded,
    load_heapprofile,
    load_pprof,
    pprof_stacks,
)

import otel_profiling
from otel_profiling import ProfileKind, ProfilingAgent
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.formats.folded import decode_folded
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor
from otel_profiling.profilers import HeapProfiler, ProfilerBusyError
from otel_profiling.profilers.source_names import FunctionNames, walk_code
from otel_profiling.triggers import SignalTrigger

MB = 1024 * 1024
KEPT: List[Any] = []


def allocate_ten_megabytes() -> None:
    """About 12 MB of lists, kept alive by a module global."""
    KEPT.extend([0] * 1000 for _ in range(1500))  # 1500 × ~8 KB


def allocate_and_free() -> None:
    garbage = [[0] * 1000 for _ in range(1500)]
    del garbage


def profile_window(profiler: HeapProfiler) -> bytes:
    KEPT.clear()
    profiler.start()
    allocate_ten_megabytes()
    allocate_and_free()
    return profiler.stop()


def test_heapprofile_shows_live_allocations_by_function() -> None:
    profile = load_heapprofile(profile_window(HeapProfiler()))
    totals = heapprofile_totals(profile)
    assert totals["allocate_ten_megabytes"] >= 10 * MB
    assert totals.get("allocate_and_free", 0) < 1 * MB  # freed inside the window
    names = set(totals)
    assert "allocate_ten_megabytes.<locals>.<genexpr>" in names or any(
        "<genexpr>" in n for n in names
    )
    assert "profile_window" in names  # function names recovered, not just file:line
    assert all(not n.endswith(".py") for n in names if n != "(root)")


def test_heap_pprof_decodes_with_profile_proto() -> None:
    profile = load_pprof(profile_window(HeapProfiler(format="pprof")))
    types = [
        (profile.string_table[t.type], profile.string_table[t.unit]) for t in profile.sample_type
    ]
    assert types == [("inuse_objects", "count"), ("inuse_space", "bytes")]
    total = sum(
        values[1] for stack, values in pprof_stacks(profile) if "allocate_ten_megabytes" in stack
    )
    assert total >= 10 * MB
    assert profile.time_nanos > 0 and profile.duration_nanos > 0


def test_heap_folded_sums_to_the_same_bytes() -> None:
    stacks = load_folded(profile_window(HeapProfiler(format="folded")))
    total = sum(
        count for stack, count in stacks if any("allocate_ten_megabytes" in f for f in stack)
    )
    assert total >= 10 * MB


def test_heap_folded_window_that_keeps_nothing_is_exported_as_empty() -> None:
    """A window in which nothing stays alive is a profile of nothing, not a failure.

    Truth: the block allocates nothing (a constant is bound to a name that
    exists already), so the profile holds no bytes: read back as flamegraph.pl
    reads it, every count is 0, and it reaches the exporter like any other.
    """
    exporter = InMemoryProfileExporter()
    processor = BatchProfileProcessor(exporter)
    agent = ProfilingAgent()
    agent.add_profile_processor(processor)
    agent.start()
    try:
        kept = None
        with agent.profile(HeapProfiler(format="folded"), name="nothing"):
            kept = 1
        assert kept == 1
        assert processor.force_flush(10_000)
    finally:
        agent.shutdown()
    (profile,) = exporter.get_finished_profiles()
    assert [count for _, count in load_folded(profile.data)] == [0]
    assert (processor.exported_profiles, processor.error_profiles) == (1, 0)
    assert decode_folded(profile.data).root.total_value() == 0


def test_tracing_started_elsewhere_is_left_running() -> None:
    tracemalloc.start(8)
    try:
        before = [[1] * 1000 for _ in range(500)]  # alive before the window: not in it
        profile = load_heapprofile(profile_window(HeapProfiler()))
        assert tracemalloc.is_tracing(), "the profiler stopped tracing it did not start"
        totals = heapprofile_totals(profile)
        assert totals["allocate_ten_megabytes"] >= 10 * MB
        assert totals["(root)"] < 20 * MB  # the 4 MB of `before` are not counted
        del before
    finally:
        tracemalloc.stop()
    assert not tracemalloc.is_tracing()


def test_one_heap_profile_at_a_time() -> None:
    first, second = HeapProfiler(), HeapProfiler()
    first.start()
    try:
        with pytest.raises(ProfilerBusyError):
            second.start()
    finally:
        first.stop()
    assert not tracemalloc.is_tracing()


def test_invalid_frames_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="frames"):
        HeapProfiler(frames=0)
    with pytest.raises(ValueError, match="heapprofile, pprof, folded"):
        HeapProfiler(format="pstats")


def test_decorated_function_sits_under_its_caller_with_its_exact_bytes() -> None:
    """``@agent.profile`` on a heap profiler: no frame of the library's wrapper.

    Truth: ``keep_three_megabytes`` keeps one bytearray whose size
    ``sys.getsizeof`` gives exactly; tracemalloc counts the object and its
    buffer (two blocks) and nothing else is allocated in that function, so the
    bytes must match exactly. Its caller in the profile is this test, as in
    CPU profiles, where the wrapper is skipped. The function runs once before
    the window: from 3.12, once any profile or trace hook has been set in the
    process, a function's first run allocates its code's monitoring data
    (72 bytes), which is the interpreter's, not the function's.
    """
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    kept: List[Any] = [None]  # its slot exists: storing into it allocates nothing
    block = agent.profile(HeapProfiler(format="pprof"), name="keep")

    def keep_three_megabytes() -> None:
        kept[0] = bytearray(3 * MB)

    keep_three_megabytes()  # the first run, outside the window (see above)
    kept[0] = None
    try:
        block(keep_three_megabytes)()
    finally:
        agent.shutdown()
    assert block.profile is not None
    profile = load_pprof(block.profile.data)
    stacks = pprof_stacks(profile)
    package = str(Path(otel_profiling.__file__).resolve().parent)
    files = {profile.string_table[f.filename] for f in profile.function}
    assert not [f for f in files if f.startswith(package)], files
    found = [values for stack, values in stacks if stack[-1].endswith("keep_three_megabytes")]
    assert found == [[2, sys.getsizeof(kept[0])]], stacks
    (path,) = [stack for stack, _ in stacks if stack[-1].endswith("keep_three_megabytes")]
    assert path[-2] == "test_decorated_function_sits_under_its_caller_with_its_exact_bytes"


def test_signal_toggles_a_heap_profile_through_the_agent() -> None:
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.register(SignalTrigger(signal.SIGUSR2), HeapProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    try:
        KEPT.clear()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert wait_for(lambda: agent.active_profiles, timeout=30)
        allocate_ten_megabytes()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert wait_for(exporter.get_finished_profiles, timeout=60)
    finally:
        agent.shutdown()
    (exported,) = exporter.get_finished_profiles()
    assert exported.kind == ProfileKind.HEAP_PROFILE
    assert exported.key.endswith(".heapprofile")
    assert exported.content_type == "application/json"
    assert exported.attributes["profiling.heap.frames"] == 64
    assert heapprofile_totals(load_heapprofile(exported.data))["allocate_ten_megabytes"] >= 10 * MB


def test_function_names_from_source(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """\
        X = 1

        class Shop:
            def buy(self):
                return 2

            @staticmethod
            def sell():
                def inner():
                    return 3
                return inner

        square = lambda v: v * v
        """
    )
    path = tmp_path / "shop.py"
    path.write_text(source)
    names = FunctionNames()
    assert names.name(str(path), 1) == "<module>"
    assert names.name(str(path), 5) == "Shop.buy"
    assert names.name(str(path), 7) == "Shop.sell"
    assert names.name(str(path), 10) == "Shop.sell.<locals>.inner"
    assert names.name(str(path), 13) == "<lambda>"
    assert names.name("/nonexistent/file.py", 3) == "file.py"


def test_function_names_from_code_objects_without_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = "def outer():\n    x = 1\n    def inner():\n        return 2\n    return inner\n"
    namespace: dict = {}
    exec(compile(source, "/nonexistent/generated.py", "exec"), namespace)  # noqa: S102
    module = types.ModuleType("generated_for_names")
    module.outer = namespace["outer"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "generated_for_names", module)
    names = FunctionNames()
    assert names.name("/nonexistent/generated.py", 2) == "outer"
    assert names.name("/nonexistent/generated.py", 4) == "outer.<locals>.inner"


def test_nested_names_match_what_python_names_them() -> None:
    """The qualified names derived from nesting (used before 3.11) agree with ``__qualname__``."""
    source = (
        "def outer():\n"
        "    class Local:\n"
        "        def method(self):\n"
        "            return [x for x in range(2)]\n"
        "    return Local, lambda: 1\n"
        "class Top:\n"
        "    def method(self):\n"
        "        def helper():\n"
        "            return 1\n"
        "        return helper\n"
    )
    namespace: dict = {}
    exec(compile(source, "/nonexistent/nested.py", "exec"), namespace)  # noqa: S102
    local_class, function = namespace["outer"]()
    helper = namespace["Top"]().method()
    roots = [
        (namespace["outer"].__code__, "outer"),
        (namespace["Top"].method.__code__, "Top.method"),
    ]
    derived = {code: name for code, name in walk_code(roots)}
    assert derived[local_class.method.__code__] == local_class.method.__qualname__
    assert derived[function.__code__] == function.__qualname__ == "outer.<locals>.<lambda>"
    assert derived[helper.__code__] == helper.__qualname__ == "Top.method.<locals>.helper"
    if sys.version_info >= (3, 11):  # every nested code object, comprehensions included
        for code, name in derived.items():
            assert name == code.co_qualname
