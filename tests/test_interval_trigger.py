"""IntervalTrigger: windows of DURATION every EVERY, jittered start, no overlap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
from support import APPS, child_env, wait_for
from viewers import cpuprofile_function_names, load_cpuprofile

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import IntervalTrigger, SignalTrigger


def test_real_process_exports_three_windows_in_four_seconds(tmp_path: Path) -> None:
    out = tmp_path / "profiles"
    proc = subprocess.run(
        [sys.executable, str(APPS / "interval_app.py"), f"file://{out}", "1", "0.3", "4"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    files = sorted(os.listdir(out))
    assert len(files) >= 3, (files, proc.stderr)
    assert sorted(r["key"] for r in records) == files
    records.sort(key=lambda r: r["start"])
    for earlier, later in pairwise(records):
        assert earlier["end"] <= later["start"], "windows overlap"
    # the full windows (not the one cut short by shutdown) last about DURATION
    full = [r for r in records if r["attributes"]["profiling.stop_reason"] == "window elapsed"]
    assert len(full) >= 3
    assert all(0.29 <= r["end"] - r["start"] < 1.0 for r in full)
    for record in records:
        assert record["attributes"]["profiling.trigger"] == "interval"
        assert record["attributes"]["profiling.reason"] == "0.3 s window every 1 s"
    names = cpuprofile_function_names(load_cpuprofile((out / files[0]).read_bytes()))
    assert "interval_workload_leaf" in names


def _agent(trigger: IntervalTrigger) -> tuple:
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.register(trigger, CpuProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    return agent, exporter


def test_first_window_waits_at_most_the_jitter() -> None:
    agent, exporter = _agent(IntervalTrigger(every=30, duration=0.2, jitter=0.5))
    started = time.time()
    agent.start()
    try:
        assert wait_for(exporter.get_finished_profiles, timeout=10)
    finally:
        agent.shutdown()
    (profile,) = exporter.get_finished_profiles()
    assert profile.start_time.timestamp() - started <= 0.5 + 0.5  # jitter plus scheduling slack
    assert profile.attributes["profiling.stop_reason"] == "window elapsed"


def test_jittered_first_windows_differ_across_a_fleet() -> None:
    """Ten triggers started together do not all open their first window at the same time."""
    triggers = [IntervalTrigger(every=60, duration=0.05, jitter=1.0) for _ in range(10)]
    agents = [_agent(t) for t in triggers]
    # one CPU profile at a time per process: give each its own agent, and look at the times
    # each first window was attempted through refused or exported profiles
    for agent, _ in agents:
        agent.start()
    try:
        time.sleep(2.5)  # jitter (1 s) plus generous scheduling slack
    finally:
        for agent, _ in agents:
            agent.shutdown()
    starts = sorted(
        p.start_time.timestamp() for _, exporter in agents for p in exporter.get_finished_profiles()
    )
    refused = sum(agent.refused_starts for agent, _ in agents)
    assert len(starts) + refused == 10  # every trigger opened its first window within the jitter
    assert len(starts) >= 2 and starts[-1] - starts[0] > 0.05  # spread, not in lockstep


def test_shutdown_ends_the_window_in_progress_and_exports_it() -> None:
    agent, exporter = _agent(IntervalTrigger(every=60, duration=30, jitter=0))
    agent.start()
    assert wait_for(lambda: agent.active_profiles, timeout=10)
    begun = time.monotonic()
    agent.shutdown()
    assert time.monotonic() - begun < 10
    (profile,) = exporter.get_finished_profiles()
    assert profile.attributes["profiling.stop_reason"] == "agent shutdown"
    assert profile.attributes["profiling.trigger"] == "interval"
    load_cpuprofile(profile.data)


def test_busy_profiler_skips_the_window_and_counts_it() -> None:
    profiler = CpuProfiler()
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.register(IntervalTrigger(every=0.3, duration=0.1, jitter=0), profiler)
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    with agent.profile(profiler, name="long"):  # holds the profiler while windows come due
        agent.start()
        assert wait_for(lambda: agent.refused_starts >= 2, timeout=10)
    agent.shutdown()
    names = [p.name for p in exporter.get_finished_profiles()]
    assert names[0] == "long"
    assert all(n == "CPU_PROFILE" for n in names[1:])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 1, "duration": 2}, "longer than every"),
        ({"every": 0, "duration": 0}, "every=0"),
        ({"every": -5, "duration": 1}, "every=-5"),
        ({"every": 10, "duration": float("nan")}, "duration=nan"),
        ({"every": 10, "duration": 1, "jitter": -1}, "jitter=-1"),
        ({"every": "often", "duration": 1}, "not a number"),
    ],
)
def test_invalid_settings_name_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IntervalTrigger(**kwargs)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_runs_its_own_windows() -> None:
    agent, exporter = _agent(IntervalTrigger(every=0.5, duration=0.1, jitter=0.2))
    agent.start()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: its own schedule, its own profiles
        try:
            exporter.clear()
            ok = wait_for(lambda: len(exporter.get_finished_profiles()) >= 2, timeout=20)
            pids = {p.attributes["process.pid"] for p in exporter.get_finished_profiles()}
            os.write(write, b"ok" if ok and pids == {os.getpid()} else b"no")
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 2)
        os.waitpid(pid, 0)
    finally:
        os.close(read)
        agent.shutdown()
    assert answer == b"ok"


def test_window_end_never_stops_a_profile_another_trigger_started() -> None:
    """The signal ends the window's profile and starts its own; the window's end leaves it."""
    profiler = CpuProfiler()
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.register(IntervalTrigger(every=60, duration=1.0, jitter=0), profiler)
    agent.register(SignalTrigger(signal.SIGUSR2), profiler)
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    try:
        assert wait_for(lambda: agent.active_profiles, timeout=10)
        os.kill(os.getpid(), signal.SIGUSR2)  # toggle: ends the window's profile
        assert wait_for(lambda: len(exporter.get_finished_profiles()) == 1, timeout=10)
        os.kill(os.getpid(), signal.SIGUSR2)  # toggle: a profile of the signal's own
        assert wait_for(lambda: agent.active_profiles, timeout=10)
        time.sleep(1.2)  # the window's end has passed
        (running,) = agent.active_profiles
        assert running.trigger == "signal:SIGUSR2"
    finally:
        agent.shutdown()
    first, second = exporter.get_finished_profiles()
    assert first.trigger == "interval" and second.trigger == "signal:SIGUSR2"
    assert second.attributes["profiling.stop_reason"] == "agent shutdown"
