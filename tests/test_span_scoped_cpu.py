"""CPU profiles split by span are a view of sampled span ids: the yappi engine refuses them."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from viewers import load_cpuprofile

from otel_profiling.profilers import CpuProfiler


def checkout_work() -> int:
    return sum(i * i for i in range(60_000))


def test_by_span_is_refused_with_the_yappi_engine() -> None:
    with pytest.raises(ValueError, match=r"by_span=True needs engine='sampling'"):
        CpuProfiler(engine="yappi", by_span=True)


def test_yappi_profiles_have_no_span_nodes() -> None:
    tracer = TracerProvider().get_tracer("test")
    profiler = CpuProfiler(engine="yappi")
    profiler.start()
    try:
        with tracer.start_as_current_span("checkout"):
            checkout_work()
    finally:
        data = profiler.stop()
    names = {n["callFrame"]["functionName"] for n in load_cpuprofile(data)["nodes"]}
    assert "checkout_work" in names
    assert not any(name.startswith("span ") for name in names)


def test_by_span_from_the_environment_with_yappi_warns_and_is_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from otel_profiling.profilers.env import cpu_profiler_from_env

    monkeypatch.setenv("OTEL_PROFILING_CPU_BY_SPAN", "true")
    with caplog.at_level(logging.WARNING):
        profiler = cpu_profiler_from_env()
    assert profiler.by_span is False
    assert "OTEL_PROFILING_CPU_BY_SPAN" in caplog.text
