"""The yappi engine against ground truth: programs that time themselves and count their calls.

Profiled through the public API with ``engine="yappi"`` and read back as the
viewers read them (``.cpuprofile`` with DevTools' rules, pstats with
``pstats.Stats``, callgrind with gprof2dot). Tolerances are stated where
they are used; timing comparisons use ±15 % of what the program measured.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pstats
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from support import APPS, ROOT, wait_for
from viewers import load_callgrind, load_cpuprofile

from otel_profiling import ProfilingAgent, _threads
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profile import Profile
from otel_profiling.profilers import CpuProfiler

PACKAGE_DIR = str(ROOT / "otel_profiling")
TOLERANCE = 0.15

Path_ = Tuple[str, ...]


def node_totals(profile: Dict[str, Any]) -> Dict[Path_, Tuple[float, float]]:
    """(total, self) seconds per node, keyed by the function names from the thread down."""
    by_id = {node["id"]: node for node in profile["nodes"]}
    stamps = []
    now = profile["startTime"]
    for delta in profile["timeDeltas"]:
        now += delta
        stamps.append(now)
    stamps.append(profile["endTime"])
    own: Dict[int, float] = {}
    for index, sample in enumerate(profile["samples"]):
        own[sample] = own.get(sample, 0.0) + (stamps[index + 1] - stamps[index]) / 1e6
    result: Dict[Path_, Tuple[float, float]] = {}

    def visit(node_id: int, path: Path_) -> float:
        node = by_id[node_id]
        path = path + (node["callFrame"]["functionName"],)
        total = own.get(node_id, 0.0) + sum(visit(child, path) for child in node["children"])
        assert path not in result, f"two nodes for one function at one place: {path}"
        result[path] = (total, own.get(node_id, 0.0))
        return total

    root = profile["nodes"][0]
    for child in root["children"]:
        visit(child, ())
    return result


def ending(nodes: Dict[Path_, Tuple[float, float]], *suffix: str) -> List[Path_]:
    return [path for path in nodes if path[-len(suffix) :] == suffix]


def total_of(nodes: Dict[Path_, Tuple[float, float]], *suffix: str) -> float:
    return sum(nodes[path][0] for path in ending(nodes, *suffix))


def thread_total(nodes: Dict[Path_, Tuple[float, float]], prefix: str) -> float:
    """A thread's own stack: its total without the ``(coroutines)`` beside it."""
    (thread,) = [path for path in nodes if len(path) == 1 and path[0].startswith(prefix)]
    coroutines = nodes.get(thread + ("(coroutines)",), (0.0, 0.0))[0]
    return nodes[thread][0] - coroutines


def assert_close(found: float, expected: float, what: str) -> None:
    assert abs(found - expected) <= TOLERANCE * expected, (
        f"{what}: profile says {found:.4f} s, the program measured {expected:.4f} s"
    )


def assert_no_library_frame(profile: Dict[str, Any]) -> None:
    for node in profile["nodes"]:
        frame = node["callFrame"]
        assert not frame["url"].startswith(PACKAGE_DIR), f"library frame {frame}"
        assert not frame["functionName"].startswith("otel-profiling-"), "library thread"


@pytest.fixture
def agent() -> Iterator[Tuple[ProfilingAgent, InMemoryProfileExporter]]:
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    try:
        yield agent, exporter
    finally:
        agent.shutdown()


# -- the program with a shared callee, through SIGUSR2 ----------------------------------------


@pytest.fixture(scope="module")
def shared_callee_run(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Dict[str, Any], Any]:
    """tests/apps/shared_callee_app.py profiled for 2 s: (its report, the .cpuprofile)."""
    output = tmp_path_factory.mktemp("shared") / "profile.cpuprofile"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(APPS)])}
    done = subprocess.run(
        [sys.executable, str(APPS / "shared_callee_app.py"), str(output), "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report, load_cpuprofile(output.read_bytes())


def test_shared_callee_time_stays_on_the_paths_that_ran(
    shared_callee_run: Tuple[Dict[str, Any], Any],
) -> None:
    report, profile = shared_callee_run
    measured, nodes = report["measured"], node_totals(profile)
    # slow_leaf only ever runs under handler_b, cheap_leaf only under handler_a
    assert not ending(nodes, "handler_a", "shared", "slow_leaf")
    assert not ending(nodes, "handler_b", "shared", "cheap_leaf")
    assert ending(nodes, "handler_a", "shared", "cheap_leaf")
    assert_close(
        total_of(nodes, "handler_b", "shared", "slow_leaf"), measured["slow_leaf"], "slow_leaf"
    )
    assert_close(total_of(nodes, "slow_leaf"), measured["slow_leaf"], "slow_leaf everywhere")
    # shared's split: under handler_b, what the program timed around shared(True); under
    # handler_a, within what it timed around its loop of 50 calls (0.02 s in all: yappi's own
    # cost per call and any preemption just outside the program's timer are handler_a's)
    assert_close(
        total_of(nodes, "handler_b", "shared"), measured["shared_from_b"], "handler_b > shared"
    )
    under_a = total_of(nodes, "handler_a", "shared")
    assert 0 < under_a <= measured["shared_from_a"]
    assert total_of(nodes, "handler_a") >= (1 - TOLERANCE) * measured["shared_from_a"]


def test_shared_callee_profile_says_its_tree_is_estimated(
    shared_callee_run: Tuple[Dict[str, Any], Any],
) -> None:
    report, _ = shared_callee_run
    attributes = report["attributes"]
    assert attributes["profiling.cpu.engine"] == "yappi"
    # shared has two callers and two callees: which callee ran under which caller is chosen
    assert attributes["profiling.cpu.tree_estimated"] is True
    assert attributes["profiling.cpu.tree_estimated_nodes"] >= 1
    # ...but yappi's numbers bound what could move: at most cheap_leaf's time, twice
    assert 0 < attributes["profiling.cpu.tree_estimated_seconds"] < 0.1


def test_signal_window_is_the_window_and_the_signal_path_is_not_in_it(
    shared_callee_run: Tuple[Dict[str, Any], Any],
) -> None:
    report, profile = shared_callee_run
    measured, nodes = report["measured"], node_totals(profile)
    assert_no_library_frame(profile)
    # the window: from the start signal being handled to the stop signal, on the busy thread
    assert_close(thread_total(nodes, "MainThread"), measured["window"], "MainThread's window")
    sent = total_of(nodes, "kill") + total_of(nodes, "getpid")
    assert sent <= measured["stop_signal"] * (1 + TOLERANCE) + 1e-4, "kill/getpid got extra time"
    assert not any("_handler" in path[-1] for path in nodes), "the signal handler is the library's"


# -- exact counts in the call-graph formats ---------------------------------------------------

ROUNDS = 40
calls: Dict[str, int] = {}


def count(name: str) -> None:
    calls[name] = calls.get(name, 0) + 1


def recurse(depth: int) -> int:
    count("recurse")
    return 0 if depth == 0 else recurse(depth - 1) + 1


def spin_leaf() -> None:
    count("spin_leaf")
    end = time.perf_counter() + 0.0005
    count("perf_counter")
    while time.perf_counter() < end:
        count("perf_counter")
    count("perf_counter")


def quick_leaf() -> int:
    count("quick_leaf")
    return 1


def shared(slow: bool) -> None:
    count("shared")
    if slow:
        spin_leaf()
    else:
        quick_leaf()


def handler_a() -> None:
    count("handler_a")
    for _ in range(50):
        shared(False)


def handler_b() -> None:
    count("handler_b")
    shared(True)
    recurse(6)


def rounds() -> None:
    for _ in range(ROUNDS):
        handler_a()
        handler_b()


def profile_rounds(agent: ProfilingAgent, fmt: str) -> Profile:
    """``rounds()`` profiled while a library thread reads the clock too (it must not count)."""
    calls.clear()
    done = threading.Event()

    def library_work() -> None:
        while not done.is_set():
            time.perf_counter()
            time.sleep(0.001)

    thread = _threads.start_daemon(library_work, "test-clock-reader")
    try:
        with agent.profile(CpuProfiler(engine="yappi", format=fmt)) as handle:
            rounds()
    finally:
        done.set()
        thread.join(10)
    assert handle.profile is not None
    return handle.profile


def test_pstats_call_counts_are_the_programs(
    agent: Tuple[ProfilingAgent, InMemoryProfileExporter], tmp_path: Path
) -> None:
    profile = profile_rounds(agent[0], "pstats")
    path = tmp_path / "cpu.pstats"
    path.write_bytes(profile.data)
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    by_name = {function[2]: value for function, value in stats.items()}
    for name in ("handler_a", "handler_b", "shared", "quick_leaf", "spin_leaf"):
        assert by_name[name][:2] == (calls[name], calls[name]), name
    # recursion: pstats holds (primitive calls, all calls)
    assert by_name["recurse"][:2] == (ROUNDS, calls["recurse"])
    # every perf_counter call the program made, none from the library's threads or frames
    # (other threads of the test process may call it too: only its callers are pinned)
    clock_callers = {caller: value[1] for caller, value in by_name["perf_counter"][4].items()}
    from_spin = [n for caller, n in clock_callers.items() if caller[2] == "spin_leaf"]
    assert from_spin == [calls["perf_counter"]]
    assert not [c for c in clock_callers if c[0].startswith(PACKAGE_DIR)], "library callers"
    assert not [c for c in clock_callers if c[2] == "library_work"], "library thread"
    callers = {caller[2]: value[0] for caller, value in by_name["shared"][4].items()}
    assert callers == {"handler_a": 50 * ROUNDS, "handler_b": ROUNDS}
    assert {caller[2] for caller in by_name["recurse"][4]} == {"handler_b", "recurse"}
    assert not [key for key in stats if key[0].startswith(PACKAGE_DIR)], "library functions"
    assert "rounds" in by_name and by_name["rounds"][3] >= by_name["spin_leaf"][3]


def test_callgrind_call_counts_are_the_programs(
    agent: Tuple[ProfilingAgent, InMemoryProfileExporter],
) -> None:
    functions = load_callgrind(profile_rounds(agent[0], "callgrind").data)
    assert functions["shared"][0] == calls["shared"]
    assert functions["handler_a"][2]["shared"][0] == 50 * ROUNDS
    assert functions["handler_b"][2]["shared"][0] == ROUNDS
    assert functions["shared"][2]["spin_leaf"][0] == calls["spin_leaf"]
    assert functions["shared"][2]["quick_leaf"][0] == calls["quick_leaf"]
    assert functions["recurse"][2]["recurse"][0] == calls["recurse"] - ROUNDS
    assert not [name for name in functions if "otel_profiling" in name]


# -- self time, a whole window, a tree that needs no estimate --------------------------------


def hot(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def workload(seconds: float, timings: Dict[str, float]) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        began = time.perf_counter()
        hot(20_000)
        timings["hot"] = timings.get("hot", 0.0) + time.perf_counter() - began


def test_self_time_on_the_right_function_and_a_window_on_its_thread(
    agent: Tuple[ProfilingAgent, InMemoryProfileExporter],
) -> None:
    timings: Dict[str, float] = {}
    with agent[0].profile(CpuProfiler(engine="yappi", builtins=False)) as handle:
        began = time.perf_counter()
        workload(2.0, timings)
        timings["window"] = time.perf_counter() - began
    assert handle.profile is not None
    profile = load_cpuprofile(handle.profile.data)
    nodes = node_totals(profile)
    (hot_path,) = ending(nodes, "workload", "hot")
    assert_close(nodes[hot_path][1], timings["hot"], "hot's own time")
    assert_close(thread_total(nodes, "MainThread"), timings["window"], "the window")
    assert_no_library_frame(profile)
    # one caller per function, one frame that can have called workload: nothing to guess
    threads = [path[0] for path in nodes if len(path) == 1]
    assert handle.profile.attributes["profiling.cpu.tree_estimated"] is False, threads
    assert handle.profile.attributes["profiling.cpu.tree_estimated_seconds"] == 0


def test_a_decorated_function_keeps_its_work_in_its_own_profile_and_in_another(
    agent: Tuple[ProfilingAgent, InMemoryProfileExporter],
) -> None:
    timings: List[float] = []
    block = agent[0].profile(CpuProfiler(engine="yappi", builtins=False), name="decorated")

    @block
    def decorated() -> None:
        began = time.perf_counter()
        hot(200_000)
        timings.append(time.perf_counter() - began)

    decorated()
    with agent[0].profile(CpuProfiler(engine="yappi", builtins=False)) as handle:
        decorated()  # its own profile is refused (one at a time): it shows in this one
    assert handle.profile is not None and block.profile is not None
    for profile, timed in zip((block.profile, handle.profile), timings, strict=True):
        cpuprofile = load_cpuprofile(profile.data)
        nodes = node_totals(cpuprofile)
        (path,) = ending(nodes, "decorated", "hot")  # the wrapper is skipped, not its function
        assert_close(nodes[path][0], timed, f"hot in {profile.name}")
        assert_no_library_frame(cpuprofile)


# -- frames already running when profiling starts --------------------------------------------


class Worker:
    """A loop already running when profiling starts; it records when each helper call ran."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.helper_calls: List[Tuple[float, float]] = []

    def helper(self) -> None:
        began = time.perf_counter()
        end = began + 0.004
        while time.perf_counter() < end:
            pass
        self.helper_calls.append((began, time.perf_counter()))

    def loop(self) -> None:
        while not self.stop.is_set():
            self.helper()

    def helper_time(self, start: float, stop: float) -> float:
        """Helper time inside [start, stop]."""
        return sum(max(0.0, min(end, stop) - max(began, start)) for began, end in self.helper_calls)


def test_a_loop_running_at_start_gets_only_its_time_since_start() -> None:
    worker = Worker()
    thread = threading.Thread(target=worker.loop, name="already-running")
    thread.start()
    try:
        time.sleep(0.5)  # the loop runs before, during and after the profile
        profiler = CpuProfiler(engine="yappi")
        profiler.start()
        start = time.perf_counter()
        time.sleep(1.0)
        stop = time.perf_counter()
        data = profiler.stop()
        time.sleep(0.2)
    finally:
        worker.stop.set()
        thread.join(10)
    profile = load_cpuprofile(data)
    nodes = node_totals(profile)
    (loop,) = ending(nodes, "Worker.loop")  # named as yappi names methods, one node
    assert loop[0].startswith("already-running (thread ")
    assert_close(nodes[loop][0], stop - start, "Worker.loop since start")
    assert_close(
        total_of(nodes, "Worker.loop", "Worker.helper"),
        worker.helper_time(start, stop),
        "helper under the running loop",
    )
    assert len(ending(nodes, "Worker.helper")) == 1, "helper hangs only under the loop"
    assert_no_library_frame(profile)


class Payload:
    """An object held only by one local variable of a running method."""


class Holder:
    """A method already running when profiling starts, which then deletes a local."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.go_on = threading.Event()
        self.checked = threading.Event()
        self.stop = threading.Event()
        self.payload_freed_by_del: Optional[bool] = None

    def run(self) -> None:
        payload = Payload()
        alive = weakref.ref(payload)
        self.running.set()
        self.go_on.wait(30)  # profiling starts meanwhile: this frame runs on
        del payload  # its last reference: freed now, unless a copy of the locals holds it
        self.payload_freed_by_del = alive() is None
        self.checked.set()
        while not self.stop.is_set():
            pass


def test_a_method_running_in_another_thread_is_named_without_touching_its_locals() -> None:
    holder = Holder()
    thread = threading.Thread(target=holder.run, name="holder")
    thread.start()
    try:
        assert holder.running.wait(10)
        profiler = CpuProfiler(engine="yappi")
        profiler.start()
        holder.go_on.set()
        assert holder.checked.wait(10)
        time.sleep(0.1)
        data = profiler.stop()
    finally:
        holder.go_on.set()
        holder.stop.set()
        thread.join(10)
    # reading f_locals of another thread's frame (Python <= 3.12) copies its locals into a
    # dict the frame keeps: ``payload`` would outlive its ``del`` until the method returns
    assert holder.payload_freed_by_del is True
    nodes = node_totals(load_cpuprofile(data))
    (run,) = ending(nodes, "Holder.run")  # named as yappi names methods, one node
    assert run[0].startswith("holder (thread ")


def derive_key(iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", b"secret", b"salt", iterations)  # C, without the GIL


def test_threads_that_ran_are_in_the_window_and_threads_that_waited_are_not() -> None:
    began = time.perf_counter()
    derive_key(20_000)
    per_iteration = (time.perf_counter() - began) / 20_000
    # 4 s of work as calibrated: the 1 s window stays inside it even if the load eases
    busy = threading.Thread(target=derive_key, args=(int(4.0 / per_iteration),), name="in-c")
    waiting = threading.Thread(target=time.sleep, args=(4.0,), name="waiting")
    busy.start()
    waiting.start()
    try:
        time.sleep(0.2)
        profiler = CpuProfiler(engine="yappi")
        profiler.start()
        start = time.perf_counter()
        time.sleep(0.8)
        stop = time.perf_counter()
        data = profiler.stop()
    finally:
        busy.join(30)
        waiting.join(30)
    nodes = node_totals(load_cpuprofile(data))
    threads = {
        path[0].split(" (thread")[0]: total for path, (total, _) in nodes.items() if len(path) == 1
    }
    # busy in C all along (no Python call to see): its window, on the frame that called C
    assert_close(threads["in-c"], stop - start, "the thread busy in C")
    assert ending(nodes, "derive_key")
    # asleep all along, it did not run: it is not in the profile
    assert "waiting" not in threads


# -- asyncio ----------------------------------------------------------------------------------


async def wait_100ms() -> None:
    await asyncio.sleep(0.1)


async def awaiting_main() -> float:
    began = time.perf_counter()
    for _ in range(8):
        await wait_100ms()
    return time.perf_counter() - began


def test_a_coroutine_awaiting_8_times_100ms_shows_its_wall_time(
    agent: Tuple[ProfilingAgent, InMemoryProfileExporter],
) -> None:
    with agent[0].profile(CpuProfiler(engine="yappi")) as handle:
        awaited = asyncio.run(awaiting_main())
    assert handle.profile is not None
    profile = load_cpuprofile(handle.profile.data)
    nodes = node_totals(profile)
    assert awaited >= 0.8
    (path,) = ending(nodes, "(coroutines)", "awaiting_main", "wait_100ms")
    assert_close(nodes[path][0], awaited, "8 awaits of 100 ms")
    # the event loop's own stack is beside the coroutines and holds the window
    assert_close(thread_total(nodes, "MainThread"), awaited, "the loop thread's window")
    assert_no_library_frame(profile)


def test_an_event_loop_running_at_start_appears_once(
    agent: Tuple[ProfilingAgent, InMemoryProfileExporter],
) -> None:
    profiles: List[Optional[Profile]] = []

    async def main() -> float:
        await asyncio.sleep(0.1)  # the loop is running before the profile starts
        with agent[0].profile(CpuProfiler(engine="yappi")) as handle:
            began = time.perf_counter()
            for _ in range(8):
                await wait_100ms()
            window = time.perf_counter() - began
        profiles.append(handle.profile)
        return window

    window = asyncio.run(main())
    assert profiles[0] is not None
    profile = load_cpuprofile(profiles[0].data)
    nodes = node_totals(profile)  # fails on two nodes for one function at one place
    run_once = [path for path in nodes if path[-1].endswith("._run_once")]
    assert len(run_once) == 1, run_once
    assert_close(thread_total(nodes, "MainThread"), window, "the loop thread's window")
    assert_close(total_of(nodes, "(coroutines)", "main", "wait_100ms"), 0.8, "the awaits")


# -- by_span is the sampling engine's -------------------------------------------------------


def test_by_span_is_refused_with_the_yappi_engine() -> None:
    with pytest.raises(ValueError, match="engine='sampling'"):
        CpuProfiler(engine="yappi", by_span=True)


# -- attributes known at stop ------------------------------------------------------------------


def test_attributes_known_at_stop_reach_the_profile_and_a_failing_hook_costs_no_payload(
    agent: Tuple[ProfilingAgent, InMemoryProfileExporter],
) -> None:
    from helpers import WallClockProfiler

    class Reporting(WallClockProfiler):
        def end_attributes(self) -> dict:
            return {"profiling.test.seen_at_stop": True}

    class Failing(WallClockProfiler):
        def end_attributes(self) -> dict:
            raise RuntimeError("cannot tell")

    with agent[0].profile(Reporting()) as reported:
        pass
    with agent[0].profile(Failing()) as failed:
        pass
    assert reported.profile is not None and failed.profile is not None
    assert reported.profile.attributes["profiling.test.seen_at_stop"] is True
    assert int(failed.profile.data) > 0, "the payload is kept"
    assert failed.profile.status.value == "OK"


def test_idle_windows_are_valid_profiles_marked_idle(agent) -> None:  # type: ignore[no-untyped-def]
    """Ground truth: a window where the main thread only sleeps used no CPU; a window
    where the main thread spins used the CPU all along. An interval window opened while
    the main thread is already inside one long sleep sees no Python call at all: it is
    one ``(idle)`` node holding the window, as the sampling engine has it."""
    from otel_profiling.triggers import IntervalTrigger

    agent_, exporter = agent
    for clock in ("wall", "cpu"):
        with agent_.profile(CpuProfiler(engine="yappi", clock=clock)) as handle:
            time.sleep(1.0)
        assert handle.profile is not None
        assert handle.profile.attributes["profiling.idle"] is True, clock
        load_cpuprofile(handle.profile.data)
        with agent_.profile(CpuProfiler(engine="yappi", clock=clock, format="pstats")) as handle:
            hot_for(0.5)
        assert handle.profile is not None
        assert handle.profile.attributes["profiling.idle"] is False, clock
    exporter.clear()
    agent_.register(IntervalTrigger(every=60, duration=1.0, jitter=0), CpuProfiler(engine="yappi"))
    time.sleep(3.0)  # one call: the window opens and closes inside it
    assert wait_for(exporter.get_finished_profiles, timeout=30)
    window = exporter.get_finished_profiles()[0]
    assert window.attributes["profiling.idle"] is True
    nodes = node_totals(load_cpuprofile(window.data))
    assert list(nodes) == [("(idle)",)], nodes
    duration = (window.end_time - window.start_time).total_seconds()
    assert_close(nodes[("(idle)",)][0], duration, "the idle window's length")


def test_an_idle_window_stays_idle_in_a_process_with_many_threads(agent) -> None:  # type: ignore[no-untyped-def]
    """Ground truth: 300 threads wait on an event and the main thread sleeps, so the
    application uses no CPU. Reading 300 stacks and CPU clocks at the start is the
    library's work, not the application's: the window is still idle (it was not when the
    start's cost, about 30 ms here, counted against the 1 % mark)."""
    release = threading.Event()
    waiting = [threading.Thread(target=release.wait) for _ in range(300)]
    for thread in waiting:
        thread.start()
    try:
        for clock in ("wall", "cpu"):
            with agent[0].profile(CpuProfiler(engine="yappi", clock=clock)) as handle:
                time.sleep(1.0)
            assert handle.profile is not None
            assert handle.profile.attributes["profiling.idle"] is True, clock
    finally:
        release.set()
        for thread in waiting:
            thread.join()


def hot_for(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
