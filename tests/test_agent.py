"""ProfilingAgent: registration, lifecycle rules, shutdown and exit behaviour."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import (
    HangingShutdownExporter,
    InterruptedExporter,
    ManualTrigger,
    RecordingExporter,
    WallClockProfiler,
)
from support import child_env, make_profile
from viewers import load_cpuprofile

from otel_profiling import ProfileStatus, ProfilingAgent, _exit
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers import CpuProfiler, Profiler
from otel_profiling.triggers import SignalTrigger


class BrokenProfiler(WallClockProfiler):
    def stop(self) -> bytes:
        super().stop()
        raise RuntimeError("encoder exploded")


def agent_with_memory() -> tuple:
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    return agent, exporter


def test_several_profilers_per_trigger_all_fire() -> None:
    agent, exporter = agent_with_memory()
    trigger = ManualTrigger()
    agent.register(trigger, CpuProfiler(), WallClockProfiler())
    with agent:
        started = trigger.fire()
        assert len(started) == 2
        time.sleep(0.05)
        ended = trigger.fire()
    assert len(ended) == 2
    finished = exporter.get_finished_profiles()
    assert len(finished) == 2
    assert {p.status for p in finished} == {ProfileStatus.OK}
    for profile in finished:
        assert profile.attributes["profiling.trigger"] == "manual"
        assert profile.attributes["profiling.reason"] == "test fired"
        assert profile.attributes["process.pid"] == os.getpid()
        assert profile.duration is not None and profile.duration.total_seconds() > 0


def test_second_cpu_profile_is_refused_not_crashed(caplog: pytest.LogCaptureFixture) -> None:
    agent, exporter = agent_with_memory()
    first, second = ManualTrigger(), ManualTrigger()
    agent.register(first, CpuProfiler(engine="yappi"))
    agent.register(second, CpuProfiler(engine="yappi"))
    with agent, caplog.at_level(logging.WARNING):
        assert len(first.fire()) == 1
        assert second.fire() == []  # yappi is process-global: refused
        assert agent.refused_starts == 1
        first.fire()
    assert "already running" in caplog.text
    assert len(exporter.get_finished_profiles()) == 1


def test_failed_profiler_yields_an_error_profile(caplog: pytest.LogCaptureFixture) -> None:
    """The profile records the failure; it is counted and logged, never exported as empty."""
    agent, exporter = agent_with_memory()
    (processor,) = agent.processors
    trigger = ManualTrigger()
    agent.register(trigger, BrokenProfiler())
    with agent, caplog.at_level(logging.WARNING):
        trigger.fire()
        (profile,) = trigger.fire()
    assert profile.status is ProfileStatus.ERROR
    assert "encoder exploded" in (profile.error or "")
    assert profile.data == b""
    assert exporter.get_finished_profiles() == ()
    assert (processor.error_profiles, processor.exported_profiles) == (1, 0)
    assert any(
        "error_profiles" in r.getMessage() and "encoder exploded" in r.getMessage()
        for r in caplog.records
    )


def test_profile_is_read_only_once_ended() -> None:
    agent, exporter = agent_with_memory()
    trigger = ManualTrigger()
    agent.register(trigger, WallClockProfiler())
    with agent:
        (running,) = trigger.fire()
        running.set_attribute("while.running", 1)
        trigger.fire()
    running.set_attribute("after.end", 2)
    assert running.attributes["while.running"] == 1
    assert "after.end" not in running.attributes
    with pytest.raises(TypeError):
        running.attributes["x"] = 1  # type: ignore[index]


def test_shutdown_ends_and_exports_in_flight_profiles() -> None:
    exporter = RecordingExporter()
    agent = ProfilingAgent()
    trigger = ManualTrigger()
    agent.register(trigger, WallClockProfiler())
    agent.start(exporter=exporter)  # OpenProfiling's shape: wrapped in a BatchProfileProcessor
    trigger.fire()
    agent.shutdown()
    assert len(exporter.exported) == 1
    assert exporter.exported[0].attributes["profiling.trigger"] == "manual"
    assert exporter.shut_down


def test_register_rejects_non_profilers() -> None:
    agent = ProfilingAgent()
    with pytest.raises(ValueError, match="at least one profiler"):
        agent.register(ManualTrigger())
    with pytest.raises(TypeError, match="not a Profiler"):
        agent.register(ManualTrigger(), object())  # type: ignore[arg-type]


def test_resource_comes_from_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    agent = ProfilingAgent()
    assert agent.resource.attributes["service.name"] == "billing"
    assert agent.resource.attributes["deployment.environment"] == "prod"
    assert agent.instrumentation_scope.name == "otel_profiling"


def test_signal_trigger_needs_the_main_thread() -> None:
    agent = ProfilingAgent()
    agent.register(SignalTrigger("USR1"), WallClockProfiler())
    errors = []

    def start() -> None:
        try:
            agent.start()
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    assert errors and "main thread" in errors[0]


def test_signal_names_are_validated() -> None:
    assert SignalTrigger("usr2").signum.name == "SIGUSR2"
    assert SignalTrigger(12).signum.name == "SIGUSR2"
    with pytest.raises(ValueError, match="Unknown signal"):
        SignalTrigger("SIGNOPE")
    with pytest.raises(ValueError, match="cannot be caught"):
        SignalTrigger("SIGKILL")


def test_signal_handler_does_no_work_itself() -> None:
    """The handler only queues: the profiler runs on the trigger's own thread."""
    seen = []

    class ThreadRecordingProfiler(WallClockProfiler):
        def start(self) -> None:
            seen.append(threading.current_thread().name)
            super().start()

    agent, _ = agent_with_memory()
    agent.register(SignalTrigger("SIGUSR1"), ThreadRecordingProfiler())
    with agent:
        os.kill(os.getpid(), __import__("signal").SIGUSR1)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen == ["otel-profiling-signal-SIGUSR1"]


def test_a_signal_delivered_just_before_shutdown_still_gives_its_profile() -> None:
    """The handler queued the request, the trigger's thread had not started the window yet:
    shutdown honours it (the window ends at once and is exported), it is not refused."""
    agent, exporter = agent_with_memory()
    agent.register(SignalTrigger("SIGUSR1"), WallClockProfiler())
    agent.start()
    signal.raise_signal(signal.SIGUSR1)  # runs the handler now, on this thread
    agent.shutdown()  # at once: the trigger's thread has not had the GIL since
    profiles = exporter.get_finished_profiles()
    assert len(profiles) == 1
    assert profiles[0].attributes["profiling.reason"] == "received SIGUSR1"
    assert agent.refused_starts == 0


EXIT_APP = """
import sys
from otel_profiling import ProfilingAgent
from otel_profiling.exporters import FsspecProfileExporter
from otel_profiling.processors import BatchProfileProcessor
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import Trigger

class Once(Trigger):
    name = "once"

def spin():  # 0.3 s: long enough to be sampled
    import time
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass

trigger = Once()
agent = ProfilingAgent()
agent.register(trigger, CpuProfiler())
agent.add_profile_processor(BatchProfileProcessor(FsspecProfileExporter(sys.argv[1]),
                                                  schedule_delay_millis=600000))
agent.start()
trigger.target.start()
spin()
trigger.target.stop()
print("exiting without shutdown", flush=True)
"""


def test_interpreter_exit_flushes_the_queue(tmp_path: Path) -> None:
    """A profile still queued (60 s schedule delay) is exported by the exit hook."""
    out = tmp_path / "exit"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", EXIT_APP, f"file://{out}"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    files = os.listdir(out)
    assert len(files) == 1 and files[0].startswith("CPU_PROFILE-")
    profile = load_cpuprofile((out / files[0]).read_bytes())
    assert "spin" in {n["callFrame"]["functionName"] for n in profile["nodes"]}


def test_profiler_base_validates_format() -> None:
    with pytest.raises(ValueError, match="choose one of cpuprofile"):
        CpuProfiler(format="nope")
    assert CpuProfiler().format.extension == "cpuprofile"
    assert issubclass(CpuProfiler, Profiler) and CpuProfiler.kind is ProfileKind.CPU_PROFILE


def test_default_resource_names_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    assert ProfilingAgent().resource.attributes["host.name"] == socket.gethostname()
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "host.name=web-7")
    assert ProfilingAgent().resource.attributes["host.name"] == "web-7"


class MeasuringProfiler(WallClockProfiler):
    """Knows only after stop how long its capture really was, and says so."""

    def __init__(self, fail_hook: bool = False) -> None:
        super().__init__()
        self.fail_hook = fail_hook
        self.last_ns = 0

    def stop(self) -> bytes:
        data = super().stop()
        self.last_ns = int(data)
        return data

    def end_attributes(self) -> dict:
        if self.fail_hook:
            raise RuntimeError("hook exploded")
        return {"capture.ns": self.last_ns, "profiling.idle": self.last_ns < 1}


def test_end_attributes_are_added_when_the_profiler_stops() -> None:
    agent, exporter = agent_with_memory()
    trigger = ManualTrigger()
    profiler = MeasuringProfiler()
    agent.register(trigger, profiler)
    with agent:
        (started,) = trigger.start()
        assert "capture.ns" not in started.attributes  # unknown until stop
        time.sleep(0.05)
        trigger.stop()
    (profile,) = exporter.get_finished_profiles()
    assert profile.attributes["capture.ns"] == int(profile.data) == profiler.last_ns > 0
    assert profile.attributes["profiling.idle"] is False


def test_a_failing_end_attributes_hook_never_loses_the_profile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent, exporter = agent_with_memory()
    trigger = ManualTrigger()
    agent.register(trigger, MeasuringProfiler(fail_hook=True))
    with agent, caplog.at_level(logging.ERROR):
        trigger.start()
        trigger.stop()
    (profile,) = exporter.get_finished_profiles()
    assert profile.status is ProfileStatus.OK and int(profile.data) > 0
    assert "hook exploded" in caplog.text


@pytest.mark.parametrize("make", ["agent", "span processor"])
def test_agents_and_span_processors_that_are_dropped_leave_no_memory_behind(make: str) -> None:
    """Each keeps its state fresh in forked children; dropping one must drop that too.
    Measured with tracemalloc: what the package still holds after 2000 were made and
    dropped (before, each left a fork callback of about 300 bytes behind for good)."""
    import gc
    import tracemalloc

    from otel_profiling.tracing import ProfilingSpanProcessor

    def build() -> object:
        agent = ProfilingAgent()
        return agent if make == "agent" else ProfilingSpanProcessor(agent)

    for _ in range(20):  # first-use caches (the default resource, imports) filled up front
        build()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(2000):
            build()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    kept = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if "otel_profiling" in stat.traceback[0].filename and stat.size_diff > 0
    )
    assert kept < 20_000, f"{kept} bytes kept by otel_profiling after 2000 were dropped"


def test_agent_shutdown_is_bounded_when_an_exporters_shutdown_hangs() -> None:
    exporter = HangingShutdownExporter()
    agent = ProfilingAgent()
    agent.add_profile_processor(BatchProfileProcessor(exporter, spool=False))
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    try:
        started = time.monotonic()
        agent.shutdown(timeout_millis=500)
        # one 0.5 s bound for both processors, generous for a busy machine (the hang is 60 s)
        assert time.monotonic() - started < 5.0
        assert exporter.shutting_down.is_set()
    finally:
        exporter.release.set()


HUNG_EXIT_APP = """
import threading
from otel_profiling import ProfilingAgent
from otel_profiling.exporters.base import ProfileExporter, ProfileExportResult
from otel_profiling.processors import BatchProfileProcessor
from support import make_profile

class NeverClosing(ProfileExporter):
    def export(self, profiles):
        print("exported", len(profiles), flush=True)
        return ProfileExportResult.SUCCESS

    def shutdown(self):
        threading.Event().wait()  # forever

agent = ProfilingAgent(exit_timeout_millis=1_000)
processor = BatchProfileProcessor(NeverClosing(), schedule_delay_millis=600000, spool=False)
agent.add_profile_processor(processor)
agent.start()
processor.on_end(make_profile())  # queued, the worker waits: the exit hook shuts down
print("exiting without shutdown", flush=True)
"""


def test_an_exporter_whose_shutdown_hangs_does_not_hold_up_the_exit() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", HUNG_EXIT_APP],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["exiting without shutdown", "exported 1"]
    assert "NeverClosing.shutdown() did not return within 1.0 s" in result.stderr
    # a 1 s exit bound, plus the interpreter's start and imports (~1 s), generous for a busy machine
    assert elapsed < 20


def test_ctrl_c_in_one_processors_shutdown_still_shuts_the_others_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # at exit no thread may start: each processor exports on this thread, where Ctrl-C lands
    monkeypatch.setattr(_exit, "_exiting", True)
    agent = ProfilingAgent()
    first = BatchProfileProcessor(InterruptedExporter(), schedule_delay_millis=60_000, spool=False)
    second_exporter = RecordingExporter()
    second = BatchProfileProcessor(second_exporter, schedule_delay_millis=60_000, spool=False)
    agent.add_profile_processor(first)
    agent.add_profile_processor(second)
    profile = make_profile()
    first.on_end(profile)
    second.on_end(profile)
    with pytest.raises(KeyboardInterrupt):  # not swallowed
        agent.shutdown(timeout_millis=5_000)
    assert first.failed_profiles == 1  # the interrupted export, counted (spooling is off)
    assert second.exported_profiles == 1 and second_exporter.shut_down  # still shut down
