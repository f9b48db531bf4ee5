"""Reading every format back into a call tree, writing speedscope, merging trees."""

from __future__ import annotations

import gzip
import json

import pytest
from clitools import build_pprof, random_cpuprofile, speedscope_totals
from viewers import cpuprofile_self_times, load_cpuprofile

from otel_profiling.formats.calltree import Frame, add_stack, find, new_root
from otel_profiling.formats.cpuprofile import encode_cpuprofile
from otel_profiling.formats.merge import merge_into
from otel_profiling.formats.registry import (
    ProfileFormatError,
    format_from_name,
    read_profile,
    sniff_format,
)
from otel_profiling.formats.speedscope import encode_speedscope


def self_by_name(root) -> dict:  # type: ignore[no-untyped-def]
    out: dict = {}
    for node, _ in root.walk():
        out[node.frame.function] = out.get(node.frame.function, 0.0) + node.self_value
    return out


def test_cpuprofile_reader_matches_devtools_self_times() -> None:
    data = random_cpuprofile(seed=3, start_us=1_700_000_000_000_000)
    expected = cpuprofile_self_times(load_cpuprofile(data))  # µs, as DevTools computes
    tree = read_profile(data, "x.cpuprofile")
    assert tree.unit == "seconds"
    assert tree.start_ns == 1_700_000_000_000_000 * 1000
    got = self_by_name(tree.root)
    for name, micros in expected.items():
        assert got[name] * 1e6 == pytest.approx(micros, abs=1e-6)
    assert tree.total * 1e6 == pytest.approx(sum(expected.values()))


def test_heapprofile_reader_nested_nodes_in_bytes() -> None:
    doc = {
        "head": {
            "callFrame": {
                "functionName": "(root)",
                "url": "",
                "lineNumber": -1,
                "scriptId": "0",
                "columnNumber": -1,
            },
            "selfSize": 0,
            "id": 1,
            "children": [
                {
                    "callFrame": {
                        "functionName": "load_rows",
                        "url": "/app/db.py",
                        "lineNumber": 9,
                        "scriptId": "1",
                        "columnNumber": 0,
                    },
                    "selfSize": 4096,
                    "id": 2,
                    "children": [
                        {
                            "callFrame": {
                                "functionName": "decode",
                                "url": "/app/db.py",
                                "lineNumber": 41,
                                "scriptId": "1",
                                "columnNumber": 0,
                            },
                            "selfSize": 1000,
                            "id": 3,
                            "children": [],
                        }
                    ],
                }
            ],
        },
        "samples": [
            {"size": 4096, "nodeId": 2, "ordinal": 1},
            {"size": 1000, "nodeId": 3, "ordinal": 2},
        ],
    }
    tree = read_profile(json.dumps(doc).encode(), "HEAP_PROFILE-x.heapprofile")
    assert tree.unit == "bytes"
    assert tree.total == 5096
    decode = find(tree.root, "decode")
    assert decode is not None
    assert decode.frame == Frame("decode", "/app/db.py", 42)  # 0-based line in the file
    assert decode.self_count == 1


def test_heapsnapshot_summarised_by_type_and_constructor() -> None:
    doc = {
        "snapshot": {
            "meta": {
                "node_fields": [
                    "type",
                    "name",
                    "id",
                    "self_size",
                    "edge_count",
                    "trace_node_id",
                    "detachedness",
                ],
                "node_types": [["hidden", "array", "string", "object", "code", "closure"]],
                "edge_fields": ["type", "name_or_index", "to_node"],
                "edge_types": [
                    ["context", "element", "property", "internal", "hidden", "shortcut", "weak"]
                ],
            },
            "node_count": 4,
            "edge_count": 0,
        },
        "nodes": [
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            3,
            1,
            3,
            100,
            0,
            0,
            0,
            3,
            1,
            5,
            50,
            0,
            0,
            0,
            2,
            2,
            7,
            30,
            0,
            0,
            0,
        ],
        "edges": [],
        "strings": ["", "Order", "hello"],
    }
    tree = read_profile(json.dumps(doc).encode(), "s.heapsnapshot")
    assert tree.unit == "bytes"
    assert tree.total == 180
    order = find(tree.root, "Order")
    assert order is not None and order.self_value == 150


def test_pprof_reader_against_protobuf_library_encoding() -> None:
    stacks = [
        ([("main", "app.py", 1), ("handle", "app.py", 10), ("parse", "p.py", 3)], 3, 30_000_000),
        ([("main", "app.py", 1), ("handle", "app.py", 10)], 1, 5_000_000),
        ([("main", "app.py", 1), ("idle", "app.py", 50)], 2, 7_000_000),
    ]
    data = build_pprof(stacks, time_nanos=123_000)
    assert sniff_format(data) == "pprof"
    tree = read_profile(data, "x.pprof")
    assert tree.unit == "seconds"
    assert tree.start_ns == 123_000
    assert tree.total == pytest.approx(0.042)
    assert tree.root.total_count() == 6
    parse = find(tree.root, "parse")
    assert parse is not None and parse.frame == Frame("parse", "p.py", 3)
    assert parse.self_value == pytest.approx(0.03)
    assert list(tree.root.children) == [Frame("main", "app.py", 1)]


def test_pprof_heap_sample_type_is_bytes() -> None:
    data = build_pprof(
        [([("alloc", "a.py", 1)], 1, 2048)], sample_types=(("samples", "count"), ("space", "bytes"))
    )
    tree = read_profile(data)
    assert tree.unit == "bytes" and tree.total == 2048


def test_folded_reader_parses_labels_and_values() -> None:
    text = b"main (app.py:1);handle (app.py:10) 5\nmain (app.py:1);idle 7\n\n"
    assert sniff_format(text) == "folded"
    tree = read_profile(text, "stacks.folded")
    assert tree.total == 12
    handle = find(tree.root, "handle")
    assert handle is not None and handle.frame == Frame("handle", "app.py", 10)
    with pytest.raises(ProfileFormatError, match="line 1"):
        read_profile(b"main;handle five\n", "x.folded")


def test_speedscope_round_trip_keeps_self_values() -> None:
    root = new_root()
    add_stack(root, [Frame("main", "a.py", 1), Frame("work", "a.py", 5)], 0.25)
    add_stack(root, [Frame("main", "a.py", 1)], 0.5)
    data = encode_speedscope(root, unit="seconds")
    assert speedscope_totals(data) == {"work": 0.25, "main": 0.5}
    assert json.loads(data)["profiles"][0]["unit"] == "seconds"
    back = read_profile(data, "x.speedscope.json")
    assert back.unit == "seconds" and back.total == pytest.approx(0.75)
    assert format_from_name("x.speedscope.json") == "speedscope"


def test_merge_adds_values_and_counts_path_by_path() -> None:
    a, b = new_root(), new_root()
    add_stack(a, [Frame("main"), Frame("x")], 1.0, 2)
    add_stack(b, [Frame("main"), Frame("x")], 2.0, 3)
    add_stack(b, [Frame("main"), Frame("y")], 4.0, 1)
    merged = merge_into(merge_into(new_root(), a), b)
    assert merged.total_value() == 7.0 and merged.total_count() == 6
    x = find(merged, "x")
    assert x is not None and x.self_value == 3.0 and x.self_count == 5


def test_sniffing_and_errors() -> None:
    root = new_root()
    add_stack(root, [Frame("f")], 1.0)
    assert sniff_format(encode_cpuprofile(root, 0)) == "cpuprofile"
    assert sniff_format(encode_speedscope(root)) == "speedscope"
    with pytest.raises(ProfileFormatError):
        read_profile(b'{"hello": 1}')
    with pytest.raises(ProfileFormatError):
        read_profile(gzip.compress(b"\xff\xff\xff"))


def test_merge_shares_one_frame_per_location_across_inputs() -> None:
    frames: dict = {}
    merged = new_root()
    for _ in range(3):
        source = new_root()
        add_stack(source, [Frame("main", "a.py", 1), Frame("leaf", "a.py", 2)], 1.0)
        merge_into(merged, source, frames)
    leaf = find(merged, "leaf")
    assert leaf is not None and leaf.self_value == 3.0
    assert leaf.frame is frames[Frame("leaf", "a.py", 2)]
    assert len(frames) == 2


def test_speedscope_evented_profile_self_times() -> None:
    doc = {
        "shared": {"frames": [{"name": "main"}, {"name": "work", "file": "w.py", "line": 3}]},
        "profiles": [
            {
                "type": "evented",
                "unit": "milliseconds",
                "startValue": 0,
                "endValue": 10,
                "events": [
                    {"type": "O", "frame": 0, "at": 0},
                    {"type": "O", "frame": 1, "at": 2},
                    {"type": "C", "frame": 1, "at": 9},
                    {"type": "C", "frame": 0, "at": 10},
                ],
            }
        ],
    }
    tree = read_profile(json.dumps(doc).encode(), "x.speedscope.json")
    assert tree.unit == "seconds"
    assert self_by_name(tree.root)["work"] == pytest.approx(0.007)
    assert self_by_name(tree.root)["main"] == pytest.approx(0.003)
