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
