"""Triggers chosen by OTEL_PROFILING_* variables, and configure() serving HTTP from them."""

from __future__ import annotations

import logging
import threading
import urllib.request

import pytest
from support import free_port
from viewers import load_cpuprofile

from otel_profiling import ProfilingAgent, configure
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import (
    CpuThresholdTrigger,
    HttpTrigger,
    IntervalTrigger,
    MemoryThresholdTrigger,
    SignalTrigger,
)
from otel_profiling.triggers.env import parse_size, triggers_from_env
from otel_profiling.triggers.startup import StartupTrigger

VARIABLES = [
    "OTEL_PROFILING_SIGNAL",
    "OTEL_PROFILING_INTERVAL",
    "OTEL_PROFILING_DURATION",
    "OTEL_PROFILING_JITTER",
    "OTEL_PROFILING_HTTP_PORT",
    "OTEL_PROFILING_HTTP_HOST",
    "OTEL_PROFILING_HTTP_TOKEN",
    "OTEL_PROFILING_HTTP_MAX_SECONDS",
    "OTEL_PROFILING_MEMORY_THRESHOLD",
    "OTEL_PROFILING_MEMORY_COOLDOWN",
    "OTEL_PROFILING_CPU_THRESHOLD",
    "OTEL_PROFILING_CPU_FOR_SECONDS",
    "OTEL_PROFILING_CPU_COOLDOWN",
    "OTEL_PROFILING_THRESHOLD_DURATION",
    "OTEL_PROFILING_AT_START",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def by_type(triggers: list) -> dict:
    return {type(t): t for t in triggers}


def test_default_is_the_signal_only() -> None:
    (trigger,) = triggers_from_env()
    assert isinstance(trigger, SignalTrigger)


def test_every_trigger_from_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PROFILING_SIGNAL", "none")
    monkeypatch.setenv("OTEL_PROFILING_INTERVAL", "60")
    monkeypatch.setenv("OTEL_PROFILING_DURATION", "10")
    monkeypatch.setenv("OTEL_PROFILING_JITTER", "5")
    monkeypatch.setenv("OTEL_PROFILING_HTTP_PORT", "6060")
    monkeypatch.setenv("OTEL_PROFILING_HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("OTEL_PROFILING_HTTP_TOKEN", "s3cret-value-of-20ch")
    monkeypatch.setenv("OTEL_PROFILING_HTTP_MAX_SECONDS", "120")
    monkeypatch.setenv("OTEL_PROFILING_MEMORY_THRESHOLD", "512MiB")
    monkeypatch.setenv("OTEL_PROFILING_MEMORY_COOLDOWN", "600")
    monkeypatch.setenv("OTEL_PROFILING_CPU_THRESHOLD", "90")
    monkeypatch.setenv("OTEL_PROFILING_CPU_FOR_SECONDS", "45")
    monkeypatch.setenv("OTEL_PROFILING_CPU_COOLDOWN", "900")
    monkeypatch.setenv("OTEL_PROFILING_THRESHOLD_DURATION", "20")
    triggers = by_type(triggers_from_env())
    assert set(triggers) == {
        IntervalTrigger,
        HttpTrigger,
        MemoryThresholdTrigger,
        CpuThresholdTrigger,
    }
    interval = triggers[IntervalTrigger]
    assert (interval.every, interval.duration, interval.jitter) == (60, 10, 5)
    http = triggers[HttpTrigger]
    assert (http.host, http.port, http.max_seconds) == ("0.0.0.0", 6060, 120)
    assert http.authorized("Bearer s3cret-value-of-20ch") and not http.authorized(None)
    assert "s3cret-value-of-20ch" not in repr(http)
    memory = triggers[MemoryThresholdTrigger]
    assert (memory.rss_bytes, memory.cooldown, memory.duration) == (512 * 1024**2, 600, 20)
    assert {k.value for k in memory.kinds} == {"HEAP_PROFILE", "HEAP_SNAPSHOT"}
    cpu = triggers[CpuThresholdTrigger]
    assert (cpu.percent, cpu.for_seconds, cpu.cooldown, cpu.duration) == (90, 45, 900, 20)
    assert [k.value for k in cpu.kinds] == ["CPU_PROFILE"]


def test_interval_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PROFILING_INTERVAL", "5")
    interval = by_type(triggers_from_env())[IntervalTrigger]
    assert (interval.every, interval.duration, interval.jitter) == (5, 5, 5)
    monkeypatch.setenv("OTEL_PROFILING_INTERVAL", "120")
    interval = by_type(triggers_from_env())[IntervalTrigger]
    assert (interval.every, interval.duration, interval.jitter) == (120, 10, 120)


@pytest.mark.parametrize(
    ("settings", "absent", "warning"),
    [
        ({"OTEL_PROFILING_DURATION": "10"}, IntervalTrigger, "OTEL_PROFILING_INTERVAL is not"),
        ({"OTEL_PROFILING_INTERVAL": "soon"}, IntervalTrigger, "OTEL_PROFILING_INTERVAL"),
        ({"OTEL_PROFILING_HTTP_PORT": "http"}, HttpTrigger, "OTEL_PROFILING_HTTP_PORT"),
        ({"OTEL_PROFILING_HTTP_PORT": "99999"}, HttpTrigger, "OTEL_PROFILING_HTTP_PORT"),
        (
            {"OTEL_PROFILING_HTTP_PORT": "6060", "OTEL_PROFILING_HTTP_HOST": "0.0.0.0"},
            HttpTrigger,
            "without a token",
        ),
        ({"OTEL_PROFILING_MEMORY_THRESHOLD": "lots"}, MemoryThresholdTrigger, "MEMORY_THRESHOLD"),
        ({"OTEL_PROFILING_CPU_THRESHOLD": "-3"}, CpuThresholdTrigger, "CPU_THRESHOLD"),
    ],
)
def test_invalid_values_warn_and_never_open_anything(
    monkeypatch: pytest.MonkeyPatch, caplog, settings: dict, absent: type, warning: str
) -> None:  # type: ignore[no-untyped-def]
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING):
        triggers = by_type(triggers_from_env())
    assert absent not in triggers
    assert SignalTrigger in triggers  # the rest of the configuration still applies
    assert any(warning in r.getMessage() for r in caplog.records), caplog.text


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("http://127.0.0.1", "it has a scheme (http://)"),
        ("localhost:6060", "it has a port (:6060)"),
        ("[::1]:6060", "it has a port (:6060)"),
        ("local host", "it has spaces"),
    ],
)
@pytest.mark.parametrize("token", [None, "s3cret-value-of-20ch"])
def test_http_host_that_is_not_a_host_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, caplog, host: str, problem: str, token: object
) -> None:  # type: ignore[no-untyped-def]
    """Not a message about tokens or a failed bind: what is wrong, and where the port goes."""
    monkeypatch.setenv("OTEL_PROFILING_HTTP_PORT", "0")
    monkeypatch.setenv("OTEL_PROFILING_HTTP_HOST", host)
    if token is not None:
        monkeypatch.setenv("OTEL_PROFILING_HTTP_TOKEN", str(token))
    with caplog.at_level(logging.WARNING):
        triggers = by_type(triggers_from_env())
    assert HttpTrigger not in triggers
    (message,) = [r.getMessage() for r in caplog.records if "HTTP_HOST" in r.getMessage()]
    assert message.startswith(
        f"Invalid value {host!r} for environment variable OTEL_PROFILING_HTTP_HOST: {problem}; "
        "give a host name or IP address alone"
    )
    assert "and the port in OTEL_PROFILING_HTTP_PORT. The HTTP trigger is off." in message
    assert "token" not in message.lower()


@pytest.mark.parametrize(("host", "bound"), [(" 127.0.0.1 ", "127.0.0.1"), ("[::1]", "::1")])
def test_http_host_spaces_and_brackets_are_read_as_the_address(
    monkeypatch: pytest.MonkeyPatch, host: str, bound: str
) -> None:
    monkeypatch.setenv("OTEL_PROFILING_HTTP_PORT", "0")
    monkeypatch.setenv("OTEL_PROFILING_HTTP_HOST", host)
    assert by_type(triggers_from_env())[HttpTrigger].host == bound


@pytest.mark.parametrize("duration", ["90", "1e12"])
def test_duration_longer_than_interval_is_clamped_to_it(
    monkeypatch: pytest.MonkeyPatch, caplog, duration: str
) -> None:  # type: ignore[no-untyped-def]
    """The nearest bound, as for every number: windows back to back, never overlapping."""
    monkeypatch.setenv("OTEL_PROFILING_INTERVAL", "30")
    monkeypatch.setenv("OTEL_PROFILING_DURATION", duration)
    with caplog.at_level(logging.WARNING):
        interval = by_type(triggers_from_env())[IntervalTrigger]
    assert interval.duration == 30
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == (
        f"Invalid value {duration!r} for environment variable OTEL_PROFILING_DURATION: "
        "expected a number from 0.1 to 30 seconds (at most OTEL_PROFILING_INTERVAL); "
        "using 30.0, the nearest bound."
    )


@pytest.mark.parametrize(
    ("duration", "used", "outcome"),
    [
        (repr(threading.TIMEOUT_MAX * 10), 3600.0, "using 3600.0, the nearest bound."),
        ("1e400", None, "ignoring it (as if unset)."),  # not finite: unset, the program's run
    ],
)
def test_window_duration_has_an_upper_bound_named_in_the_warning(
    monkeypatch: pytest.MonkeyPatch, caplog, duration: str, used: object, outcome: str
) -> None:  # type: ignore[no-untyped-def]
    """A duration beyond ``threading.TIMEOUT_MAX`` would overflow the window's wait."""
    monkeypatch.setenv("OTEL_PROFILING_SIGNAL", "none")
    monkeypatch.setenv("OTEL_PROFILING_AT_START", "true")
    monkeypatch.setenv("OTEL_PROFILING_DURATION", duration)
    with caplog.at_level(logging.WARNING):
        (startup,) = triggers_from_env()
    assert isinstance(startup, StartupTrigger)
    assert startup.duration == used
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == (
        f"Invalid value {duration!r} for environment variable OTEL_PROFILING_DURATION: "
        f"expected a number from 0.1 to 3600 seconds; {outcome}"
    )


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("512MiB", 512 * 1024**2),
        ("1GB", 10**9),
        ("1.5 GiB", 3 * 1024**3 // 2),
        ("64k", 64_000),
        ("2Gi", 2 * 1024**3),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1MB", "0", "12XB"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_configure_serves_http_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("OTEL_PROFILES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_PROFILING_SIGNAL", "none")
    monkeypatch.setenv("OTEL_PROFILING_HTTP_PORT", str(port))
    monkeypatch.setenv("OTEL_PROFILING_HTTP_TOKEN", "env-token")
    agent = configure()
    assert agent is not None
    try:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/debug/profile/cpu?seconds=0.2",
            headers={"Authorization": "Bearer env-token"},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            load_cpuprofile(resp.read())
    finally:
        agent.shutdown()


def test_configure_with_a_busy_port_logs_and_keeps_running(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    blocker = HttpTrigger()
    holder = ProfilingAgent().register(blocker, CpuProfiler()).start()
    monkeypatch.setenv("OTEL_PROFILES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_PROFILING_SIGNAL", "none")
    monkeypatch.setenv("OTEL_PROFILING_HTTP_PORT", str(blocker.port))
    try:
        with caplog.at_level(logging.ERROR):
            agent = configure()
        assert agent is not None
        agent.shutdown()
        assert "cannot listen" in caplog.text and "HTTP trigger is off" in caplog.text
    finally:
        holder.shutdown()


def test_duration_for_the_startup_window_alone_is_no_mistake(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``otel-profiling run --duration`` sets the duration and no interval: nothing to warn of."""
    monkeypatch.setenv("OTEL_PROFILING_DURATION", "5")
    monkeypatch.setenv("OTEL_PROFILING_AT_START", "true")
    with caplog.at_level(logging.WARNING):
        triggers = by_type(triggers_from_env())
    assert IntervalTrigger not in triggers
    assert not caplog.records, caplog.text
