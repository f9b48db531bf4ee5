"""Profilers and their formats chosen from ``OTEL_PROFILING_*`` variables."""

from __future__ import annotations

import logging

import pytest

from otel_profiling.profilers import CpuProfiler, HeapProfiler, HeapSnapshotProfiler
from otel_profiling.profilers.env import PROFILER_FACTORIES, profilers_from_env


def test_all_three_kinds_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PROFILING_PROFILERS", "cpu, heap,snapshot")
    monkeypatch.setenv("OTEL_PROFILING_CPU_FORMAT", "pprof")
    monkeypatch.setenv("OTEL_PROFILING_CPU_CLOCK", "cpu")
    monkeypatch.setenv("OTEL_PROFILING_HEAP_FORMAT", "folded")
    monkeypatch.setenv("OTEL_PROFILING_HEAP_FRAMES", "16")
    monkeypatch.setenv("OTEL_PROFILING_SNAPSHOT_GC_COLLECT", "false")
    cpu, heap, snapshot = profilers_from_env()
    assert isinstance(cpu, CpuProfiler) and cpu.format.name == "pprof" and cpu.clock == "cpu"
    assert isinstance(heap, HeapProfiler) and heap.format.extension == "folded"
    assert heap.frames == 16
    assert isinstance(snapshot, HeapSnapshotProfiler) and snapshot.collect is False
    assert set(PROFILER_FACTORIES) == {"cpu", "heap", "snapshot"}


def test_only_unknown_profilers_says_nothing_will_be_profiled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_PROFILING_PROFILERS", "cpuu,memory")
    with caplog.at_level(logging.WARNING):
        assert profilers_from_env() == []
    assert "'cpuu'" in caplog.text and "'memory'" in caplog.text
    assert "nothing will be profiled" in caplog.text and "cpu, heap, snapshot" in caplog.text
    caplog.clear()
    monkeypatch.setenv("OTEL_PROFILING_PROFILERS", "cpuu,heap")
    with caplog.at_level(logging.WARNING):
        [heap] = profilers_from_env()
    assert isinstance(heap, HeapProfiler) and "nothing will be profiled" not in caplog.text


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_PROFILING_CPU_FORMAT", "heapsnapshot"),
        ("OTEL_PROFILING_CPU_CLOCK", "sundial"),
        ("OTEL_PROFILING_HEAP_FORMAT", "pstats"),
        ("OTEL_PROFILING_HEAP_FRAMES", "-1"),
        ("OTEL_PROFILING_HEAP_FRAMES", "deep"),
    ],
)
def test_invalid_value_warns_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, value: str
) -> None:
    monkeypatch.setenv("OTEL_PROFILING_PROFILERS", "cpu,heap")
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING):
        cpu, heap = profilers_from_env()
    assert variable in caplog.text and value in caplog.text
    assert cpu.format.name == "cpuprofile" and cpu.clock == "wall"  # type: ignore[attr-defined]
    assert heap.format.name == "heapprofile" and heap.frames == 64  # type: ignore[attr-defined]


def test_cpu_engine_and_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PROFILING_PROFILERS", "cpu")
    (cpu,) = profilers_from_env()
    assert isinstance(cpu, CpuProfiler)
    assert (cpu.engine, cpu.interval) == ("sampling", 0.01)
    monkeypatch.setenv("OTEL_PROFILING_CPU_ENGINE", "YAPPI")
    monkeypatch.setenv("OTEL_PROFILING_CPU_INTERVAL", "0.005")
    (cpu,) = profilers_from_env()
    assert (cpu.engine, cpu.interval) == ("yappi", 0.005)  # type: ignore[attr-defined]
    monkeypatch.delenv("OTEL_PROFILING_CPU_ENGINE")
    monkeypatch.setenv("OTEL_PROFILING_CPU_FORMAT", "callgrind")
    (cpu,) = profilers_from_env()
    assert cpu.engine == "yappi"  # type: ignore[attr-defined]  # call graphs need yappi


@pytest.mark.parametrize(
    ("settings", "variable", "expected"),
    [
        ({"OTEL_PROFILING_CPU_ENGINE": "turbo"}, "OTEL_PROFILING_CPU_ENGINE", ("sampling", 0.01)),
        (
            {"OTEL_PROFILING_CPU_ENGINE": "sampling", "OTEL_PROFILING_CPU_FORMAT": "pstats"},
            "OTEL_PROFILING_CPU_ENGINE",
            ("yappi", 0.01),
        ),
        # out of range: the nearest bound, as every number variable (README)
        ({"OTEL_PROFILING_CPU_INTERVAL": "0"}, "OTEL_PROFILING_CPU_INTERVAL", ("sampling", 0.001)),
        ({"OTEL_PROFILING_CPU_INTERVAL": "nan"}, "OTEL_PROFILING_CPU_INTERVAL", ("sampling", 0.01)),
        ({"OTEL_PROFILING_CPU_INTERVAL": "inf"}, "OTEL_PROFILING_CPU_INTERVAL", ("sampling", 0.01)),
        ({"OTEL_PROFILING_CPU_INTERVAL": "120"}, "OTEL_PROFILING_CPU_INTERVAL", ("sampling", 60.0)),
        ({"OTEL_PROFILING_CPU_INTERVAL": "²"}, "OTEL_PROFILING_CPU_INTERVAL", ("sampling", 0.01)),
        # float() reads Arabic-Indic digits: not what a deployment meant
        (
            {"OTEL_PROFILING_CPU_INTERVAL": "٠.٠٥"},
            "OTEL_PROFILING_CPU_INTERVAL",
            ("sampling", 0.01),
        ),
        ({"OTEL_PROFILING_CPU_INTERVAL": "-1"}, "OTEL_PROFILING_CPU_INTERVAL", ("sampling", 0.01)),
        (
            {"OTEL_PROFILING_CPU_ENGINE": "yappi", "OTEL_PROFILING_CPU_BY_SPAN": "true"},
            "OTEL_PROFILING_CPU_BY_SPAN",
            ("yappi", 0.01),
        ),
    ],
)
def test_invalid_cpu_engine_settings_warn_once_and_use_the_default(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    settings: dict,
    variable: str,
    expected: tuple,
) -> None:
    monkeypatch.setenv("OTEL_PROFILING_PROFILERS", "cpu")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING):
        (cpu,) = profilers_from_env()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and variable in warnings[0].getMessage()
    assert (cpu.engine, cpu.interval) == expected  # type: ignore[attr-defined]
    assert cpu.by_span is False  # type: ignore[attr-defined]
