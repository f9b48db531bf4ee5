"""CpuProfiler: what the .cpuprofile says about known workloads, read as DevTools reads it."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest
from viewers import cpuprofile_self_times, cpuprofile_timeline, load_cpuprofile

from otel_profiling.profilers import CpuProfiler, ProfilerBusyError
from otel_profiling.profilers.pace import MAX_STRETCH
from otel_profiling.profilers.sampling_engine import DEFAULT_INTERVAL, JITTER


def cpu_bound_hot(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def cheap_helper() -> int:
    return 1


SLEPT: List[float] = []


def sleepy() -> None:
    began = time.perf_counter()
    time.sleep(0.3)
    SLEPT.append(time.perf_counter() - began)


def workload() -> None:
    for _ in range(20):
        cheap_helper()
    cpu_bound_hot(3_000_000)  # long enough (~0.3 s) for 100 samples a second to see it well


def capture(profiler: CpuProfiler, func) -> dict:  # type: ignore[no-untyped-def]
    profiler.start()
    try:
        func()
    finally:
        data = profiler.stop()
    return load_cpuprofile(data)


def main_thread_self_times(profile: dict) -> dict:
    """Self time per function in the main thread's subtree (µs), from the samples."""
    by_id = {n["id"]: n for n in profile["nodes"]}
    (main,) = [
        c
        for c in profile["nodes"][0]["children"]
        if by_id[c]["callFrame"]["functionName"].startswith("MainThread (thread ")
    ]
    inside, stack = set(), [main]
    while stack:
        inside.add(stack[-1])
        stack.extend(by_id[stack.pop()]["children"])
    times: dict = {}
    for node, _, duration in cpuprofile_timeline(profile):
        if node in inside:
            name = by_id[node]["callFrame"]["functionName"]
            times[name] = times.get(name, 0.0) + duration
    return times


def test_cpu_bound_function_dominates_self_time() -> None:
    profile = capture(CpuProfiler(), workload)
    times = main_thread_self_times(profile)  # other threads of the process wait elsewhere
    total = sum(times.values())
    assert times["cpu_bound_hot"] > 0.8 * total, times
    assert times["cpu_bound_hot"] > 20 * times.get("cheap_helper", 0)


def test_call_tree_nests_callers_above_callees() -> None:
    profile = capture(CpuProfiler(), workload)
    nodes = {n["id"]: n for n in profile["nodes"]}
    parent = {c: n["id"] for n in profile["nodes"] for c in n["children"]}
    (hot,) = [n for n in profile["nodes"] if n["callFrame"]["functionName"] == "cpu_bound_hot"]
    assert nodes[parent[hot["id"]]]["callFrame"]["functionName"] == "workload"
    assert hot["callFrame"]["url"].endswith("test_cpu_profiler.py")
    # lineNumber is 0-based: the def line of cpu_bound_hot
    assert hot["callFrame"]["lineNumber"] == cpu_bound_hot.__code__.co_firstlineno - 1


def test_wall_clock_counts_sleep_cpu_clock_does_not() -> None:
    def mixed() -> None:
        sleepy()
        cpu_bound_hot(2_000_000)  # ~0.2 s: long enough to be sampled

    SLEPT.clear()
    wall = cpuprofile_self_times(capture(CpuProfiler(clock="wall"), mixed))
    cpu = cpuprofile_self_times(capture(CpuProfiler(clock="cpu"), mixed))
    # The sleep ends after 0.3 s of stillness, when the sampler's step has lengthened to
    # MAX_STRETCH jittered intervals: its end is placed within half that step, so at most
    # that much early. (It can be placed later by more: the sample due once cpu_bound_hot
    # runs waits for the GIL, and the first sample counts from the window's start.)
    early = MAX_STRETCH * DEFAULT_INTERVAL * (1 + JITTER) / 2
    # time.sleep is a builtin child of sleepy; count sleepy's subtree via its self + sleep
    assert wall.get("sleep", 0) + wall.get("sleepy", 0) >= (SLEPT[0] - early) * 1e6, SLEPT
    assert cpu.get("sleep", 0) + cpu.get("sleepy", 0) < 50_000
    assert cpu["cpu_bound_hot"] > 0


def test_each_thread_is_its_own_named_subtree() -> None:
    """Each thread's subtree holds the time it lived (wall clock; ±25 %, both threads
    compete for the GIL on a loaded machine)."""
    lived = {}

    def spin(seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            cpu_bound_hot(2_000)

    def in_thread() -> None:
        began = time.perf_counter()
        spin(0.5)
        lived["worker-42"] = time.perf_counter() - began

    def run() -> None:
        thread = threading.Thread(target=in_thread, name="worker-42")
        thread.start()
        spin(0.5)
        thread.join()

    profile = capture(CpuProfiler(), run)
    root = profile["nodes"][0]
    by_id = {n["id"]: n for n in profile["nodes"]}
    threads = {by_id[c]["callFrame"]["functionName"]: c for c in root["children"]}
    assert any(name.startswith("MainThread (thread ") for name in threads), threads
    (worker,) = [node for name, node in threads.items() if name.startswith("worker-42 (thread ")]
    subtree, todo = set(), [worker]
    while todo:
        node = todo.pop()
        subtree.add(node)
        todo.extend(by_id[node]["children"])
    total = sum(d for node, _, d in cpuprofile_timeline(profile) if node in subtree) / 1e6
    assert abs(total - lived["worker-42"]) <= 0.25 * lived["worker-42"], (total, lived)


def test_functions_running_before_start_are_kept() -> None:
    """A loop already running when profiling starts still appears above its callees."""
    profiler = CpuProfiler()
    started = threading.Event()
    stop = threading.Event()

    def long_running_loop() -> None:
        started.set()
        while not stop.is_set():
            cpu_bound_hot(2_000)

    thread = threading.Thread(target=long_running_loop, name="server-loop")
    thread.start()
    started.wait(5)
    profiler.start()
    time.sleep(0.3)
    data = profiler.stop()
    stop.set()
    thread.join()
    profile = load_cpuprofile(data)
    by_id = {n["id"]: n for n in profile["nodes"]}
    parent = {c: n["id"] for n in profile["nodes"] for c in n["children"]}
    hot = [n for n in profile["nodes"] if n["callFrame"]["functionName"] == "cpu_bound_hot"]
    assert hot
    callers = {by_id[parent[n["id"]]]["callFrame"]["functionName"] for n in hot}
    assert {caller.rsplit(".", 1)[-1] for caller in callers} == {"long_running_loop"}, callers


def test_only_one_yappi_cpu_profile_at_a_time() -> None:
    first, second = CpuProfiler(engine="yappi"), CpuProfiler(engine="yappi")
    first.start()
    try:
        with pytest.raises(ProfilerBusyError, match="already running"):
            second.start()
        with pytest.raises(ProfilerBusyError):
            first.start()
    finally:
        first.stop()
    second.start()  # free again
    second.stop()


def test_invalid_clock_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'wall' or 'cpu'"):
        CpuProfiler(clock="gpu")
