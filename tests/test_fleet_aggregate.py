"""The sums behind ``merge``/``diff``: exact in any grouping, and the shares they compare."""

from __future__ import annotations

import pickle
from typing import List, Sequence, Tuple

import pytest

from otel_profiling.cli.aggregate import Aggregate
from otel_profiling.cli.cluster import StorageOptions, add_partials, chunk_size
from otel_profiling.cli.common import CliError
from otel_profiling.cli.compare import compare_functions, function_shares, union_tree
from otel_profiling.formats import ProfileTree
from otel_profiling.formats.calltree import Frame, add_stack, new_root

MAIN, WORK, SLEEP = Frame("main", "app.py", 1), Frame("work", "app.py", 5), Frame("sleep")


def cpu(*stacks: Tuple[Sequence[Frame], float], thread: str = "") -> ProfileTree:
    root = new_root()
    for frames, seconds in stacks:
        add_stack(root, ([Frame(thread)] if thread else []) + list(frames), seconds)
    return ProfileTree(root, "seconds", "cpuprofile")


def stacks_of(tree: ProfileTree) -> List[Tuple[Tuple[str, ...], float, int]]:
    return [
        (tuple(f.function for f in path), node.self_value, node.self_count)
        for path, node in tree.root.stacks()
    ]


def test_grouping_does_not_change_a_bit() -> None:
    # float addition depends on the grouping for these (in seconds and in nanoseconds alike)
    values = [1 / 3, 2 / 3, 5 / 17]
    assert (values[0] + values[1]) + values[2] != values[0] + (values[1] + values[2])
    ns = [v * 1e9 for v in values]
    assert (ns[0] + ns[1]) + ns[2] != ns[0] + (ns[1] + ns[2])

    def profiles() -> List[ProfileTree]:
        return [cpu(([MAIN, WORK], v), ([MAIN], v / 3)) for v in values]

    one_by_one = Aggregate()
    for i, tree in enumerate(profiles()):
        one_by_one.add(tree, f"p{i}")

    parts = []
    for i, tree in enumerate(profiles()):
        part = Aggregate()
        part.add(tree, f"p{i}")
        parts.append(part.pack())
    right_first = add_partials(parts[0], add_partials(parts[1], parts[2]))
    left_first = add_partials(add_partials(parts[0], parts[1]), parts[2])

    expected = one_by_one.result()
    for packed in (right_first, left_first):
        tree = Aggregate.unpack(pickle.loads(pickle.dumps(packed))).result()
        assert stacks_of(tree) == stacks_of(expected)  # values compared with ==
        assert tree.total == expected.total
    work = dict((s[0], s[1]) for s in stacks_of(expected))[("main", "work")]
    assert work == pytest.approx(sum(values), abs=1e-9)  # to the nanosecond


def test_children_keep_the_order_they_were_first_seen() -> None:
    a, b, c = (Frame(n, "x.py", 1) for n in "abc")
    trees = [cpu(([MAIN, b], 1.0)), cpu(([MAIN, a], 1.0)), cpu(([MAIN, c], 1.0), ([MAIN, a], 1))]
    sequential = Aggregate()
    for tree in trees:
        sequential.add(tree, "t")
    parts = []
    for tree in cpu(([MAIN, b], 1.0)), cpu(([MAIN, a], 1.0)), cpu(([MAIN, c], 1.0), ([MAIN, a], 1)):
        part = Aggregate()
        part.add(tree, "t")
        parts.append(part.pack())
    combined = Aggregate.unpack(add_partials(*parts)).result()
    order = [f.function for f in combined.root.children[MAIN].children]
    assert order == ["b", "a", "c"]
    assert stacks_of(combined) == stacks_of(sequential.result())


def test_deep_stacks_pack_without_recursion() -> None:
    deep = [Frame(f"f{i}", "deep.py", i) for i in range(20_000)]
    aggregate = Aggregate()
    aggregate.add(cpu((deep, 0.5)), "deep")
    packed = pickle.loads(pickle.dumps(aggregate.pack()))
    tree = Aggregate.unpack(packed).result()
    assert tree.total == 0.5 and len(list(tree.root.walk())) == 20_001


def test_threads_of_many_processes_add_up_by_name() -> None:
    aggregate = Aggregate()
    aggregate.add(cpu(([MAIN], 1.0), thread="MainThread (thread 140001)"), "a")
    aggregate.add(cpu(([MAIN], 2.0), thread="MainThread (thread 139555)"), "b")
    tree = aggregate.result()
    assert [f.function for f in tree.root.children] == ["MainThread"]
    assert tree.root.children[Frame("MainThread")].children[MAIN].self_value == 3.0


def test_different_kinds_are_refused_and_failures_counted() -> None:
    aggregate = Aggregate()
    aggregate.add(cpu(([MAIN], 1.0)), "cpu.cpuprofile")
    heap = new_root()
    add_stack(heap, [MAIN], 4096)
    with pytest.raises(CliError, match="holds memory but earlier inputs hold time: "):
        aggregate.add(ProfileTree(heap, "bytes", "heapprofile"), "heap.heapprofile")
    aggregate.fail("s3://b/x.cpuprofile", "not a readable profile")
    assert (aggregate.merged, len(aggregate.failures), aggregate.inputs) == (1, 1, 2)
    empty = Aggregate()
    empty.fail("s3://b/y.cpuprofile", "access denied")
    with pytest.raises(CliError, match="none of the 1 profiles could be read"):
        empty.result()


def test_chunks_spread_over_the_threads_and_stay_small() -> None:
    assert chunk_size(2000, 2) == 32
    assert chunk_size(40, 2) == 5
    assert chunk_size(3, 8) == 1


def test_function_shares_count_recursion_once() -> None:
    root = new_root()
    add_stack(root, [MAIN, WORK, WORK, WORK], 3.0)
    add_stack(root, [MAIN, SLEEP], 1.0)
    shares = function_shares(root)
    assert shares[("work", "app.py")] == 0.75
    assert shares[("main", "app.py")] == 1.0
    assert shares[("sleep", "")] == 0.25


def test_sides_of_different_sizes_compare_as_shares() -> None:
    before = cpu(([MAIN, WORK], 3.0), ([MAIN, SLEEP], 1.0))  # 4 s
    after = cpu(([MAIN, WORK], 10.0), ([MAIN, Frame("new")], 10.0))  # 20 s
    changes = {c.name: c for c in compare_functions(before, after)}
    assert (changes["work"].before, changes["work"].after) == (0.75, 0.5)
    assert changes["work"].delta == -0.25
    assert (changes["sleep"].before, changes["sleep"].after) == (0.25, 0.0)
    assert (changes["new"].before, changes["new"].after) == (0.0, 0.5)
    assert changes["main"].delta == 0.0
    union = union_tree(before.root, after.root)
    index = {f.function: i for i, f in enumerate(union.frames)}
    # AFTER's children widest first, then those only in BEFORE
    assert [f.function for f in union.frames] == ["(root)", "main", "work", "new", "sleep"]
    assert union.after[index["sleep"]] == 0 and union.gone[index["sleep"]] == 0.25
    assert union.gone[index["main"]] == 0.25 and union.gone[0] == 0.25
    assert union.gone[index["work"]] == 0.0


def test_options_sent_to_workers_hide_their_secrets() -> None:
    options = StorageOptions(
        key="AKIAEXAMPLEKEY", secret="wJalrXUtnFEMI", endpoint_url="http://127.0.0.1:9000"
    )
    for text in (repr(options), str(options), repr([options])):
        assert "AKIAEXAMPLEKEY" not in text and "wJalrXUtnFEMI" not in text
        assert "http://127.0.0.1:9000" in text
    assert pickle.loads(pickle.dumps(options))["secret"] == "wJalrXUtnFEMI"
