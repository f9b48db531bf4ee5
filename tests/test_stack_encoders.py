"""The call-tree encoders (pprof, folded, heapprofile) on a tree with known values."""

from __future__ import annotations

from viewers import heapprofile_totals, load_folded, load_heapprofile, load_pprof, pprof_stacks

from otel_profiling.formats.calltree import Frame, add_stack, new_root
from otel_profiling.formats.folded import encode_folded
from otel_profiling.formats.heapprofile import encode_heapprofile
from otel_profiling.formats.pprof import encode_pprof

MAIN = Frame("main", "app.py", 1)
HANDLE = Frame("handle", "app.py", 10)
PARSE = Frame("parse;json", "parse.py", 3)  # a separator inside a name


def tree():  # type: ignore[no-untyped-def]
    root = new_root()
    add_stack(root, [MAIN], 0.25, 1)
    add_stack(root, [MAIN, HANDLE], 1.5, 3)
    add_stack(root, [MAIN, HANDLE, PARSE], 0.000002, 1)
    add_stack(root, [MAIN, Frame("idle", "app.py", 20)], 0.0, 0)  # no value: no sample
    return root


def test_pprof_values_and_leaf_first_locations() -> None:
    data = encode_pprof(
        tree(),
        sample_types=[("samples", "count"), ("wall", "nanoseconds")],
        value_scale=1e9,
        period_type=("wall", "nanoseconds"),
        period=1,
        time_nanos=1_700_000_000_000_000_000,
        duration_nanos=2_000_000_000,
    )
    profile = load_pprof(data)
    stacks = {tuple(stack): values for stack, values in pprof_stacks(profile)}
    assert stacks == {
        ("main",): [1, 250_000_000],
        ("main", "handle"): [3, 1_500_000_000],
        ("main", "handle", "parse;json"): [1, 2_000],
    }
    (sample,) = [s for s in profile.sample if len(s.location_id) == 3]
    by_id = {loc.id: loc for loc in profile.location}
    functions = {f.id: f for f in profile.function}
    leaf = functions[by_id[sample.location_id[0]].line[0].function_id]
    assert profile.string_table[leaf.name] == "parse;json"  # leaf first
    assert profile.string_table[leaf.filename] == "parse.py"
    assert by_id[sample.location_id[0]].line[0].line == 3
    assert profile.time_nanos == 1_700_000_000_000_000_000
    assert profile.duration_nanos == 2_000_000_000 and profile.period == 1


def test_folded_excludes_root_and_escapes_separators() -> None:
    stacks = load_folded(encode_folded(tree(), 1e6))
    assert stacks == [
        (["main (app.py:1)"], 250_000),
        (["main (app.py:1)", "handle (app.py:10)"], 1_500_000),
        (["main (app.py:1)", "handle (app.py:10)", "parse:json (parse.py:3)"], 2),
    ]


def test_heapprofile_totals_match_the_tree() -> None:
    root = new_root()
    add_stack(root, [MAIN, HANDLE], 4096, 2)
    add_stack(root, [MAIN], 100, 1)
    profile = load_heapprofile(encode_heapprofile(root))
    assert heapprofile_totals(profile) == {"(root)": 4196, "main": 4196, "handle": 4096}
    assert sorted(s["size"] for s in profile["samples"]) == [100, 4096]
    assert profile["head"]["children"][0]["callFrame"]["lineNumber"] == 0  # 0-based
