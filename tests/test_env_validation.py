"""Every bad environment value through ``configure()``: no exception, one warning, a sane value.

One table: each row sets variables (as text, or as raw bytes that are not
UTF-8 through ``os.environb``), calls ``configure()`` and checks that

- it returns an agent that is started (a trigger registered afterwards is
  installed at once);
- exactly one warning was logged, naming the variable (none for a value that
  is empty or only whitespace: the OpenTelemetry specification reads an empty
  value as unset; none either for a valid value that used to break things);
- a secret never appears in any log record;
- the value in effect is the default, or the nearest bound of the range.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Type, Union

import pytest
from helpers import ManualTrigger, RecordingExporter, WallClockProfiler
from support import child_env, make_profile, wait_for

from otel_profiling import ProfilingAgent, configure
from otel_profiling.exporters import FsspecProfileExporter, InMemoryProfileExporter
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler, HeapProfiler
from otel_profiling.triggers import (
    CpuThresholdTrigger,
    HttpTrigger,
    IntervalTrigger,
    MemoryThresholdTrigger,
    SignalTrigger,
    Trigger,
)
from otel_profiling.triggers.safe_signals import check_trigger_signal

SECRET = "s3cr3t-never-shown-0123456789"
CORES = os.cpu_count() or 1
Value = Union[str, bytes]


@dataclass
class Case:
    """Variables to set, what to look at in the configured agent, and what it must be."""

    env: Dict[str, Value]
    observe: Callable[[ProfilingAgent], object]
    expected: object
    warnings: int = 1
    base: Dict[str, str] = field(default_factory=dict)  # valid settings the row needs

    @property
    def variable(self) -> str:
        """The variable the warning names: the first one the row sets."""
        return next(iter(self.env))


def processor(agent: ProfilingAgent) -> BatchProfileProcessor:
    [only] = agent.processors
    assert isinstance(only, BatchProfileProcessor)
    return only


def exporter(agent: ProfilingAgent) -> FsspecProfileExporter:
    found = processor(agent).exporter
    assert isinstance(found, FsspecProfileExporter)
    return found


def trigger(kind: Type[Trigger]) -> Callable[[ProfilingAgent], Optional[Trigger]]:
    def find(agent: ProfilingAgent) -> Optional[Trigger]:
        found = [t for t in agent.triggers if type(t) is kind]
        assert len(found) <= 1
        return found[0] if found else None

    return find


def attribute(kind: Type[Trigger], name: str) -> Callable[[ProfilingAgent], object]:
    def read(agent: ProfilingAgent) -> object:
        found = trigger(kind)(agent)
        assert found is not None, f"no {kind.__name__}"
        return getattr(found, name)

    return read


def bpp(name: str) -> Callable[[ProfilingAgent], object]:
    return lambda agent: getattr(processor(agent), name)


def signal_in_use(agent: ProfilingAgent) -> object:
    found = trigger(SignalTrigger)(agent)
    return None if found is None else found.signum  # type: ignore[attr-defined]


def agent_profilers(agent: ProfilingAgent) -> list:
    """The profilers configured from the environment (those of the default signal trigger)."""
    signal_trigger = trigger(SignalTrigger)(agent)
    assert signal_trigger is not None and signal_trigger.target is not None
    return list(signal_trigger.target.profilers)


def heap_frames(agent: ProfilingAgent) -> object:
    [heap] = [p for p in agent_profilers(agent) if isinstance(p, HeapProfiler)]
    return heap.frames


def spooled_under_a_long_name(agent: ProfilingAgent) -> object:
    """The spool of a 300-character service still works: an entry is written and read back."""
    spool = processor(agent).spool
    assert spool is not None
    path = spool.put(make_profile(b"kept"))
    assert path is not None
    assert all(len(part) <= 255 for part in path.parts)
    return [p.data for p in spool.profiles()]


HTTP = {"OTEL_PROFILING_HTTP_PORT": "0"}
INTERVAL = {"OTEL_PROFILING_INTERVAL": "60"}
MEMORY = {"OTEL_PROFILING_MEMORY_THRESHOLD": "64GiB"}
CPU = {"OTEL_PROFILING_CPU_THRESHOLD": "90"}
NOT_UTF8 = b"\xff\xfe\xc3("

CASES: Dict[str, Case] = {
    # the batch processor
    "queue smaller than the batch": Case(
        {"OTEL_BPP_MAX_QUEUE_SIZE": "5"},
        lambda a: (processor(a).max_queue_size, processor(a).max_export_batch_size),
        (5, 5),
    ),
    "batch larger than the queue": Case(
        {"OTEL_BPP_MAX_EXPORT_BATCH_SIZE": "300"}, bpp("max_export_batch_size"), 256
    ),
    "batch of 0": Case({"OTEL_BPP_MAX_EXPORT_BATCH_SIZE": "0"}, bpp("max_export_batch_size"), 1),
    "schedule delay 0 spins": Case(
        {"OTEL_BPP_SCHEDULE_DELAY": "0"}, bpp("schedule_delay_millis"), 100
    ),
    "schedule delay inf": Case(
        {"OTEL_BPP_SCHEDULE_DELAY": "inf"}, bpp("schedule_delay_millis"), 1000
    ),
    "schedule delay huge": Case(
        {"OTEL_BPP_SCHEDULE_DELAY": "99999999999999999999"},
        bpp("schedule_delay_millis"),
        3_600_000,
    ),
    "queue size of 400 digits": Case(
        {"OTEL_BPP_MAX_QUEUE_SIZE": "9" * 400}, bpp("max_queue_size"), int("9" * 400), warnings=0
    ),
    "schedule delay of 400 digits": Case(
        {"OTEL_BPP_SCHEDULE_DELAY": "9" * 400}, bpp("schedule_delay_millis"), 3_600_000
    ),
    "schedule delay 1e10 is not an integer": Case(
        {"OTEL_BPP_SCHEDULE_DELAY": "1e10"}, bpp("schedule_delay_millis"), 1000
    ),
    "schedule delay in unicode digits": Case(
        {"OTEL_BPP_SCHEDULE_DELAY": "٢٥٠"}, bpp("schedule_delay_millis"), 1000
    ),
    "schedule delay inner whitespace": Case(
        {"OTEL_BPP_SCHEDULE_DELAY": "2 50"}, bpp("schedule_delay_millis"), 1000
    ),
    "schedule delay empty": Case(
        {"OTEL_BPP_SCHEDULE_DELAY": ""}, bpp("schedule_delay_millis"), 1000, warnings=0
    ),
    "schedule delay only whitespace": Case(
        {"OTEL_BPP_SCHEDULE_DELAY": " \t\n"}, bpp("schedule_delay_millis"), 1000, warnings=0
    ),
    "schedule delay padded": Case(
        {"OTEL_BPP_SCHEDULE_DELAY": "\t250 \n"}, bpp("schedule_delay_millis"), 250, warnings=0
    ),
    "export timeout 0": Case({"OTEL_BPP_EXPORT_TIMEOUT": "0"}, bpp("export_timeout_millis"), 1000),
    "export timeout 1 ms": Case(
        {"OTEL_BPP_EXPORT_TIMEOUT": "1"}, bpp("export_timeout_millis"), 1000
    ),
    "export timeout -1": Case(
        {"OTEL_BPP_EXPORT_TIMEOUT": "-1"}, bpp("export_timeout_millis"), 30_000
    ),
    "export timeout nan": Case(
        {"OTEL_BPP_EXPORT_TIMEOUT": "nan"}, bpp("export_timeout_millis"), 30_000
    ),
    "export timeout huge": Case(
        {"OTEL_BPP_EXPORT_TIMEOUT": "86400000"}, bpp("export_timeout_millis"), 600_000
    ),
    "queue bytes not UTF-8": Case(
        {"OTEL_BPP_MAX_QUEUE_BYTES": NOT_UTF8}, bpp("max_queue_bytes"), 256 * 1024 * 1024
    ),
    # the fsspec exporter and the spool
    "fsspec timeout 1 ms": Case(
        {"OTEL_EXPORTER_FSSPEC_PROFILES_TIMEOUT": "1"}, lambda a: exporter(a).timeout_millis, 1000
    ),
    "fsspec timeout 0": Case(
        {"OTEL_EXPORTER_FSSPEC_PROFILES_TIMEOUT": "0"}, lambda a: exporter(a).timeout_millis, 1000
    ),
    "fsspec timeout a day": Case(
        {"OTEL_EXPORTER_FSSPEC_PROFILES_TIMEOUT": "86400000"},
        lambda a: exporter(a).timeout_millis,
        600_000,
    ),
    "URL not UTF-8": Case(
        {"OTEL_EXPORTER_FSSPEC_PROFILES_URL": b"file:///tmp/profiles-" + NOT_UTF8},
        lambda a: exporter(a).url,
        "file://./profiles",
    ),
    "storage options not UTF-8, secret inside": Case(
        {
            "OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS": b'{"secret": "'
            + SECRET.encode()
            + NOT_UTF8
            + b'"}'
        },
        lambda a: exporter(a)._options.get("secret"),
        None,
    ),
    "spool cap negative": Case(
        {"OTEL_PROFILING_SPOOL_MAX_BYTES": "-5"},
        lambda a: processor(a).spool.max_bytes,  # type: ignore[union-attr]
        512 * 1024 * 1024,
    ),
    "300-character service name": Case(
        {"OTEL_SERVICE_NAME": "s" * 300}, spooled_under_a_long_name, [b"kept"], warnings=0
    ),
    # the signal trigger
    **{
        f"signal {name}": Case({"OTEL_PROFILING_SIGNAL": name}, signal_in_use, signal.SIGUSR2)
        for name in (
            "SIGKILL",
            "SIGSTOP",
            "SIGTERM",
            "TERM",
            "15",
            "SIGINT",
            "SIGQUIT",
            "SIGHUP",
            "SIGCHLD",
            "SIGTSTP",
            "SIGTTIN",
            "SIGPIPE",
            "SIGSEGV",
            "SIGABRT",
            "SIGWINCH",
            "SIGALRM",
            "SIGPROF",
            "SIGNOPE",
            "USR²",
        )
    },
    "signal SIGUSR1 is allowed": Case(
        {"OTEL_PROFILING_SIGNAL": "usr1"}, signal_in_use, signal.SIGUSR1, warnings=0
    ),
    "signal not UTF-8": Case({"OTEL_PROFILING_SIGNAL": NOT_UTF8}, signal_in_use, signal.SIGUSR2),
    # the HTTP trigger
    "port in superscript digits": Case(
        {"OTEL_PROFILING_HTTP_PORT": "²"}, trigger(HttpTrigger), None
    ),
    "port in fullwidth digits": Case(
        {"OTEL_PROFILING_HTTP_PORT": "６０６０"}, trigger(HttpTrigger), None
    ),
    "port too large": Case({"OTEL_PROFILING_HTTP_PORT": "99999"}, trigger(HttpTrigger), None),
    "port negative": Case({"OTEL_PROFILING_HTTP_PORT": "-1"}, trigger(HttpTrigger), None),
    "port with a space": Case({"OTEL_PROFILING_HTTP_PORT": "60 60"}, trigger(HttpTrigger), None),
    "port empty": Case({"OTEL_PROFILING_HTTP_PORT": ""}, trigger(HttpTrigger), None, warnings=0),
    "max seconds inf": Case(
        {"OTEL_PROFILING_HTTP_MAX_SECONDS": "inf"},
        attribute(HttpTrigger, "max_seconds"),
        300.0,
        base=HTTP,
    ),
    "max seconds 1e10": Case(
        {"OTEL_PROFILING_HTTP_MAX_SECONDS": "1e10"},
        attribute(HttpTrigger, "max_seconds"),
        3600.0,
        base=HTTP,
    ),
    "max seconds 0": Case(
        {"OTEL_PROFILING_HTTP_MAX_SECONDS": "0"},
        attribute(HttpTrigger, "max_seconds"),
        1.0,
        base=HTTP,
    ),
    "short token on a public address": Case(
        {"OTEL_PROFILING_HTTP_TOKEN": SECRET[:15], "OTEL_PROFILING_HTTP_HOST": "0.0.0.0"},
        trigger(HttpTrigger),
        None,
        base=HTTP,
    ),
    "token not UTF-8": Case(
        {"OTEL_PROFILING_HTTP_TOKEN": SECRET.encode() + NOT_UTF8, "OTEL_PROFILING_HTTP_HOST": "::"},
        trigger(HttpTrigger),
        None,
        base=HTTP,
    ),
    # windows
    "interval inf": Case({"OTEL_PROFILING_INTERVAL": "inf"}, trigger(IntervalTrigger), None),
    "interval negative": Case({"OTEL_PROFILING_INTERVAL": "-1"}, trigger(IntervalTrigger), None),
    "interval 0 is off": Case(
        {"OTEL_PROFILING_INTERVAL": "0"}, trigger(IntervalTrigger), None, warnings=0
    ),
    "interval 1e10": Case(
        {"OTEL_PROFILING_INTERVAL": "1e10"}, attribute(IntervalTrigger, "every"), 86400.0
    ),
    "interval 10 ms": Case(
        {"OTEL_PROFILING_INTERVAL": "0.01"}, attribute(IntervalTrigger, "every"), 1.0
    ),
    "duration 1e10": Case(
        {"OTEL_PROFILING_DURATION": "1e10"},
        attribute(IntervalTrigger, "duration"),
        60.0,  # the interval: the nearest bound
        base=INTERVAL,
    ),
    "duration over an hour, within a long interval": Case(
        {"OTEL_PROFILING_DURATION": "7200"},
        attribute(IntervalTrigger, "duration"),
        3600.0,
        base={"OTEL_PROFILING_INTERVAL": "86400"},
    ),
    "duration 0": Case(
        {"OTEL_PROFILING_DURATION": "0"}, attribute(IntervalTrigger, "duration"), 0.1, base=INTERVAL
    ),
    "duration nan": Case(
        {"OTEL_PROFILING_DURATION": "nan"},
        attribute(IntervalTrigger, "duration"),
        10.0,
        base=INTERVAL,
    ),
    "jitter inf": Case(
        {"OTEL_PROFILING_JITTER": "inf"}, attribute(IntervalTrigger, "jitter"), 60.0, base=INTERVAL
    ),
    # thresholds
    "memory threshold half a byte": Case(
        {"OTEL_PROFILING_MEMORY_THRESHOLD": "0.5"}, trigger(MemoryThresholdTrigger), None
    ),
    "memory threshold in unicode digits": Case(
        {"OTEL_PROFILING_MEMORY_THRESHOLD": "٣GB"}, trigger(MemoryThresholdTrigger), None
    ),
    "memory threshold 1e10": Case(
        {"OTEL_PROFILING_MEMORY_THRESHOLD": "1e10"}, trigger(MemoryThresholdTrigger), None
    ),
    "memory cooldown 0": Case(
        {"OTEL_PROFILING_MEMORY_COOLDOWN": "0"},
        attribute(MemoryThresholdTrigger, "cooldown"),
        1.0,
        base=MEMORY,
    ),
    "memory cooldown inf": Case(
        {"OTEL_PROFILING_MEMORY_COOLDOWN": "inf"},
        attribute(MemoryThresholdTrigger, "cooldown"),
        300.0,
        base=MEMORY,
    ),
    "threshold duration 1e10": Case(
        {"OTEL_PROFILING_THRESHOLD_DURATION": "1e10"},
        attribute(MemoryThresholdTrigger, "duration"),
        3600.0,
        base=MEMORY,
    ),
    "cpu threshold nan": Case(
        {"OTEL_PROFILING_CPU_THRESHOLD": "nan"}, trigger(CpuThresholdTrigger), None
    ),
    "cpu threshold negative": Case(
        {"OTEL_PROFILING_CPU_THRESHOLD": "-3"}, trigger(CpuThresholdTrigger), None
    ),
    "cpu threshold beyond every core": Case(
        {"OTEL_PROFILING_CPU_THRESHOLD": "1e10"},
        attribute(CpuThresholdTrigger, "percent"),
        100.0 * CORES,
    ),
    "cpu for seconds inf": Case(
        {"OTEL_PROFILING_CPU_FOR_SECONDS": "inf"},
        attribute(CpuThresholdTrigger, "for_seconds"),
        30.0,
        base=CPU,
    ),
    "cpu cooldown a year": Case(
        {"OTEL_PROFILING_CPU_COOLDOWN": "31536000"},
        attribute(CpuThresholdTrigger, "cooldown"),
        86400.0,
        base=CPU,
    ),
    # profilers and switches
    "heap frames 0": Case({"OTEL_PROFILING_HEAP_FRAMES": "0"}, heap_frames, 1),
    "heap frames too deep": Case({"OTEL_PROFILING_HEAP_FRAMES": "100000"}, heap_frames, 65535),
    "profilers not UTF-8": Case(
        {"OTEL_PROFILING_PROFILERS": NOT_UTF8},
        lambda a: sorted(type(p).__name__ for p in agent_profilers(a)),
        ["CpuProfiler"],
    ),
    "sdk disabled maybe": Case(
        {"OTEL_SDK_DISABLED": "maybe"}, lambda a: isinstance(a, ProfilingAgent), True
    ),
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No inherited OTEL_* setting; profiles would go under the test's directory."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "FSSPEC_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_PROFILING_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_URL", f"file://{tmp_path}/profiles")
    monkeypatch.setenv("OTEL_PROFILING_PROFILERS", "cpu,heap")
    yield


def set_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: Value) -> None:
    if isinstance(value, bytes):  # not UTF-8: set as the raw bytes a deployment would
        monkeypatch.setitem(os.environb, name.encode(), value)  # type: ignore[attr-defined]
    else:
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_bad_value_warns_once_and_configure_starts_anyway(
    environment: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: Case,
) -> None:
    for name, value in {**case.base, **case.env}.items():
        set_variable(monkeypatch, name, value)
    sigterm_handler = signal.getsignal(signal.SIGTERM)
    with caplog.at_level(logging.WARNING, logger="otel_profiling"):
        agent = configure()
    assert agent is not None
    probe = ManualTrigger()
    agent.register(probe, CpuProfiler())
    assert probe.target is not None, "configure() returned an agent that is not started"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    messages = [r.getMessage() for r in warnings]
    assert len(warnings) == case.warnings, messages
    assert all(case.variable in message for message in messages), messages
    assert all(SECRET[:15] not in record.getMessage() for record in caplog.records)
    assert case.observe(agent) == case.expected
    # never taken over by a trigger, nor by the SIGTERM flush unless the app asks for it
    assert signal.getsignal(signal.SIGTERM) == sigterm_handler


def test_configured_from_another_thread_the_signal_trigger_is_off(
    environment: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Handlers install only from the main thread: one warning, the rest still starts."""
    result: Dict[str, object] = {}

    def run() -> None:
        try:
            result["agent"] = configure()
        except BaseException as exc:  # the test fails below, naming it
            result["error"] = exc

    with caplog.at_level(logging.WARNING, logger="otel_profiling"):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(60)
    assert "error" not in result, result
    agent = result["agent"]
    assert isinstance(agent, ProfilingAgent)
    assert trigger(SignalTrigger)(agent) is None
    [message] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "OTEL_PROFILING_SIGNAL" in message and "main thread" in message


# -- the same rules for constructor arguments: a clear ValueError with the fix --------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SignalTrigger(signal.SIGTERM), "SIGTERM asks the process to end"),
        (lambda: SignalTrigger("SIGINT"), "SIGINT asks the process to end"),
        (lambda: SignalTrigger("SIGCHLD"), "SIGCHLD reports ended child processes"),
        (lambda: SignalTrigger("SIGWINCH"), "gunicorn stops its workers"),
        (lambda: SignalTrigger("SIGKILL"), "SIGKILL cannot be caught"),
        (lambda: IntervalTrigger(every=math.inf, duration=1), "every=inf"),
        (lambda: IntervalTrigger(every=10, duration=1e10), "duration=1e\\+10|duration=10000000000"),
        (lambda: IntervalTrigger(every=1e10, duration=1), "every="),
        (lambda: HttpTrigger(max_seconds=math.inf), "max_seconds=inf"),
        (lambda: HttpTrigger(max_seconds=math.nan), "max_seconds=nan"),
        (lambda: HttpTrigger(max_window_seconds=1e10), "max_window_seconds="),
        (lambda: MemoryThresholdTrigger(2**40, cooldown=math.inf), "cooldown=inf"),
        (lambda: CpuThresholdTrigger(90, duration=math.inf), "duration=inf"),
        (lambda: CpuThresholdTrigger(math.nan), "percent=nan"),
        (lambda: BatchProfileProcessor(RecordingExporter(), schedule_delay_millis=0), "delay"),
        (lambda: BatchProfileProcessor(RecordingExporter(), schedule_delay_millis=0.5), "delay"),
        (
            lambda: BatchProfileProcessor(RecordingExporter(), export_timeout_millis=math.inf),
            "timeout",
        ),
        (lambda: FsspecProfileExporter("memory://x", timeout_millis=math.inf), "timeout_millis"),
        (lambda: FsspecProfileExporter("memory://x", timeout_millis=0), "timeout_millis"),
    ],
)
def test_constructors_refuse_the_same_values(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        build()
    text = str(refused.value)
    assert "use " in text or "must be" in text, text  # says what is accepted


def test_refused_signal_names_the_fix() -> None:
    with pytest.raises(ValueError) as refused:
        SignalTrigger(signal.SIGTERM)
    assert "SIGUSR2, SIGUSR1 or a real-time signal SIGRTMIN+n" in str(refused.value)


@pytest.mark.skipif(not hasattr(signal, "SIGRTMIN"), reason="no real-time signals on this OS")
def test_the_cpu_profilers_timer_signal_is_refused_as_a_trigger() -> None:
    """SIGRTMIN+6 carries the CPU profiler's main-thread samples: as a trigger, each sample
    would toggle profiling, so it is refused like the signals that other parts use."""
    with pytest.raises(ValueError) as refused:
        SignalTrigger("SIGRTMIN+6")
    assert "SIGRTMIN+6 is the CPU profiler's timer signal" in str(refused.value)
    assert "use SIGUSR2, SIGUSR1 or a real-time signal SIGRTMIN+n" in str(refused.value)


@pytest.mark.skipif(not hasattr(signal, "SIGRTMIN"), reason="no real-time signals on this OS")
def test_a_real_time_signal_triggers_profiling() -> None:
    """Real-time signals are allowed: SIGRTMIN, really sent to this process, toggles a profile."""
    for allowed in (signal.SIGRTMIN + 3, signal.SIGRTMAX, signal.SIGUSR1, signal.SIGUSR2):
        check_trigger_signal(allowed)
    exporter = InMemoryProfileExporter()
    signum = signal.SIGRTMIN
    agent = ProfilingAgent()
    agent.register(SignalTrigger(signum), WallClockProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    try:
        os.kill(os.getpid(), signum)
        assert wait_for(lambda: agent.active_profiles, timeout=30)
        time.sleep(0.2)
        os.kill(os.getpid(), signum)
        assert wait_for(exporter.get_finished_profiles, timeout=30)
    finally:
        agent.shutdown()
    [profile] = exporter.get_finished_profiles()
    assert int(profile.data) >= 0.2 * 1e9  # the wall clock ran between the two signals


CHILD = """
import signal, sys, time
# Python's own SIGINT handling, as in a program run from a terminal (a background job, as
# a CI runner may start this suite, inherits SIGINT ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)
from otel_profiling import configure
agent = configure()
installed = [t.signum.name for t in agent.triggers if hasattr(t, "signum")]
print("ready", ",".join(installed), flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_refused_signal_still_ends_the_process(name: str, tmp_path: Path) -> None:
    """With OTEL_PROFILING_SIGNAL=SIGTERM the container can still be stopped: SIGTERM ends it."""
    env = child_env(
        OTEL_PROFILING_SIGNAL=name,
        OTEL_PROFILES_EXPORTER="none",
        OTEL_PROFILING_SPOOL_DIR=str(tmp_path / "spool"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line == ["ready", "SIGUSR2"], (line, proc.stderr.read() if proc.stderr else "")
        proc.send_signal(getattr(signal, name))
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -getattr(signal, name)  # ended by the signal's default action
    assert proc.stderr is not None
    assert "OTEL_PROFILING_SIGNAL: expected SIGUSR2" in proc.stderr.read()


class _RefusesToInstall(Trigger):
    """A trigger whose installation fails, as a signal trigger does off the main thread."""

    name = "refuses"

    def install(self, target: object) -> None:  # type: ignore[override]
        raise RuntimeError("cannot install here")


def test_an_agent_that_cannot_start_is_logged_and_configure_returns_none(
    environment: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_PROFILING_SIGNAL", "none")
    monkeypatch.setattr(
        "otel_profiling.config.triggers_from_env",
        lambda: [IntervalTrigger(60, 1), _RefusesToInstall()],
    )
    threads = set(threading.enumerate())
    with caplog.at_level(logging.ERROR, logger="otel_profiling"):
        assert configure() is None
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "could not start" in record.getMessage() and record.exc_info is not None
    # what had started (the interval trigger's thread) was stopped again
    assert wait_for(lambda: set(threading.enumerate()) <= threads, timeout=30)
