"""CPU profiles in every format, read back by independent readers."""

from __future__ import annotations

import asyncio
import pstats
import re
import threading
import time
from pathlib import Path
from typing import List

import pytest
from viewers import (
    cpuprofile_inclusive_times,
    cpuprofile_self_times,
    load_callgrind,
    load_cpuprofile,
    load_folded,
    load_pprof,
    pprof_labels,
    pprof_stacks,
)

from otel_profiling.profilers import CpuProfiler
from otel_profiling.profilers.pace import MAX_STRETCH
from otel_profiling.profilers.sampling_engine import JITTER


def spin_cpu(seconds: float) -> int:
    """CPU-bound: dominates self time."""
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        for i in range(2000):
            total += i * i
    return total


def recurse(depth: int) -> int:
    return 0 if depth == 0 else recurse(depth - 1) + 1


def light_helper() -> int:
    return sum(range(100))


def workload() -> None:
    spin_cpu(0.4)
    recurse(15)
    for _ in range(50):
        light_helper()


def capture(fmt: str, **options: object) -> bytes:
    profiler = CpuProfiler(format=fmt, **options)  # type: ignore[arg-type]
    profiler.start()
    try:
        workload()
    finally:
        data = profiler.stop()
    return data


def test_pstats_loads_in_pstats_with_exact_counts(tmp_path: Path) -> None:
    path = tmp_path / "cpu.pstats"
    path.write_bytes(capture("pstats"))
    stats = pstats.Stats(str(path))
    by_name = {func[2]: value for func, value in stats.stats.items()}  # type: ignore[attr-defined]
    primitive, total, tottime, _cumtime, callers = by_name["recurse"]
    assert (primitive, total) == (1, 16), "pstats expects (primitive, total) calls"
    by_caller = {caller[2]: value for caller, value in callers.items()}
    assert by_caller["recurse"][0] == 15 and by_caller["workload"][:2] == (1, 1)
    assert by_name["light_helper"][:2] == (50, 50)
    helper_callers = {caller[2]: value for caller, value in by_name["light_helper"][4].items()}
    assert helper_callers["workload"][:2] == (50, 50)
    top = max(by_name.items(), key=lambda item: item[1][2])
    assert top[0] == "spin_cpu", f"self time dominated by {top[0]}"
    assert by_name["spin_cpu"][2] >= 0.2
    assert by_name["workload"][3] >= by_name["spin_cpu"][3] >= 0.35  # cumulative


def test_callgrind_reads_back_as_a_call_graph() -> None:
    data = capture("callgrind")
    text = data.decode("utf-8")
    assert text.startswith("# callgrind format\nversion: 1\n")
    assert re.search(r"^events: wall$", text, re.M)
    functions = load_callgrind(data)
    top = max(functions, key=lambda name: functions[name][1])
    assert top == "spin_cpu", f"self cost dominated by {top}"
    assert functions["spin_cpu"][1] >= 200_000  # microseconds
    calls, _cost, callees = functions["workload"]
    assert callees["light_helper"][0] == 50
    assert callees["spin_cpu"][0] == 1 and callees["spin_cpu"][1] >= 350_000  # inclusive
    assert functions["light_helper"][0] == 50
    assert functions["recurse"][2]["recurse"][0] == 15


def test_folded_self_time_dominated_by_cpu_function() -> None:
    stacks = load_folded(capture("folded"))
    self_us: dict = {}
    for stack, count in stacks:
        if not stack[0].startswith("MainThread (thread "):
            continue  # other threads of the test process wait (wall clock) elsewhere
        leaf = stack[-1].split(" (")[0]
        self_us[leaf] = self_us.get(leaf, 0) + count
    assert max(self_us, key=self_us.get) == "spin_cpu"
    assert self_us["spin_cpu"] >= 200_000  # microseconds
    assert any(stack[0].startswith("MainThread (thread ") for stack, _ in stacks)


def test_pprof_decodes_with_profile_proto() -> None:
    profile = load_pprof(capture("pprof"))
    strings = profile.string_table
    types = [(strings[t.type], strings[t.unit]) for t in profile.sample_type]
    assert types == [("samples", "count"), ("wall", "nanoseconds")]
    assert (strings[profile.period_type.type], strings[profile.period_type.unit]) == (
        "wall",
        "nanoseconds",
    )
    leaf_ns: dict = {}
    main = [pprof_labels(profile, s).get("thread.name") == "MainThread" for s in profile.sample]
    for (stack, values), in_main in zip(pprof_stacks(profile), main, strict=True):
        assert values[0] >= 0 and values[1] >= 0
        if in_main:  # other threads of the test process wait (wall clock) elsewhere
            leaf_ns[stack[-1]] = leaf_ns.get(stack[-1], 0) + values[1]
    assert max(leaf_ns, key=leaf_ns.get) == "spin_cpu"
    assert leaf_ns["spin_cpu"] >= 200_000_000
    assert profile.duration_nanos >= 400_000_000


def test_pprof_cpu_clock_names_the_value() -> None:
    profile = load_pprof(capture("pprof", clock="cpu"))
    strings = profile.string_table
    assert [strings[t.type] for t in profile.sample_type] == ["samples", "cpu"]


def test_threads_keep_their_identity() -> None:
    profiler = CpuProfiler()
    profiler.start()
    worker = threading.Thread(target=spin_cpu, args=(0.3,), name="pricing-worker")
    worker.start()
    worker.join()
    profile = load_cpuprofile(profiler.stop())
    by_id = {node["id"]: node for node in profile["nodes"]}
    root = profile["nodes"][0]
    threads = [by_id[c]["callFrame"]["functionName"] for c in root["children"]]
    assert any(t.startswith("pricing-worker (thread ") for t in threads), threads
    assert any(t.startswith("MainThread (thread ") for t in threads), threads
    (subtree,) = [
        by_id[c]
        for c in root["children"]
        if "pricing-worker" in by_id[c]["callFrame"]["functionName"]
    ]
    below = set()
    stack = list(subtree["children"])
    while stack:
        node = by_id[stack.pop()]
        below.add(node["callFrame"]["functionName"])
        stack.extend(node["children"])
    assert "spin_cpu" in below


SLEPT: List[float] = []


async def sleeper(seconds: float) -> None:
    began = time.perf_counter()
    await asyncio.sleep(seconds)
    SLEPT.append(time.perf_counter() - began)


async def gather_sleepers() -> None:
    began = time.perf_counter()
    await asyncio.gather(sleeper(0.3), sleeper(0.3))
    SLEPT.append(time.perf_counter() - began)


def test_coroutines_keep_their_wall_time() -> None:
    SLEPT.clear()
    profiler = CpuProfiler(clock="wall")
    profiler.start()
    asyncio.run(gather_sleepers())
    profile = load_cpuprofile(profiler.stop())
    totals = cpuprofile_inclusive_times(profile)
    first, second, gathered = SLEPT
    # Two coroutines suspended 0.3 s each: the wall clock counts suspensions. A
    # task's start and end are each placed within half a step of where they were;
    # while all tasks wait the step stretches to MAX_STRETCH jittered intervals.
    step = MAX_STRETCH * 0.01 * (1 + JITTER)
    assert totals["sleeper"] == pytest.approx((first + second) * 1e6, abs=2 * step * 1e6)
    assert totals["gather_sleepers"] == pytest.approx(gathered * 1e6, abs=step * 1e6)
    assert cpuprofile_self_times(profile).get("sleeper", 0) < 0.1e6  # time is in asyncio.sleep


@pytest.mark.parametrize(
    ("fmt", "extension", "content_type"),
    [
        ("cpuprofile", "cpuprofile", "application/json"),
        ("pprof", "pprof", "application/vnd.google.protobuf+gzip"),
        ("pstats", "pstats", "application/octet-stream"),
        ("callgrind", "callgrind", "text/plain; charset=utf-8"),
        ("folded", "folded", "text/plain; charset=utf-8"),
    ],
)
def test_formats_set_extension_and_content_type(
    fmt: str, extension: str, content_type: str
) -> None:
    profiler = CpuProfiler(format=fmt.upper())
    assert profiler.format.extension == extension
    assert profiler.format.content_type == content_type


def test_unknown_format_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="cpuprofile, pprof, pstats, callgrind, folded"):
        CpuProfiler(format="svg")
