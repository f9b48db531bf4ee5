"""Heap snapshots checked against what the test built, read back as DevTools and memlab read them.

Most tests snapshot a small graph the test builds (``HeapSnapshotProfiler(roots=...)``)
and compare every node and edge with the objects themselves: one node per object,
``sys.getsizeof`` as the self size, edges named by key and index. One snapshot of the
whole process heap, shared by the tests at the end, checks the roots (modules, thread
stacks), objects only C code holds, and that no object becomes two nodes there.
"""

from __future__ import annotations

import collections
import ctypes
import importlib.util
import io
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
import weakref
from array import array
from bisect import bisect_right
from itertools import chain
from pathlib import Path
from typing import Any, Dict, Generic, Iterator, List, Tuple, TypeVar

import pytest
from viewers import HeapSnapshot

from otel_profiling import ProfileKind, ProfilingAgent
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.formats.heapsnapshot import HeapGraph, write_heapsnapshot
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profilers import HeapSnapshotProfiler, ProfilerBusyError
from otel_profiling.profilers.heap_edges import GraphBuilder
from otel_profiling.profilers.heap_graph import walk_heap, walk_roots
from otel_profiling.triggers import SignalTrigger

TESTS = Path(__file__).resolve().parent
MEMLAB = "@memlab/core@2.0.5"


def snapshot_bytes(**roots: Any) -> bytes:
    profiler = HeapSnapshotProfiler(roots=roots)
    profiler.start()
    return profiler.stop()


def snapshot_of(**roots: Any) -> HeapSnapshot:
    return HeapSnapshot(snapshot_bytes(**roots))


def follow(snap: HeapSnapshot, index: int, *labels: Any) -> int:
    """The node reached from ``index`` by the edges named ``labels``, each the only one so named."""
    for label in labels:
        (index,) = [to for _, name, to in snap.edges_of(index) if name == label]
    return index


def text_at_run_time(*parts: str) -> str:
    """A string no constant shares: only what the test stores it in holds it."""
    return "".join([*parts, " ", str(os.getpid())])


# -- a small graph, known object by object -------------------------------------------------


def test_every_object_is_one_node_with_its_size_and_named_edges() -> None:
    shared = text_at_run_time("shared")
    pair = (shared, 3)
    items = [1, shared, 2.5, pair]
    mapping = {"name": shared, 7: "seven", (1, 2): "pair", "items": items}
    root = {"items": items, "mapping": mapping}
    snap = snapshot_of(root=root)

    at = {  # node index of each object, reached by edge names from the root
        "root": follow(snap, 0, "root"),
        "items": follow(snap, 0, "root", "items"),
        "mapping": follow(snap, 0, "root", "mapping"),
        "shared": follow(snap, 0, "root", "items", 1),
        "pair": follow(snap, 0, "root", "items", 3),
        "1": follow(snap, 0, "root", "items", 0),
        "2.5": follow(snap, 0, "root", "items", 2),
        "3": follow(snap, 0, "root", "items", 3, 1),
        "seven": follow(snap, 0, "root", "mapping", 7),
        "key": follow(snap, 0, "root", "mapping", "key"),
        "pair value": follow(snap, 0, "root", "mapping", "[tuple]"),
    }
    at["2"] = follow(snap, at["key"], 1)
    objects = {"root": root, "items": items, "mapping": mapping, "shared": shared, "pair": pair}
    objects.update({"1": 1, "2.5": items[2], "3": 3, "seven": "seven", "key": (1, 2)})
    objects.update({"pair value": "pair", "2": 2})
    # Every object once and nothing else: the synthetic root plus the twelve objects.
    assert snap.count == 1 + len(objects) == 1 + len(set(at.values()))
    for name, obj in objects.items():
        node = snap.node(at[name])
        assert node["self_size"] == sys.getsizeof(obj), name
        kind = {str: "string", int: "number", float: "number"}.get(type(obj), "object")
        assert node["type"] == kind, name
        assert node["name"] == (obj if isinstance(obj, str) else type(obj).__name__), name
    # Edges in order: dict items by key (other keys: the key object, then the value
    # named by the key's type), sequence items by index.
    assert snap.edges_of(at["root"]) == [
        ("property", "items", at["items"]),
        ("property", "mapping", at["mapping"]),
    ]
    assert snap.edges_of(at["items"]) == [
        ("element", 0, at["1"]),
        ("element", 1, at["shared"]),
        ("element", 2, at["2.5"]),
        ("element", 3, at["pair"]),
    ]
    assert snap.edges_of(at["mapping"]) == [
        ("property", "name", at["shared"]),
        ("element", 7, at["seven"]),
        ("internal", "key", at["key"]),
        ("property", "[tuple]", at["pair value"]),
        ("property", "items", at["items"]),
    ]
    assert snap.edges_of(at["key"]) == [("element", 0, at["1"]), ("element", 1, at["2"])]
    assert snap.edges_of(at["pair"]) == [("element", 0, at["shared"]), ("element", 1, at["3"])]
    # The shared string is one node with three retainers; 1 is shared by items and the key.
    assert sorted(snap.retainers(at["shared"]), key=str) == sorted(
        [("property", "name", at["mapping"]), ("element", 1, at["items"])]
        + [("element", 0, at["pair"])],
        key=str,
    )
    assert sorted(src for _, _, src in snap.retainers(at["1"])) == sorted([at["items"], at["key"]])
    assert [src for _, _, src in snap.retainers(at["root"])] == [0]
    # The scan the whole-heap tests use finds the same retainers.
    assert all(retainers(snap, i) == snap.retainers(i) for i in range(snap.count))


def test_objects_held_once_or_twice_are_one_node_each() -> None:
    # Built in place, so that only the containers hold them: some once, some by
    # two containers, some twice by one list (both met in one run of the walk).
    twice = [text_at_run_time("in one list twice")]
    twice += [twice[0]]
    by_two = {"a": [text_at_run_time("by two")]}
    by_two["b"] = [by_two["a"][0]]
    lonely = [[text_at_run_time(f"once {n}")] for n in range(50)]
    snap = snapshot_of(twice=twice, by_two=by_two, lonely=lonely)
    assert follow(snap, 0, "twice", 0) == follow(snap, 0, "twice", 1)
    assert follow(snap, 0, "by_two", "a", 0) == follow(snap, 0, "by_two", "b", 0)
    texts = {follow(snap, 0, "lonely", n, 0) for n in range(50)}
    assert len(texts) == 50
    assert {snap.node(i)["name"] for i in texts} == {
        text_at_run_time(f"once {n}") for n in range(50)
    }
    # root, twice + its text, by_two + a + b + its text, lonely + 50 lists + 50 texts
    assert snap.count == 1 + 2 + 4 + 101


class Holder:
    def __init__(self, value: object) -> None:
        self.value = value


def test_instances_functions_and_classes() -> None:
    payload = [text_at_run_time("payload")]
    holder = Holder(payload)

    def local_function() -> None:
        pass

    snap = snapshot_of(holder=holder, function=local_function, cls=Holder)
    node = snap.node(follow(snap, 0, "holder"))
    assert (node["type"], node["name"]) == ("object", f"{__name__}.Holder")
    assert node["self_size"] == sys.getsizeof(holder)
    edges = snap.edges_of(node["index"])
    # The class is a node without edges (a walk from roots does not go into classes).
    (cls,) = [to for kind, name, to in edges if name == "type"]
    assert cls == follow(snap, 0, "cls") and snap.edges_of(cls) == []
    assert snap.node(cls)["self_size"] == sys.getsizeof(Holder)
    # The attribute: inline values (3.11+) are internal edges named by type; before,
    # the instance holds its __dict__, whose items are named.
    if sys.version_info >= (3, 11):
        (value,) = [to for kind, name, to in edges if (kind, name) == ("internal", "list")]
    else:
        value = follow(snap, node["index"], "dict", "value")
    assert snap.node(value)["self_size"] == sys.getsizeof(payload)
    assert snap.node(follow(snap, value, 0))["name"] == payload[0]
    function = snap.node(follow(snap, 0, "function"))
    assert (function["type"], function["name"]) == ("closure", local_function.__qualname__)
    code = follow(snap, function["index"], "code")
    assert snap.node(code)["type"] == "code"
    assert snap.node(code)["self_size"] == sys.getsizeof(local_function.__code__)


def test_attributes_read_through_dict_are_one_node_each() -> None:
    # From 3.13 the instance and its __dict__ (made by reading it) share one store
    # of values, which the instance reports; setting a list through the dict has gc
    # track the dict, so the walk meets it too. Each value is still one node.
    holder = Holder(None)
    vars(holder)["value"] = [text_at_run_time("through __dict__")]
    snap = snapshot_of(holder=holder)
    (node,) = snap.find(text_at_run_time("through __dict__"))
    ((_, _, value),) = snap.retainers(node)
    ((kind, label, source),) = snap.retainers(value)
    if snap.node(source)["name"] == "dict":  # the instance's dict holds the values (3.10-3.12)
        assert (kind, label) == ("property", "value")
        ((_, _, source),) = snap.retainers(source)
    assert source == follow(snap, 0, "holder")


class Text(str):
    pass


def test_strings_are_named_by_their_first_80_characters() -> None:
    long_text = text_at_run_time("long", "x" * 200)
    subclass = Text(text_at_run_time("subclass", "y" * 200))
    snap = snapshot_of(texts={"long": long_text, "short": "short", "subclass": subclass})
    names = {label: snap.node(to) for _, label, to in snap.edges_of(follow(snap, 0, "texts"))}
    assert {label: node["name"] for label, node in names.items()} == {
        "long": long_text[:80],
        "short": "short",
        "subclass": str.__str__(subclass)[:80],
    }
    assert names["long"]["self_size"] == sys.getsizeof(long_text)
    assert names["subclass"]["type"] == "string"


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


def test_dict_subclass_overrides_are_not_called() -> None:
    noisy = NoisyDict(held=Holder(None), other=1)
    snap = snapshot_of(noisy=noisy)
    node = follow(snap, 0, "noisy")
    assert snap.node(node)["name"] == f"{__name__}.NoisyDict"
    assert [label for _, label, _ in snap.edges_of(node)] == ["held", "other"]
    assert snap.node(follow(snap, node, "held"))["name"] == f"{__name__}.Holder"


class BrokenSize:
    def __sizeof__(self) -> int:
        raise RuntimeError("no size")


def test_broken_sizeof_counts_as_zero_and_the_others_keep_theirs() -> None:
    items = [BrokenSize(), Holder(None), BrokenSize()]
    snap = snapshot_of(items=items)
    sizes = [snap.node(follow(snap, 0, "items", n))["self_size"] for n in range(3)]
    assert sizes == [0, sys.getsizeof(items[1]), 0]
    assert snap.node(follow(snap, 0, "items"))["self_size"] == sys.getsizeof(items)


def text_of(row: Any) -> str:
    if isinstance(row, Holder):
        return str(row.value)
    return str(row["k"] if isinstance(row, dict) else row[0])


class RefusesComparison(type):
    """A metaclass whose classes cannot be hashed (``__eq__`` without ``__hash__``) and
    whose comparison raises: the walk must tell types apart by identity alone."""

    def __eq__(cls, other: object) -> bool:
        raise RuntimeError("a heap snapshot compared two classes")

    __hash__ = None  # type: ignore[assignment]


class Unhashable(metaclass=RefusesComparison):
    pass


def test_classes_that_cannot_be_hashed_or_compared_are_nodes() -> None:
    obj, key = Unhashable(), Unhashable()
    snap = snapshot_of(obj=obj, mixed=[obj, 1, "text"], keyed={key: 1}, cls=Unhashable)
    node = snap.node(follow(snap, 0, "obj"))
    assert (node["type"], node["name"]) == ("object", f"{__name__}.Unhashable")
    assert follow(snap, 0, "mixed", 0) == node["index"]
    assert snap.node(follow(snap, 0, "mixed", 1))["type"] == "number"
    # a key that is not a string: the key object, then the value named after its type
    (key_edge, value_edge) = snap.edges_of(follow(snap, 0, "keyed"))
    assert key_edge[:2] == ("internal", "key")
    assert snap.node(key_edge[2])["name"] == f"{__name__}.Unhashable"
    assert value_edge[:2] == ("property", "[Unhashable]")
    assert snap.node(value_edge[2])["type"] == "number"
    assert snap.node(follow(snap, 0, "cls"))["name"] == f"{__name__}.RefusesComparison"


class CountedKey:
    """A key whose ``__hash__`` and ``__eq__`` count their calls (all keys collide)."""

    calls = 0

    def __hash__(self) -> int:
        CountedKey.calls += 1
        return 1

    def __eq__(self, other: object) -> bool:
        CountedKey.calls += 1
        return self is other


class IterRefused(dict):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        raise RuntimeError("a heap snapshot iterated a dict subclass")


def test_dict_subclasses_are_read_without_hashing_or_comparing_their_keys() -> None:
    keys = [CountedKey() for _ in range(6)]
    dicts = {
        "by_default": collections.defaultdict(list, {keys[0]: "a", keys[1]: "b"}),
        "ordered": collections.OrderedDict([(keys[2], "c"), (keys[3], "d")]),
        "refuses_iter": IterRefused({keys[4]: "e", keys[5]: "f"}),
    }
    CountedKey.calls = 0
    snap = snapshot_of(**dicts)
    assert CountedKey.calls == 0
    for name, mapping in dicts.items():
        edges = snap.edges_of(follow(snap, 0, name))
        found = [
            (snap.node(key[2])["name"], value[:2], snap.node(value[2])["name"])
            for key, value in zip(edges[::2], edges[1::2], strict=True)
            if key[:2] == ("internal", "key")
        ]
        assert found == [
            (f"{__name__}.CountedKey", ("property", "[CountedKey]"), value)
            for value in dict.values(mapping)
        ], name


LAZY_MODULE_RUNS: List[str] = []


class GuardedModule(types.ModuleType):
    """A module whose attributes cannot be read (as some lazy-import modules do)."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"a heap snapshot read {name} of a module")


class HeldByGuardedModule:
    pass


def test_whole_heap_reads_modules_without_running_their_attribute_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # importlib's LazyLoader runs a module's code on its first attribute read
    (tmp_path / "loaded_on_first_read.py").write_text(
        f"import sys\nsys.modules[{__name__!r}].LAZY_MODULE_RUNS.append(__name__)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.find_spec("loaded_on_first_read")
    assert spec is not None and spec.loader is not None
    spec.loader = importlib.util.LazyLoader(spec.loader)
    lazy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lazy)
    monkeypatch.setitem(sys.modules, "loaded_on_first_read", lazy)
    guarded = GuardedModule("guarded_module")
    guarded.HELD = HeldByGuardedModule()
    monkeypatch.setitem(sys.modules, "guarded_module", guarded)
    profiler = HeapSnapshotProfiler()
    profiler.start()
    snap = HeapSnapshot(profiler.stop())
    assert LAZY_MODULE_RUNS == []  # the lazy module was not loaded by the snapshot
    (held,) = snap.find(f"{__name__}.HeldByGuardedModule")
    ((kind, label, namespace),) = retainers(snap, held)
    assert (kind, label, snap.node(namespace)["name"]) == ("property", "HELD", "dict")
    module_node = follow(snap, 0, "guarded_module")
    assert snap.edges_of(module_node) == [("internal", "__dict__", namespace)]


def test_many_objects_of_mixed_kinds() -> None:
    # More objects than one segment of the walk, kinds interleaved, strings shared
    # at random: each node's size and edges must be its own object's.
    rng = random.Random(7)
    strings = [text_at_run_time(f"s{n}") for n in range(3000)]
    rows: List[Any] = []
    for n in range(1000, 21_000):  # ints above the small-int cache: one object each
        pick = rng.choice(strings)
        rows.append(rng.choice([[pick, n], {"k": pick, "n": n}, (pick, n), Holder(pick)]))
    snap = snapshot_of(rows=rows)
    row_nodes = [to for _, _, to in snap.edges_of(follow(snap, 0, "rows"))]
    assert len(row_nodes) == len(rows)
    for n in rng.sample(range(len(rows)), 500):
        row, node = rows[n], row_nodes[n]
        assert snap.node(node)["self_size"] == sys.getsizeof(row)
        if isinstance(row, Holder):
            if sys.version_info >= (3, 11):
                text = follow(snap, node, "str")
            else:
                text = follow(snap, node, "dict", "value")
        else:
            text = follow(snap, node, "k" if isinstance(row, dict) else 0)
        assert snap.node(text)["name"] == text_of(row)
    # Every object once: root, the table, its rows, the strings they use, their
    # numbers, the Holder class and, before 3.11, each Holder's __dict__.
    holders = sum(isinstance(row, Holder) for row in rows)
    used = {id(text_of(row)) for row in rows}
    dicts = holders if sys.version_info < (3, 11) else 0
    assert snap.count == 2 + len(rows) + len(used) + (len(rows) - holders) + 1 + dicts


# -- read by memlab, as DevTools-grade tooling reads it --------------------------------------


@pytest.fixture(scope="session")
def memlab() -> Path:
    """memlab's heap parser (``@memlab/core``), installed from npm into a cache folder."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed: memlab cannot be run")
    prefix = Path.home() / ".cache" / "otel-profiling-tests" / "memlab"
    if not (prefix / "node_modules" / "@memlab" / "core" / "package.json").exists():
        command = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund"]
        command += ["--ignore-scripts", MEMLAB]  # scripts: puppeteer's browser download
        try:
            subprocess.run(command, capture_output=True, timeout=600, check=True)
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"`npm install {MEMLAB}` failed: {exc}")
    return prefix / "node_modules"


def read_with_memlab(memlab: Path, data: bytes, tmp_path: Path) -> Dict[int, Dict[str, Any]]:
    """Every node by id, as memlab's parser reads it, with memlab's retained sizes."""
    source, out = tmp_path / "graph.heapsnapshot", tmp_path / "memlab.json"
    source.write_bytes(data)
    env = {**os.environ, "NODE_PATH": str(memlab)}
    script = TESTS / "memlab_dump.js"
    subprocess.run(
        ["node", str(script), str(source), str(out)], env=env, capture_output=True, check=True
    )
    return {node["id"]: node for node in json.loads(out.read_text())}


def test_memlab_reads_the_graph_and_its_retained_sizes(memlab: Path, tmp_path: Path) -> None:
    texts = [text_at_run_time(f"owned {n}") for n in range(3)]
    owned = [texts[0], texts[1], (texts[2], 2.5)]  # only this list holds what it holds
    shared = text_at_run_time("shared")
    root = {"owned": owned, "a": [shared], "b": [shared]}
    data = snapshot_bytes(root=root)
    nodes = read_with_memlab(memlab, data, tmp_path)
    snap = HeapSnapshot(data)
    # the root, its dict, owned and its 5 objects, the two lists and their string
    assert len(nodes) == snap.count == 1 + 1 + 6 + 2 + 1
    by_index = {i: nodes[snap.node(i)["id"]] for i in range(snap.count)}
    for i, node in by_index.items():  # memlab reads what the DevTools-style reader reads
        ours = snap.node(i)
        assert (node["type"], node["name"], node["self_size"]) == (
            ours["type"],
            ours["name"],
            ours["self_size"],
        )
        assert [(t, n, nodes_to) for t, n, nodes_to in node["edges"]] == [
            (t, n, snap.node(to)["id"]) for t, n, to in snap.edges_of(i)
        ]
    owned_node = by_index[follow(snap, 0, "root", "owned")]
    expected = sum(map(sys.getsizeof, [owned, owned[0], owned[1], owned[2], *owned[2]]))
    assert owned_node["retained_size"] == expected
    # The shared string is retained by neither list, but by the dict that holds both.
    one_list = by_index[follow(snap, 0, "root", "a")]
    assert one_list["retained_size"] == sys.getsizeof(root["a"])
    assert by_index[follow(snap, 0, "root")]["retained_size"] == sum(
        map(sys.getsizeof, [root, owned, *owned, *owned[2], root["a"], root["b"], shared])
    )


# -- the profiler ---------------------------------------------------------------------------


def test_one_snapshot_per_start() -> None:
    held = {"x": [1, 2]}
    profiler = HeapSnapshotProfiler(roots={"held": held})
    profiler.start()
    with pytest.raises(ProfilerBusyError):
        profiler.start()
    first = profiler.stop()
    with pytest.raises(RuntimeError):
        profiler.stop()
    held["y"] = "added"
    profiler.start()
    second = profiler.stop()
    assert [label for _, label, _ in HeapSnapshot(first).edges_of(1)] == ["x"]
    assert [label for _, label, _ in HeapSnapshot(second).edges_of(1)] == ["x", "y"]
    assert "roots=<1 objects>" in repr(profiler)


@pytest.mark.parametrize("roots", [[Holder(None)], {1: Holder(None)}])
def test_roots_must_be_named(roots: Any) -> None:
    with pytest.raises(TypeError, match=r"mapping of names \(str\) to objects"):
        HeapSnapshotProfiler(roots=roots)


def test_signal_takes_a_snapshot_through_the_agent() -> None:
    namespace: Dict[str, Any] = {"CACHE": Holder(None)}
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.register(SignalTrigger(signal.SIGUSR2), HeapSnapshotProfiler(roots={"ns": namespace}))
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()

    def wait_until(condition: Any) -> None:
        deadline = time.monotonic() + 60
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)

    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        wait_until(lambda: agent.active_profiles)
        assert agent.active_profiles
        namespace["LATE"] = Holder(None)
        os.kill(os.getpid(), signal.SIGUSR2)
        wait_until(exporter.get_finished_profiles)
    finally:
        agent.shutdown()
    (profile,) = exporter.get_finished_profiles()
    assert profile.kind == ProfileKind.HEAP_SNAPSHOT
    assert profile.key.endswith(".heapsnapshot") and profile.content_type == "application/json"
    snap = HeapSnapshot(profile.data)
    labels = [label for _, label, _ in snap.edges_of(follow(snap, 0, "ns"))]
    assert labels == ["CACHE"]  # taken when the trigger started: LATE came after


def test_graph_is_held_in_compact_arrays() -> None:
    graph = walk_roots({"rows": [[n, str(n)] for n in range(1000)]})
    columns = ("node_type", "node_name", "node_size", "node_edges")
    columns += ("edge_type", "edge_name", "edge_to")
    for field in columns:
        assert isinstance(getattr(graph, field), array), field
    assert graph.node_count == 1 + 1 + 1000 + 1000 + 1000  # root, rows, lists, ints, strs
    assert graph.edge_count == 1 + 1000 + 2000
    out = io.BytesIO()
    write_heapsnapshot(graph, out)
    assert HeapSnapshot(out.getvalue()).count == graph.node_count


# -- the writer -----------------------------------------------------------------------------

NODE_COLUMNS = ("node_type", "node_name", "node_size", "node_edges")
EDGE_COLUMNS = ("edge_type", "edge_name", "edge_to")


def varied_graph(nodes: int, edges: int) -> HeapGraph:
    """Numbers of every size and sign in every column, across several chunks."""
    rng = random.Random(1234)
    graph = HeapGraph()
    # The writer takes integers of any sign; a walk's columns are unsigned.
    for column in NODE_COLUMNS + EDGE_COLUMNS:
        setattr(graph, column, array("q"))
    for i in range(nodes):
        graph.node_type.append(14 if 20_000 <= i < 20_003 else -1 if i == 31_000 else i % 10)
        big_name = 12_000 <= i < 17_000
        graph.node_name.append(rng.randrange(2**31) if big_name else rng.randrange(3000))
        big_size = 25_000 <= i < 35_000
        size = rng.choice((2**44, 10**17)) if big_size else rng.choice((16, 56, 72, 4000))
        graph.node_size.append(-(2**40) if i == 40_000 else size)
    counts = [0] * nodes
    for _ in range(edges // 2):
        counts[rng.randrange(nodes)] += 1
    counts[7] += edges - edges // 2
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
    # 55,001 nodes and 65,537 edges: last chunks of one row.
    graph = varied_graph(55_001, 65_537)
    assert sum(graph.node_edges) == graph.edge_count  # the fixture is consistent
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


def test_edge_fields_of_different_lengths_are_refused_before_writing() -> None:
    graph = HeapGraph()
    graph.node_type.append(9)
    graph.node_name.append(0)
    graph.node_size.append(0)
    graph.node_edges.append(1)
    graph.edge_type.append(3)
    graph.edge_name.append(0)  # edge_to is missing its value
    out = io.BytesIO()
    with pytest.raises(ValueError, match="inconsistent"):
        write_heapsnapshot(graph, out, release=True)
    assert out.getvalue() == b""
    assert graph.node_count == 1 and graph.edge_count == 1


# -- the whole process heap -----------------------------------------------------------------

MODULE = "snapshot_fixture_module"


class RetainedByGlobal:
    pass


class HeldByThread:
    pass


class HeldOnlyByC:
    def __init__(self) -> None:
        self.items = [HeldOnlyByC.Inner()]

    class Inner:
        pass


T = TypeVar("T")


class Generic1(Generic[T]):
    pass


class WholeHeap:
    """One snapshot of this process's heap, with what the tests put there to find."""

    def __init__(self, snap: HeapSnapshot, nodes: int, distinct: int, module: Any) -> None:
        self.snap, self.placed, self.distinct, self.module = snap, nodes, distinct, module


@pytest.fixture(scope="module")
def whole_heap() -> Iterator[WholeHeap]:
    module = types.ModuleType(MODULE)
    module.CACHE = RetainedByGlobal()  # type: ignore[attr-defined]
    module.ROWS = [RetainedByGlobal(), "a string element"]  # type: ignore[attr-defined]
    alias = Generic1[int]
    assert alias.__dict__  # typing's alias keeps its __dict__, sharing its values from 3.13
    module.ALIAS = alias  # type: ignore[attr-defined]
    module.SHARED = [Holder(None)] * 2  # type: ignore[attr-defined]
    sys.modules[MODULE] = module
    by_c = HeldOnlyByC()
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(by_c))  # the reference gc cannot see
    by_c_ref = weakref.ref(by_c)
    del by_c, alias
    ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        held_by_thread = HeldByThread()
        ready.set()
        release.wait(60)
        del held_by_thread

    worker = threading.Thread(target=hold, name="holder-thread")
    worker.start()
    seen: List[Tuple[int, int]] = []
    walk = GraphBuilder.walk

    def checked_walk(builder: GraphBuilder) -> None:
        walk(builder)
        seen.append((len(builder.objs), len(set(map(id, builder.objs)))))

    try:
        assert ready.wait(30)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(GraphBuilder, "walk", checked_walk)
            profiler = HeapSnapshotProfiler()
            profiler.start()
            data = profiler.stop()
    finally:
        release.set()
        worker.join()
        held = by_c_ref()
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(held))
        del held
        del sys.modules[MODULE]
    assert by_c_ref() is None  # the test's own reference is gone again
    ((nodes, distinct),) = seen
    yield WholeHeap(HeapSnapshot(data), nodes, distinct, module)


def retainers(snap: HeapSnapshot, index: int) -> List[Tuple[str, Any, int]]:
    """``snap.retainers(index)`` by one scan of the edges, without indexing the whole heap."""
    nf, ef = len(snap.node_fields), len(snap.edge_fields)
    edges, target = snap.edges, index * nf
    found = []
    for position in range(0, len(edges), ef):
        if edges[position + 2] == target:
            source = bisect_right(snap.first_edge, position) - 1  # edgeless nodes come first
            kind, name = snap.edge_types[edges[position]], edges[position + 1]
            label = name if kind in ("element", "hidden") else snap.strings[name]
            found.append((kind, label, source))
    return found


def test_whole_heap_no_object_becomes_two_nodes(whole_heap: WholeHeap) -> None:
    assert whole_heap.placed == whole_heap.distinct > 10_000
    assert whole_heap.snap.count > whole_heap.placed  # and the root, threads and frames


def test_whole_heap_global_is_named_on_the_retaining_edge(whole_heap: WholeHeap) -> None:
    snap = whole_heap.snap
    module = follow(snap, 0, MODULE)
    assert snap.node(module)["name"] == "module"
    namespace = follow(snap, module, "__dict__")
    cache = follow(snap, namespace, "CACHE")
    assert snap.node(cache)["name"] == f"{__name__}.RetainedByGlobal"
    assert snap.node(cache)["self_size"] == sys.getsizeof(whole_heap.module.CACHE)
    row = follow(snap, namespace, "ROWS", 0)
    assert snap.node(row)["name"] == f"{__name__}.RetainedByGlobal"
    assert snap.node(follow(snap, namespace, "ROWS", 1))["name"] == "a string element"
    holders = follow(snap, namespace, "SHARED")
    assert follow(snap, holders, 0) == follow(snap, holders, 1)
    assert snap.node(follow(snap, namespace, "ALIAS"))["name"] == "typing._GenericAlias"


def test_whole_heap_thread_stacks_are_roots(whole_heap: WholeHeap) -> None:
    snap = whole_heap.snap
    (held,) = snap.find(f"{__name__}.HeldByThread")
    ((kind, label, frame),) = retainers(snap, held)
    assert (kind, label) == ("property", "held_by_thread")
    qualified = sys.version_info >= (3, 11)  # code objects have co_qualname from 3.11
    function = "whole_heap.<locals>.hold" if qualified else "hold"
    assert snap.node(frame)["name"].startswith(f"Frame {function} (")
    ((_, _, thread),) = retainers(snap, frame)
    assert snap.node(thread)["name"] == "Thread holder-thread"
    assert [src for _, _, src in retainers(snap, thread)] == [0]


def test_whole_heap_objects_only_c_code_holds_are_nodes(whole_heap: WholeHeap) -> None:
    snap = whole_heap.snap
    (outer,) = snap.find(f"{__name__}.HeldOnlyByC")
    assert retainers(snap, outer) == []
    (inner,) = snap.find(f"{__name__}.HeldOnlyByC.Inner")
    ((kind, label, items),) = retainers(snap, inner)
    assert (kind, label, snap.node(items)["name"]) == ("element", 0, "list")
    ((_, _, holder),) = retainers(snap, items)
    if snap.node(holder)["name"] == "dict":  # the instance's __dict__ before 3.11
        ((_, _, holder),) = retainers(snap, holder)
    assert holder == outer


def test_whole_heap_leaves_out_the_snapshot_itself(whole_heap: WholeHeap) -> None:
    names = set(whole_heap.snap.strings)
    assert "otel_profiling.formats.heapsnapshot.HeapGraph" not in names
    assert "otel_profiling.profilers.heap_edges.GraphBuilder" not in names
    # No closure cells: they would exist before gc.get_objects() and pull the walk in.
    assert walk_heap.__code__.co_cellvars == ()
    assert not any(name.startswith(("Frame walk_heap", "Frame snapshot")) for name in names)


# -- freed memory ---------------------------------------------------------------------------

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


def test_a_snapshot_after_asyncio_leaves_the_interpreter_sound() -> None:
    """asyncio's free list of future iterators is never handed to the snapshot.

    CPython 3.12 to 3.12.5 and 3.13.0 give freed iterators to anyone who asks
    ``gc.get_referents(_asyncio)``; holding one frees it twice, and the next
    full collection crashes or loops. Run in a child, so a crash fails this test.
    """
    program = (
        "import asyncio, gc\n"
        "from otel_profiling.profilers import HeapSnapshotProfiler\n"
        "async def main():\n"
        "    await asyncio.gather(*(asyncio.sleep(0.01) for _ in range(50)))\n"
        "asyncio.run(main())\n"
        "loop = asyncio.new_event_loop()\n"
        "it = iter(loop.create_future())\n"  # a freed iterator on the free list
        "del it\n"
        "profiler = HeapSnapshotProfiler()\n"
        "profiler.start()\n"
        "data = profiler.stop()\n"
        "gc.collect()\n"
        "gc.collect()\n"
        "print(len(data) > 1000)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
