"""Trace context per CPU sample: each sample carries the span current where it was taken.

``ProfilingSpanProcessor`` tells the sampler which span is open on each
thread and asyncio task; pprof samples get ``trace_id``/``span_id`` labels and
``CpuProfiler(by_span=True)`` groups each thread's samples under ``span <id>``.
The programs time their own work; tolerance ±15 % of what they measured.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer, format_span_id, format_trace_id
from sampling_programs import spin
from viewers import (
    cpuprofile_inclusive_times,
    cpuprofile_paths,
    load_cpuprofile,
    load_pprof,
    pprof_labels,
)

from otel_profiling import ProfilingSpanProcessor
from otel_profiling.profilers import CpuProfiler
from otel_profiling.profilers.open_spans import OpenSpans

TOLERANCE = 0.15
MEASURED: Dict[str, float] = {}


def within(value: float, truth: float) -> bool:
    return abs(value - truth) <= TOLERANCE * truth


def timed_work(name: str, seconds: float) -> None:
    began = time.perf_counter()
    spin(seconds)
    MEASURED[name] = MEASURED.get(name, 0.0) + time.perf_counter() - began


def checkout_work() -> None:
    timed_work("checkout", 0.6)


def search_work() -> None:
    timed_work("search", 0.6)


def untraced_work() -> None:
    timed_work("untraced", 0.5)


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    MEASURED.clear()
    provider = TracerProvider()
    processor = ProfilingSpanProcessor()  # no agent needed for per-sample ids
    provider.add_span_processor(processor)
    yield provider.get_tracer("test")
    provider.shutdown()


def profile_pprof(work: Any) -> Any:
    profiler = CpuProfiler(format="pprof")
    profiler.start()
    try:
        work()
    finally:
        data = profiler.stop()
    return load_pprof(data)


def by_label(profile: Any, key: str) -> Dict[Any, List[Tuple[List[str], int, Dict[str, Any]]]]:
    """Samples grouped by one label's value: (function names root first, ns, labels)."""
    names = {f.id: profile.string_table[f.name] for f in profile.function}
    loc_func = {loc.id: names[loc.line[0].function_id] for loc in profile.location}
    groups: Dict[Any, List[Tuple[List[str], int, Dict[str, Any]]]] = {}
    for sample in profile.sample:
        labels = pprof_labels(profile, sample)
        stack = [loc_func[i] for i in reversed(sample.location_id)]
        groups.setdefault(labels.get(key), []).append((stack, sample.value[1], labels))
    return groups


def seconds(samples: List[Tuple[List[str], int, Dict[str, Any]]]) -> float:
    return sum(ns for _, ns, _ in samples) / 1e9


def test_samples_in_a_span_carry_its_trace_and_span_ids(tracer: Tracer) -> None:
    spans = {}

    def work() -> None:
        with tracer.start_as_current_span("checkout") as span:
            spans["checkout"] = span.get_span_context()
            checkout_work()
        with tracer.start_as_current_span("search") as span:
            spans["search"] = span.get_span_context()
            search_work()
        untraced_work()

    groups = by_label(profile_pprof(work), "span_id")
    for name, work_function in (("checkout", "checkout_work"), ("search", "search_work")):
        context = spans[name]
        samples = groups[format_span_id(context.span_id)]
        assert within(seconds(samples), MEASURED[name]), (name, seconds(samples), MEASURED)
        assert {labels["trace_id"] for _, _, labels in samples} == {
            format_trace_id(context.trace_id)
        }
        assert all(labels["thread.name"] == "MainThread" for _, _, labels in samples)
        assert all(work_function in stack for stack, _, _ in samples if "timed_work" in stack)
    untraced = [s for s in groups[None] if "untraced_work" in s[0]]
    assert within(seconds(untraced), MEASURED["untraced"])
    for key, samples in groups.items():
        if key is not None:
            assert not any("untraced_work" in stack for stack, _, _ in samples)


def test_the_innermost_open_span_is_current(tracer: Tracer) -> None:
    ids = {}

    def work() -> None:
        with tracer.start_as_current_span("outer") as outer:
            ids["outer"] = format_span_id(outer.get_span_context().span_id)
            timed_work("outer-before", 0.5)
            with tracer.start_as_current_span("inner") as inner:
                ids["inner"] = format_span_id(inner.get_span_context().span_id)
                timed_work("inner", 0.8)
            timed_work("outer-after", 0.5)

    groups = by_label(profile_pprof(work), "span_id")
    assert within(seconds(groups[ids["inner"]]), MEASURED["inner"])
    outer_own = MEASURED["outer-before"] + MEASURED["outer-after"]
    assert within(seconds(groups[ids["outer"]]), outer_own)


def test_each_thread_has_its_own_current_span(tracer: Tracer) -> None:
    ids = {}

    def traced_thread() -> None:
        with tracer.start_as_current_span("in-thread") as span:
            ids["thread"] = format_span_id(span.get_span_context().span_id)
            timed_work("thread", 0.8)

    def work() -> None:
        thread = threading.Thread(target=traced_thread, name="traced-worker")
        thread.start()
        untraced_work()
        thread.join()

    groups = by_label(profile_pprof(work), "span_id")
    samples = groups[ids["thread"]]
    assert {labels["thread.name"] for _, _, labels in samples} == {"traced-worker"}
    assert within(seconds(samples), MEASURED["thread"])
    main_in_span = [s for key, g in groups.items() if key for s in g if "untraced_work" in s[0]]
    assert not main_in_span, "the main thread ran outside any span"


def test_suspended_and_running_tasks_carry_their_own_span(tracer: Tracer) -> None:
    ids: Dict[str, str] = {}

    async def request(name: str) -> None:
        with tracer.start_as_current_span(name) as span:
            ids[name] = format_span_id(span.get_span_context().span_id)
            began = time.perf_counter()
            await asyncio.sleep(0.6)
            spin(0.4)
            MEASURED[name] = time.perf_counter() - began

    async def main() -> None:
        await asyncio.gather(request("first"), request("second"))

    groups = by_label(profile_pprof(lambda: asyncio.run(main())), "span_id")
    for name in ("first", "second"):
        samples = groups[ids[name]]
        # its own time: suspended in sleep, then waiting for or running on the loop
        assert within(seconds(samples), MEASURED[name]), (name, seconds(samples), MEASURED)
        tasks = {labels.get("task.name") for _, _, labels in samples}
        assert len(tasks - {None}) == 1, tasks  # suspended: one task; running: no task label


def test_by_span_groups_each_threads_samples_under_its_spans(tracer: Tracer) -> None:
    profiler = CpuProfiler(by_span=True)
    assert profiler.attributes()["profiling.cpu.by_span"] is True
    ids = {}
    profiler.start()
    try:
        with tracer.start_as_current_span("checkout") as span:
            ids["checkout"] = format_span_id(span.get_span_context().span_id)
            checkout_work()
        with tracer.start_as_current_span("search") as span:
            ids["search"] = format_span_id(span.get_span_context().span_id)
            search_work()
        untraced_work()
    finally:
        data = profiler.stop()
    profile = load_cpuprofile(data)
    paths = cpuprofile_paths(profile)
    for name in ("checkout", "search"):
        node = f"span {ids[name]}"
        under = [(p, t) for p, t in paths.items() if len(p) == 2 and p[1] == node]
        assert len(under) == 1 and under[0][0][0].startswith("MainThread (thread ")
        assert within(under[0][1] / 1e6, MEASURED[name])
        inside = {p[-1] for p in paths if node in p}
        other = "search_work" if name == "checkout" else "checkout_work"
        assert f"{name}_work" in inside and other not in inside
    untraced = [p for p in paths if p[-1] == "untraced_work"]
    assert untraced and not any(part.startswith("span ") for p in untraced for part in p)
    assert within(cpuprofile_inclusive_times(profile)["untraced_work"] / 1e6, MEASURED["untraced"])


def test_without_by_span_there_are_no_span_nodes(tracer: Tracer) -> None:
    profiler = CpuProfiler()
    profiler.start()
    try:
        with tracer.start_as_current_span("checkout"):
            checkout_work()
    finally:
        data = profiler.stop()
    names = {n["callFrame"]["functionName"] for n in load_cpuprofile(data)["nodes"]}
    assert "checkout_work" in names
    assert not any(name.startswith("span ") for name in names)


def test_without_the_span_processor_samples_have_no_span() -> None:
    tracer = TracerProvider().get_tracer("untracked")

    def work() -> None:
        with tracer.start_as_current_span("checkout"):
            checkout_work()

    groups = by_label(profile_pprof(work), "span_id")
    assert set(groups) == {None}


def test_by_span_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_profiling.profilers.env import cpu_profiler_from_env

    monkeypatch.setenv("OTEL_PROFILING_CPU_BY_SPAN", "true")
    assert cpu_profiler_from_env().by_span is True
    monkeypatch.delenv("OTEL_PROFILING_CPU_BY_SPAN")
    assert cpu_profiler_from_env().by_span is False


# -- the registry itself --------------------------------------------------------------------


def test_registry_is_bounded_and_spans_may_end_on_another_thread() -> None:
    spans = OpenSpans(max_spans=3)
    for span_id in range(1, 6):
        spans.started(100, span_id)
    assert len(spans) == 3  # the oldest two forgotten
    here = threading.get_ident()
    assert spans.current(here) == (100, 5)
    ender = threading.Thread(target=spans.ended, args=(5,))
    ender.start()
    ender.join()
    assert spans.current(here) == (100, 4)
    for span_id in (3, 4):
        spans.ended(span_id)
    assert spans.current(here) is None and len(spans) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_no_open_spans(tracer: Tracer) -> None:
    from otel_profiling.profilers.open_spans import OPEN_SPANS

    with tracer.start_as_current_span("parent-request"):
        assert OPEN_SPANS.current(threading.get_ident()) is not None
        pid = os.fork()
        if pid == 0:
            empty = OPEN_SPANS.current(threading.get_ident()) is None and not OPEN_SPANS
            os._exit(0 if empty else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_by_span_is_refused_with_the_yappi_engine() -> None:
    with pytest.raises(ValueError, match=r"by_span=True needs the sampling engine"):
        CpuProfiler(engine="yappi", by_span=True)


def test_yappi_profiles_have_no_span_nodes(tracer: Tracer) -> None:
    profiler = CpuProfiler(engine="yappi")
    profiler.start()
    try:
        with tracer.start_as_current_span("checkout"):
            checkout_work()
    finally:
        data = profiler.stop()
    names = {node["callFrame"]["functionName"] for node in load_cpuprofile(data)["nodes"]}
    assert "checkout_work" in names
    assert not any(name.startswith("span ") for name in names)
