"""Every format the profilers write, read back by the command line as a user would.

For each (kind, format) pair in the registry, a real profile of code that
measures itself is written, then ``view``, ``convert`` and ``merge`` read it:
their totals agree with each other (within rounding), and the converted
profile, decoded independently with the tests' pprof schema, still holds the
time the hot function measured with ``time.perf_counter`` or the bytes the
program keeps. Clock labels (wall, CPU) survive conversion; ``go tool pprof``
shows Python's ``<module>``/``<genexpr>`` names; the speedscope writer's
output passes speedscope's own file-format schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from clitools import cli, parse_pprof

from otel_profiling.formats import all_formats, formats_for, read_profile, write_profile
from otel_profiling.formats.registry import ENTRY_POINT_GROUP, readable_formats
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers import CpuProfiler, HeapProfiler, HeapSnapshotProfiler
from otel_profiling.profilers.base import Profiler

HOT_SECONDS = 0.4
KEPT_BLOCKS, BLOCK_BYTES = 64, 64 * 1024  # 4 MiB kept by ``hold``
TIME_TOLERANCE = 0.25
"""Share of the measured time the profile may miss or add (sampling at 10 ms, a busy machine)."""
BYTES_TOLERANCE = 0.05
"""tracemalloc counts the blocks exactly; the bytearray headers add a little."""


def burn(seconds: float) -> float:
    """Keep the CPU busy in this frame for ``seconds``; returns the time it really ran."""
    began = time.perf_counter()
    total = 0
    while time.perf_counter() - began < seconds:
        for i in range(5000):
            total += i * i
    return time.perf_counter() - began


def hold() -> List[bytearray]:
    return [bytearray(BLOCK_BYTES) for _ in range(KEPT_BLOCKS)]


PAIRS = [(kind, fmt.name) for kind in ProfileKind for fmt in formats_for(kind)]


def capture(kind: ProfileKind, name: str, clock: str = "wall") -> Tuple[bytes, float, Any]:
    """A real profile in ``name``: (data, what the program measured, the profiler)."""
    profiler: Profiler
    if kind is ProfileKind.CPU_PROFILE:
        profiler = CpuProfiler(format=name, clock=clock)
        profiler.start()
        measured = burn(HOT_SECONDS)
        return profiler.stop(), measured, profiler
    if kind is ProfileKind.HEAP_PROFILE:
        profiler = HeapProfiler(format=name)
        profiler.start()
        kept = hold()
        data = profiler.stop()
        del kept
        return data, float(KEPT_BLOCKS * BLOCK_BYTES), profiler
    blocks = hold()
    profiler = HeapSnapshotProfiler(format=name, roots={"blocks": blocks})
    profiler.start()
    return profiler.stop(), float(KEPT_BLOCKS * BLOCK_BYTES), profiler


def pprof_scale(unit: str) -> float:
    """pprof's integer values per unit of a read tree: nanoseconds for seconds."""
    return 1e9 if unit == "seconds" else 1.0


def json_of(result: subprocess.CompletedProcess) -> Dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_the_registry_lists_every_format_once_with_the_contracts_names() -> None:
    formats = all_formats()
    expected = {
        "cpuprofile": ("cpuprofile", "application/json"),
        "heapprofile": ("heapprofile", "application/json"),
        "heapsnapshot": ("heapsnapshot", "application/json"),
        "pprof": ("pprof", "application/vnd.google.protobuf+gzip"),
        "pstats": ("pstats", "application/octet-stream"),
        "callgrind": ("callgrind", "text/plain; charset=utf-8"),
        "folded": ("folded", "text/plain; charset=utf-8"),
        "speedscope": ("speedscope.json", "application/json"),
    }
    assert {name: (f.extension, f.content_type) for name, f in formats.items()} == expected
    assert [f.name for f in formats_for(ProfileKind.CPU_PROFILE)][0] == "cpuprofile"
    assert [f.name for f in formats_for(ProfileKind.HEAP_PROFILE)][0] == "heapprofile"
    # every format a profiler writes is readable by the command line
    assert {name for _, name in PAIRS} <= set(readable_formats())
    assert ENTRY_POINT_GROUP == "otel_profiling_format"


@pytest.mark.parametrize(("kind", "name"), PAIRS, ids=[f"{k.value}-{n}" for k, n in PAIRS])
def test_every_written_format_round_trips_through_view_convert_and_merge(
    kind: ProfileKind, name: str, tmp_path: Path
) -> None:
    data, measured, profiler = capture(kind, name)
    fmt = profiler.format
    first = tmp_path / f"{kind.value}-2026-11-30T10:00:00.000Z.{fmt.extension}"
    second = tmp_path / f"{kind.value}-2026-11-30T10:01:00.000Z.{fmt.extension}"
    first.write_bytes(data)
    second.write_bytes(data)

    viewed = json_of(cli("view", str(first), "-o", str(tmp_path / "v.html"), "--json"))
    assert viewed["format"] == name
    converted = json_of(cli("convert", str(first), str(tmp_path / "c.pprof"), "--json"))
    merged = json_of(
        cli("merge", str(first), str(second), "-o", str(tmp_path / "m.speedscope.json"), "--json")
    )
    total = viewed["total"]
    assert total > 0
    # the same numbers through every command: pprof rounds each value to 1 ns or 1 byte
    rounding = 1e-6 * total + 1e-6
    assert converted["total"] == pytest.approx(total, abs=rounding)
    assert merged["merged"] == 2 and merged["failed"] == []
    assert merged["total"] == pytest.approx(2 * total, rel=1e-6, abs=rounding)
    assert viewed["unit"] == converted["unit"] == merged["unit"]

    # the converted file, decoded with the tests' own schema, holds the truth
    parsed = parse_pprof((tmp_path / "c.pprof").read_bytes())
    scale = pprof_scale(viewed["unit"])
    assert parsed["totals"][-1] == pytest.approx(total * scale, rel=1e-6, abs=len(parsed["self"]))
    if kind is ProfileKind.CPU_PROFILE:
        # folded has no unit: read back, its values are the microseconds it holds
        hot_ns = parsed["self"].get("burn", 0) * (1e3 if name == "folded" else 1.0)
        assert hot_ns / 1e9 == pytest.approx(measured, rel=TIME_TOLERANCE, abs=0.03), parsed
    elif kind is ProfileKind.HEAP_PROFILE:
        kept = sum(v for f, v in parsed["self"].items() if f.startswith("hold"))
        assert kept == pytest.approx(measured, rel=BYTES_TOLERANCE), parsed
    else:  # the snapshot's summary: the kept bytearrays are there, each counted once
        assert parsed["totals"][-1] >= measured
        assert parsed["totals"][-1] < measured * 1.5


def test_speedscope_from_profilers_passes_speedscopes_schema(
    speedscope_schema: Dict[str, Any], tmp_path: Path
) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra")
    cpu, measured, _ = capture(ProfileKind.CPU_PROFILE, "speedscope")
    heap, kept, _ = capture(ProfileKind.HEAP_PROFILE, "speedscope")
    for data in (cpu, heap):
        jsonschema.validate(json.loads(data), speedscope_schema)
    tree = read_profile(cpu, "x.speedscope.json")
    hot = sum(n.self_value for n, _ in tree.root.walk() if n.frame.function == "burn")
    assert hot == pytest.approx(measured, rel=TIME_TOLERANCE, abs=0.03)
    assert (tree.unit, tree.measure) == ("seconds", "wall")
    held = read_profile(heap, "x.speedscope.json")
    assert held.unit == "bytes"
    in_hold = sum(n.self_value for n, _ in held.root.walk() if n.frame.function.startswith("hold"))
    assert in_hold == pytest.approx(kept, rel=BYTES_TOLERANCE)


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_clock_labels_survive_conversion(clock: str, tmp_path: Path) -> None:
    data, _, _ = capture(ProfileKind.CPU_PROFILE, "cpuprofile", clock)
    source = tmp_path / "CPU_PROFILE-2026-11-30T10:00:00.000Z.cpuprofile"
    source.write_bytes(data)
    converted = json_of(cli("convert", str(source), str(tmp_path / "c.pprof"), "--json"))
    assert converted["measure"] == clock
    parsed = parse_pprof((tmp_path / "c.pprof").read_bytes())
    assert parsed["types"][-1] == (clock, "nanoseconds")
    page = tmp_path / "c.html"
    viewed = json_of(cli("view", str(tmp_path / "c.pprof"), "-o", str(page), "--json"))
    label = {"wall": "wall time", "cpu": "CPU time"}[clock]
    assert viewed["measure_text"] == label
    assert f"pprof profile, {label}" in page.read_text()
    # and through every other format that says which clock it holds
    tree = read_profile(data, source.name)
    for target in ("pprof", "speedscope", "cpuprofile"):
        back = read_profile(write_profile(tree, target), "x." + all_formats()[target].extension)
        assert back.measure == clock, target
        assert back.total == pytest.approx(tree.total, rel=1e-6, abs=1e-6), target
    callgrind, _, _ = capture(ProfileKind.CPU_PROFILE, "callgrind", clock)
    assert read_profile(callgrind, "x.callgrind").measure == clock


def go_top_names(go_pprof: List[str], path: Path) -> Dict[str, float]:
    """``go tool pprof -top``: flat% per function name (names may hold spaces)."""
    top = subprocess.run(
        [*go_pprof, "-top", str(path)], capture_output=True, text=True, timeout=300
    )
    assert top.returncode == 0, top.stderr
    rows: Dict[str, float] = {}
    for line in top.stdout.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[1].endswith("%") and parts[4].endswith("%"):
            rows[parts[5]] = rows.get(parts[5], 0.0) + float(parts[1].rstrip("%"))
    assert rows, top.stdout
    return rows


MODULE_CODE = """
total = 0
while time.perf_counter() < end:
    total += sum(x * x for x in range(2000))
"""


@pytest.mark.parametrize("engine", ["sampling", "yappi"])
def test_go_tool_pprof_shows_python_angle_bracket_names(
    engine: str, go_pprof: List[str], tmp_path: Path
) -> None:
    code = compile(MODULE_CODE, "hot_module.py", "exec")  # runs as a ``<module>`` frame
    profiler = CpuProfiler(format="cpuprofile", engine=engine)
    profiler.start()
    exec(code, {"time": time, "end": time.perf_counter() + HOT_SECONDS})  # noqa: S102
    source = tmp_path / "CPU_PROFILE-2026-11-30T10:00:00.000Z.cpuprofile"
    source.write_bytes(profiler.stop())
    json_of(cli("convert", str(source), str(tmp_path / "c.pprof"), "--json"))
    rows = go_top_names(go_pprof, tmp_path / "c.pprof")
    assert "<genexpr>" in rows and "<module>" in rows, rows
    assert "<unknown>" not in rows, rows
    assert rows["<genexpr>"] > 0, rows


PLUGIN = """
import json

from otel_profiling.formats.calltree import Frame, add_stack, new_root
from otel_profiling.formats.format import ProfileTree, TreeFormat
from otel_profiling.profile import ProfileKind


class Totals(TreeFormat):
    readable = True

    def __init__(self):
        super().__init__("totals", "totals.json", "application/json", [ProfileKind.CPU_PROFILE])

    def encode_tree(self, tree):
        doc = {"unit": tree.unit, "measure": tree.measure, "total": tree.total}
        return json.dumps(doc).encode()

    def decode(self, data):
        doc = json.loads(data)
        root = new_root()
        add_stack(root, [Frame("total")], doc["total"])
        return ProfileTree(root, doc["unit"], "totals", measure=doc["measure"])

    def sniff(self, data):
        return data.startswith(b'{"unit"')


FORMAT = Totals()
"""


def test_a_format_from_the_entry_point_group_is_used_everywhere(tmp_path: Path) -> None:
    """An installed distribution's ``otel_profiling_format`` entry point: profilers and CLI."""
    site = tmp_path / "site"
    dist = site / "totals_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "totals_plugin.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: totals-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ntotals = totals_plugin:FORMAT\n"
    )
    root = Path(__file__).resolve().parent.parent
    bare_env = dict(os.environ, PYTHONPATH=str(root))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(root)]))
    data, measured, _ = capture(ProfileKind.CPU_PROFILE, "pprof")
    source = tmp_path / "CPU_PROFILE-2026-11-30T10:00:00.000Z.pprof"
    source.write_bytes(data)
    out = tmp_path / "cpu.totals.json"
    converted = json_of(cli("convert", str(source), str(out), "--json", env=env))
    assert converted["format"] == "totals"
    doc = json.loads(out.read_text())
    assert doc["measure"] == "wall" and doc["total"] == pytest.approx(converted["total"])
    viewed = json_of(cli("view", str(out), "-o", str(tmp_path / "t.html"), "--json", env=env))
    assert viewed["format"] == "totals" and viewed["total"] == pytest.approx(doc["total"])
    # a profiler takes it by name, in a process where the plugin is installed
    script = (
        "from otel_profiling.profilers import CpuProfiler\n"
        "p = CpuProfiler(format='totals'); p.start(); sum(range(10**6)); "
        "print(p.format.extension, p.stop().decode())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    extension, written = run.stdout.split(" ", 1)
    assert extension == "totals.json" and json.loads(written)["unit"] == "seconds"
    # without the plugin the name is unknown, with the list of what is
    bare = subprocess.run(
        [sys.executable, "-c", script], env=bare_env, capture_output=True, text=True, timeout=120
    )
    assert bare.returncode != 0 and "choose one of cpuprofile" in bare.stderr


def test_unreadable_input_names_every_readable_format(tmp_path: Path) -> None:
    source = tmp_path / "mystery.bin"
    source.write_bytes(b"\x00\x01 not a profile")
    result = cli("view", str(source))
    assert result.returncode != 0
    for name in readable_formats():
        assert name in result.stderr, result.stderr
    assert "--from" in result.stderr


def test_a_pstats_file_from_cprofile_is_read(tmp_path: Path) -> None:
    """cProfile's own pstats file, read as ``pstats.Stats`` reads it."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    measured = burn(0.1)
    profile.disable()
    path = tmp_path / "run.pstats"
    profile.dump_stats(str(path))
    stats = pstats.Stats(str(path))
    truth = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    tree = read_profile(path.read_bytes(), "")  # recognised by its content
    assert tree.format == "pstats"
    assert tree.total == pytest.approx(truth, rel=1e-9)
    hot = sum(n.self_value for n, _ in tree.root.walk() if n.frame.function == "burn")
    assert hot == pytest.approx(measured, rel=TIME_TOLERANCE, abs=0.03)


def test_v8_call_frames_keep_no_file_apart_from_the_first_file() -> None:
    """``.cpuprofile`` and ``.heapprofile`` number files from 1; ``"0"`` is "no file" only."""
    from otel_profiling.formats.calltree import Frame, add_stack, new_root
    from otel_profiling.formats.cpuprofile import encode_cpuprofile
    from otel_profiling.formats.heapprofile import encode_heapprofile

    root = new_root()
    app, lib = Frame("main", "/srv/app.py", 3), Frame("load", "/srv/lib.py", 9)
    add_stack(root, [app, lib, Frame("(idle)")], 1.0)
    add_stack(root, [app, Frame("sleep")], 2.0)
    cpu = json.loads(encode_cpuprofile(root, start_us=0))
    heap = json.loads(encode_heapprofile(root))

    def heap_frames(node: Dict[str, Any]) -> List[Dict[str, Any]]:
        return [node["callFrame"], *(f for c in node["children"] for f in heap_frames(c))]

    for frames in ([n["callFrame"] for n in cpu["nodes"]], heap_frames(heap["head"])):
        by_url: Dict[str, set] = {}
        for frame in frames:
            by_url.setdefault(frame["url"], set()).add(frame["scriptId"])
        assert by_url[""] == {"0"}, by_url  # the root, (idle) and sleep: no file
        assert by_url["/srv/app.py"] == {"1"} and by_url["/srv/lib.py"] == {"2"}, by_url
        lines = {"": -1, "/srv/app.py": 2, "/srv/lib.py": 8}  # 0-based, -1 when unknown
        assert all(frame["lineNumber"] == lines[frame["url"]] for frame in frames), frames


def test_a_valgrind_style_callgrind_file_is_read_by_its_first_event() -> None:
    """Name compression, two position columns, call records' inclusive costs left out."""
    data = b"""# callgrind format
version: 1
positions: instr line
events: Ir Dr
summary: 1800 90

fl=(1) /src/app.c
fn=(1) main
0x10 3 500 10
0x14 4 100 5
cfl=(1)
cfn=(2) work
calls=2 0x40 20
0x14 4 1200 70

fn=(2)
0x40 20 1200 75
"""
    tree = read_profile(data, "callgrind.out.1234")  # recognised by its content
    assert (tree.format, tree.unit) == ("callgrind", "count")
    costs = {(n.frame.function, n.frame.lineno): n.self_value for n, _ in tree.root.walk()}
    assert costs[("main", 3)] == 500 and costs[("main", 4)] == 100
    assert costs[("work", 20)] == 1200
    assert tree.total == 1800  # the summary: the call's inclusive 1200 is not counted twice
