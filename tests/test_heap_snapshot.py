"""Heap snapshots read back with the checks DevTools' loader applies."""

from __future__ import annotations

import ctypes
import gc
import io
import json
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import types
import weakref
from array import array
from itertools import chain
from typing import Generic, Iterator, TypeVar

import pytest
from conftest import wait_for
from viewers import HeapSnapshot

from otel_profiling import ProfileKind, ProfilingAgent
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.formats.heapsnapshot import HeapGraph, write_heapsnapshot
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profilers import HeapSnapshotProfiler, ProfilerBusyError
from otel_profiling.profilers.heap_edges import GraphBuilder
from otel_profiling.profilers.heap_graph import walk_heap
from otel_profiling.triggers import SignalTrigger

MODULE = "snapshot_fixture_module"


class RetainedByGlobal:
    """Found by its constructor name in the snapshot."""

    def __init__(self) -> None:
        self.payload = bytearray(512 * 1024)


class HeldByThread:
    pass


@pytest.fixture
def fixture_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType(MODULE)
    module.CACHE = RetainedByGlobal()  # type: ignore[attr-defined]
    module.ROWS = [RetainedByGlobal(), "a string element"]  # type: ignore[attr-defined]
    sys.modules[MODULE] = module
    try:
        yield module
    finally:
        del sys.modules[MODULE]


def take() -> HeapSnapshot:
    profiler = HeapSnapshotProfiler()
    profiler.start()
    return HeapSnapshot(profiler.stop())


def test_global_is_named_on_the_retaining_edge(fixture_module: types.ModuleType) -> None:
    snap = take()
    name = f"{__name__}.RetainedByGlobal"
    found = snap.find(name)
    assert len(found) == 2, found
    retained = {}
    for index in found:
        for kind, label, source in snap.retainers(index):
            retained[(kind, label)] = snap.node(source)
    dict_node = retained[("property", "CACHE")]
    assert dict_node["name"] == "dict"
    # The namespace dict is the module's __dict__, and the module hangs off the root by name.
    holders = snap.retainers(dict_node["index"])
    module_index = next(src for kind, label, src in holders if label == "__dict__")
    assert snap.node(module_index)["name"] == "module"
    assert ("property", MODULE, 0) in snap.retainers(module_index)
    # Sequences: element edges by index.
    assert retained[("element", 0)]["name"] == "list"
    (rows,) = [
        src
        for _, label, src in snap.retainers(retained[("element", 0)]["index"])
        if label == "ROWS"
    ]
    assert rows == dict_node["index"]


def test_sizes_strings_and_types(fixture_module: types.ModuleType) -> None:
    snap = take()
    (cache,) = [
        i
        for i in snap.find(f"{__name__}.RetainedByGlobal")
        if any(label == "CACHE" for _, label, _ in snap.retainers(i))
    ]
    assert snap.node(cache)["type"] == "object"
    # The instance's bytearray (its payload attribute) has sys.getsizeof as self size.
    # Before 3.11 the attribute is reached through the instance's __dict__.
    direct = [to for _, _, to in snap.edges_of(cache)]
    through_dict = [
        to for d in direct if snap.node(d)["name"] == "dict" for _, _, to in snap.edges_of(d)
    ]
    targets = [snap.node(to) for to in direct + through_dict]
    payloads = [n for n in targets if n["name"] == "bytearray"]
    assert payloads and payloads[0]["self_size"] >= 512 * 1024
    strings = [i for i in snap.find("a string element") if snap.node(i)["type"] == "string"]
    assert strings
    assert any(snap.node(i)["type"] == "closure" for i in snap.find("take"))


class OwnSizeof:
    def __sizeof__(self) -> int:
        return 12345


class SizedMeta(type):
    pass


def test_sizes_of_a_run_of_one_type_are_those_of_getsizeof() -> None:
    # A run of one type may call its built-in __sizeof__ directly: compare with
    # sys.getsizeof for every type in this process, plus a Python __sizeof__, a
    # metaclass's class and type objects, static or not.
    extra = [OwnSizeof(), SizedMeta("A", (), {}), int, dict, type, 2**100, "é" * 90]
    by_type: dict = {}
    for obj in gc.get_objects() + extra:
        by_type.setdefault(type(obj), []).append(obj)
    wrong = []
    for t, run in by_type.items():
        builder = GraphBuilder(HeapGraph(), 0)
        builder._sizes(run, t)
        expected = []
        for obj in run:
            try:
                expected.append(sys.getsizeof(obj))
            except Exception:  # noqa: BLE001 - counted as 0, as the builder does
                expected.append(0)
        if list(builder.graph.node_size) != expected:
            wrong.append(t)
    assert len(by_type) > 100 and not wrong


class Text(str):
    pass


def test_strings_are_named_by_their_first_80_characters(
    fixture_module: types.ModuleType,
) -> None:
    pid = str(os.getpid())
    long_text = "".join(["long ", pid, " ", "x" * 200])
    fixture_module.TEXTS = {  # type: ignore[attr-defined]
        "long": long_text,
        "short": "".join(["short ", pid]),
        "subclass": Text("".join(["subclass ", pid, " ", "y" * 200])),
    }
    snap = take()
    names = {
        label: snap.node(to)["name"]
        for d in snap.find("dict")
        if any(label == "TEXTS" for _, label, _ in snap.retainers(d))
        for _, label, to in snap.edges_of(d)
    }
    assert names == {
        "long": long_text[:80],
        "short": f"short {pid}",
        "subclass": f"subclass {pid} " + "y" * (80 - len(f"subclass {pid} ")),
    }


def test_thread_stacks_are_roots() -> None:
    ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        held_by_thread = HeldByThread()
        ready.set()
        release.wait(30)
        del held_by_thread

    worker = threading.Thread(target=hold, name="holder-thread")
    worker.start()
    try:
        assert ready.wait(10)
        snap = take()
    finally:
        release.set()
        worker.join()
    (held,) = snap.find(f"{__name__}.HeldByThread")
    ((kind, label, frame),) = snap.retainers(held)
    assert (kind, label) == ("property", "held_by_thread")
    qualified = sys.version_info >= (3, 11)  # code objects have co_qualname from 3.11
    function = "test_thread_stacks_are_roots.<locals>.hold" if qualified else "hold"
    assert snap.node(frame)["name"].startswith(f"Frame {function} (")
    thread_nodes = [src for _, _, src in snap.retainers(frame)]
    assert [snap.node(t)["name"] for t in thread_nodes] == ["Thread holder-thread"]
    assert snap.retainers(thread_nodes[0])[0][2] == 0  # hangs off the synthetic root


def test_snapshot_leaves_out_its_own_structures() -> None:
    snap = take()
    names = set(snap.strings)
    assert "otel_profiling.formats.heapsnapshot.HeapGraph" not in names
    assert "otel_profiling.formats.heapsnapshot.StringTable" not in names
    # No closure cells: they would exist before gc.get_objects() and pull the walk in.
    assert walk_heap.__code__.co_cellvars == ()
    assert not any(n.startswith("Frame walk_heap") for n in names)


def test_graph_is_held_in_compact_arrays() -> None:
    graph = walk_heap()
    for field in (
        "node_type",
        "node_name",
        "node_size",
        "node_edges",
        "edge_type",
        "edge_name",
        "edge_to",
    ):
        assert isinstance(getattr(graph, field), array), field
    out = io.BytesIO()
    write_heapsnapshot(graph, out)
    snap = HeapSnapshot(out.getvalue())
    assert snap.count == graph.node_count > 1000
    del snap, graph, out  # the walk gave this frame a locals dict; do not keep these alive


NODE_COLUMNS = ("node_type", "node_name", "node_size", "node_edges")
EDGE_COLUMNS = ("edge_type", "edge_name", "edge_to")


def varied_graph(nodes: int, edges: int) -> HeapGraph:
    """Mostly small numbers, with stretches of large or negative ones and multi-digit types.

    The writer works in blocks of 5,000 nodes and chunks of 16,384 edges; the
    stretches make some of them fall back to plain formatting (for a field or
    for the whole chunk) while others use its table of texts throughout. From
    node 45,000 on, whole blocks have the same name, size or edge count in
    every row (the writer puts those into its template), small or large.
    """
    rng = random.Random(1234)
    graph = HeapGraph()
    for i in range(nodes):
        graph.node_type.append(14 if 20_000 <= i < 20_003 else -1 if i == 31_000 else i % 10)
        big_name = 12_000 <= i < 17_000
        name = rng.randrange(2**31) if big_name else rng.randrange(3000)
        graph.node_name.append(42 if i >= 45_000 else name)
        big_size = 25_000 <= i < 35_000
        size = rng.choice((2**44, 10**17)) if big_size else rng.choice((16, 56, 72, 4000))
        size = 56 if 45_000 <= i < 50_000 else 10**17 if 50_000 <= i < 55_000 else size
        graph.node_size.append(-(2**40) if i == 40_000 else size)
    counts = [0] * nodes
    for _ in range(edges // 2):
        counts[rng.randrange(nodes)] += 1
    counts[7] += edges - edges // 2  # beyond the writer's text table
    leaves = range(45_000, min(nodes, 50_000))  # a block of nodes without edges
    counts[7] += sum(counts[i] for i in leaves)
    counts[leaves.start : leaves.stop] = [0] * len(leaves)
    counts[7], counts[-9] = counts[7] + counts[-9] + 1, -1  # a negative count, same sum
    graph.node_edges.extend(counts)
    for j in range(edges):
        graph.edge_type.append(12 if j == 33_000 else -3 if j == 40_000 else j % 7)
        name = rng.randrange(2**31) if 16_384 <= j < 2 * 16_384 else rng.randrange(20_000)
        graph.edge_name.append(-5 if j == 60_000 else name)
        graph.edge_to.append(-7 if j == 1 else 7 * rng.randrange(nodes))
    graph.strings.add("a")
    return graph


def expected_text(graph: HeapGraph) -> bytes:
    """The sections as the simplest formatting writes them."""
    nodes = []
    for i in range(graph.node_count):
        nodes += [graph.node_type[i], graph.node_name[i], 2 * i + 1, graph.node_size[i]]
        nodes += [graph.node_edges[i], 0, 0]
    edges = list(
        chain.from_iterable(zip(graph.edge_type, graph.edge_name, graph.edge_to, strict=True))
    )
    return b'"nodes":[%s],\n"edges":[%s]' % (
        b",".join(b"%d" % n for n in nodes),
        b",".join(b"%d" % n for n in edges),
    )


def test_numbers_of_any_size_and_sign_are_written_exactly() -> None:
    # 55,001 nodes: ids of one to six digits, and a last block of one node;
    # 65,537 edges: a last chunk of one edge.
    graph = varied_graph(55_001, 65_537)
    assert sum(graph.node_edges) == graph.edge_count  # the fixture is consistent
    assert min(graph.node_edges) < 0 and max(graph.node_edges) > 30_000
    out = io.BytesIO()
    write_heapsnapshot(graph, out)
    data = out.getvalue()
    assert expected_text(graph) in data
    doc = json.loads(data)
    assert doc["nodes"][3::7] == list(graph.node_size)
    assert doc["edges"][1::3] == list(graph.edge_name)
    assert doc["strings"] == ["", "a"]


def test_release_frees_each_section_once_written() -> None:
    graph = varied_graph(12_001, 20_000)
    kept = io.BytesIO()
    write_heapsnapshot(graph, kept)
    assert graph.node_count == 12_001 and graph.edge_count == 20_000  # kept by default
    alive = {name: weakref.ref(getattr(graph, name)) for name in NODE_COLUMNS + EDGE_COLUMNS}
    freed_at = {}

    class Out(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            for marker in (b'"edges":[', b'"strings":['):
                if marker in data:
                    freed_at[marker] = {name for name, ref in alive.items() if ref() is None}
            return super().write(data)

    released = Out()
    write_heapsnapshot(graph, released, release=True)
    assert released.getvalue() == kept.getvalue()
    assert freed_at[b'"edges":['] == set(NODE_COLUMNS)
    assert freed_at[b'"strings":['] == set(NODE_COLUMNS + EDGE_COLUMNS)
    assert graph.node_count == graph.edge_count == 0
    assert all(len(getattr(graph, name)) == 0 for name in NODE_COLUMNS + EDGE_COLUMNS)
    assert graph.strings.strings == [""]


def test_inconsistent_graph_is_neither_written_nor_released() -> None:
    graph = HeapGraph()
    graph.node_type.append(9)
    graph.node_name.append(0)
    graph.node_size.append(0)
    graph.node_edges.append(1)
    out = io.BytesIO()
    with pytest.raises(ValueError, match="inconsistent"):
        write_heapsnapshot(graph, out, release=True)
    assert out.getvalue() == b""
    assert graph.node_count == 1 and list(graph.node_edges) == [1]


def test_one_snapshot_per_start() -> None:
    profiler = HeapSnapshotProfiler()
    profiler.start()
    with pytest.raises(ProfilerBusyError):
        profiler.start()
    first = profiler.stop()
    with pytest.raises(RuntimeError):
        profiler.stop()
    profiler.start()
    second = profiler.stop()
    HeapSnapshot(first), HeapSnapshot(second)


def test_signal_takes_a_snapshot_through_the_agent(fixture_module: types.ModuleType) -> None:
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.register(SignalTrigger(signal.SIGUSR2), HeapSnapshotProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert wait_for(lambda: agent.active_profiles, timeout=60)
        fixture_module.LATE = RetainedByGlobal()  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGUSR2)
        assert wait_for(exporter.get_finished_profiles, timeout=60)
    finally:
        agent.shutdown()
    (profile,) = exporter.get_finished_profiles()
    assert profile.kind == ProfileKind.HEAP_SNAPSHOT
    assert profile.key.endswith(".heapsnapshot") and profile.content_type == "application/json"
    snap = HeapSnapshot(profile.data)
    labels = {
        label
        for i in snap.find(f"{__name__}.RetainedByGlobal")
        for _, label, _ in snap.retainers(i)
    }
    assert "CACHE" in labels
    assert "LATE" not in labels  # taken when the trigger started


class NoisyDict(dict):
    """Every override raises: the walk must read the dict without calling them."""

    def __iter__(self):  # type: ignore[override]
        raise AssertionError("__iter__ called")

    def keys(self):  # type: ignore[override]
        raise AssertionError("keys called")

    def items(self):  # type: ignore[override]
        raise AssertionError("items called")

    def __len__(self) -> int:
        raise AssertionError("__len__ called")


def test_dict_subclass_overrides_are_not_called(fixture_module: types.ModuleType) -> None:
    fixture_module.NOISY = NoisyDict(held=RetainedByGlobal(), other=1)  # type: ignore[attr-defined]
    snap = take()
    labels = {
        (label, snap.node(source)["name"])
        for i in snap.find(f"{__name__}.RetainedByGlobal")
        for _, label, source in snap.retainers(i)
    }
    assert ("held", f"{__name__}.NoisyDict") in labels


class BrokenSize:
    def __sizeof__(self) -> int:
        raise RuntimeError("no size")


def test_broken_sizeof_counts_as_zero(fixture_module: types.ModuleType) -> None:
    fixture_module.BROKEN = BrokenSize()  # type: ignore[attr-defined]
    snap = take()
    (broken,) = snap.find(f"{__name__}.BrokenSize")
    assert snap.node(broken)["self_size"] == 0
    # the other nodes keep their sizes
    (cache,) = [
        i
        for i in snap.find(f"{__name__}.RetainedByGlobal")
        if any(label == "CACHE" for _, label, _ in snap.retainers(i))
    ]
    assert snap.node(cache)["self_size"] > 0


class Holder:
    def __init__(self, value: object) -> None:
        self.value = value


def test_each_object_is_one_node_however_many_hold_it(fixture_module: types.ModuleType) -> None:
    # Built at run time (no constant elsewhere shares them), then held by the
    # module's containers only: exactly two references each.
    text = "".join(["held by two ", str(os.getpid())])
    inner = [Holder(None)]
    fixture_module.A = [text, inner]  # type: ignore[attr-defined]
    fixture_module.B = {"text": text, "inner": inner}  # type: ignore[attr-defined]
    fixture_module.C = ["".join(["held by one ", str(os.getpid())])]  # type: ignore[attr-defined]
    del text, inner
    snap = take()
    (shared,) = [
        i for i in snap.find(f"held by two {os.getpid()}") if snap.node(i)["type"] == "string"
    ]
    assert sorted((k, str(label)) for k, label, _ in snap.retainers(shared)) == [
        ("element", "0"),
        ("property", "text"),
    ]
    (lonely,) = [
        i for i in snap.find(f"held by one {os.getpid()}") if snap.node(i)["type"] == "string"
    ]
    assert [(k, label) for k, label, _ in snap.retainers(lonely)] == [("element", 0)]
    (holder,) = [  # the Holder inside ``inner``: that list is one node, retained twice
        i
        for i in snap.find(f"{__name__}.Holder")
        if any(snap.node(src)["name"] == "list" for _, _, src in snap.retainers(i))
    ]
    ((_, _, inner_node),) = snap.retainers(holder)
    assert sorted(str(label) for _, label, _ in snap.retainers(inner_node)) == ["1", "inner"]


def test_an_object_one_container_holds_twice_is_one_node(fixture_module: types.ModuleType) -> None:
    # Only this list holds them, each twice: both references are met in one run.
    text = "".join(["held twice by one list ", str(os.getpid())])
    fixture_module.TWICE = [text, Holder(None), text]  # type: ignore[attr-defined]
    fixture_module.TWICE[1:1] = [fixture_module.TWICE[1]]  # type: ignore[attr-defined]
    del text
    snap = take()
    (shared,) = [
        i
        for i in snap.find(f"held twice by one list {os.getpid()}")
        if snap.node(i)["type"] == "string"
    ]
    assert sorted(label for _, label, _ in snap.retainers(shared)) == [0, 3]
    holders = [
        i
        for i in snap.find(f"{__name__}.Holder")
        if any(snap.node(src)["name"] == "list" for _, _, src in snap.retainers(i))
    ]
    assert [sorted(label for _, label, _ in snap.retainers(i)) for i in holders] == [[1, 2]]


class HeldOnlyByC:
    def __init__(self) -> None:
        self.items = [HeldOnlyByC.Inner()]

    class Inner:
        pass


def test_objects_that_only_c_code_holds_are_in_the_snapshot() -> None:
    """An object whose one reference gc cannot see, with what it holds."""
    obj = HeldOnlyByC()
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))  # the reference gc cannot see
    ref = weakref.ref(obj)
    del obj
    try:
        snap = take()
    finally:
        held = ref()
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(held))
        del held
    assert ref() is None  # the test's own reference is gone again
    (outer,) = snap.find(f"{__name__}.HeldOnlyByC")
    assert snap.retainers(outer) == []
    (inner,) = snap.find(f"{__name__}.HeldOnlyByC.Inner")
    ((kind, label, items),) = snap.retainers(inner)
    assert (kind, label, snap.node(items)["name"]) == ("element", 0, "list")
    # the list hangs off the instance (through its __dict__ before 3.11)
    (holder,) = [src for _, _, src in snap.retainers(items)]
    if snap.node(holder)["name"] == "dict":
        (holder,) = [src for _, _, src in snap.retainers(holder)]
    assert holder == outer


def test_attributes_of_an_instance_whose_dict_was_read_are_one_node_each(
    fixture_module: types.ModuleType,
) -> None:
    # From 3.13 the instance and its __dict__ (made by reading it) share one
    # store of values, which the instance reports. Setting a list value
    # through the dict has gc track the dict, so that the walk meets it too.
    holder = Holder(None)
    vars(holder)["value"] = ["".join(["held through __dict__ ", str(os.getpid())])]
    fixture_module.HOLDER = holder  # type: ignore[attr-defined]
    del holder
    snap = take()
    text = f"held through __dict__ {os.getpid()}"
    (node,) = [i for i in snap.find(text) if snap.node(i)["type"] == "string"]
    ((_, _, value),) = snap.retainers(node)
    ((kind, label, source),) = snap.retainers(value)
    if snap.node(source)["name"] == "dict":  # the instance's dict (3.11 and 3.12 move values there)
        assert (kind, label) == ("property", "value")
        (source,) = [src for _, _, src in snap.retainers(source)]
    assert snap.node(source)["name"] == f"{__name__}.Holder"


T = TypeVar("T")


class Generic1(Generic[T]):
    pass


def test_no_object_becomes_two_nodes(
    fixture_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk's own invariant, on this process's whole heap, with the cases that test it:
    objects held once, held by C code only, and (3.13+) a __dict__ sharing its instance's values."""
    alias = Generic1[int]
    assert alias.__dict__  # typing's alias keeps its __dict__ tracked, sharing its values
    fixture_module.ALIAS = alias  # type: ignore[attr-defined]
    fixture_module.SHARED = [Holder(None)] * 2  # type: ignore[attr-defined]
    del alias
    seen = []
    walk = GraphBuilder.walk

    def checked_walk(builder: GraphBuilder) -> None:
        walk(builder)
        seen.append((len(builder.objs), len(set(map(id, builder.objs)))))

    monkeypatch.setattr(GraphBuilder, "walk", checked_walk)
    graph = walk_heap()
    ((nodes, distinct),) = seen
    assert nodes == distinct > 1000
    assert graph.node_count > nodes  # and the root, threads and frames


FREED_MEMORY_PROBE = """
from otel_profiling._memory import return_free_memory
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 // 2**20
blocks, pins = [], []
for _ in range(1024):
    blocks.append(bytearray(64 * 1024))  # from malloc's heap (below its mmap threshold)
    pins.append(bytearray(1024))  # keeps the heap from shrinking on its own
del blocks
before = rss()
return_free_memory()
print(before, rss())
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is glibc's",
)
def test_freed_memory_goes_back_to_the_system() -> None:
    # In a fresh process: 64 MiB freed between live blocks stays resident until handed back.
    out = subprocess.run(
        [sys.executable, "-c", FREED_MEMORY_PROBE], capture_output=True, text=True, check=True
    ).stdout
    before, after = map(int, out.split())
    assert before - after >= 48, (before, after)


def test_freed_memory_is_left_to_the_allocator_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_profiling import _memory

    monkeypatch.setattr(_memory.sys, "platform", "darwin")
    assert _memory._malloc_trim.__wrapped__() is None  # uncached: looks again
