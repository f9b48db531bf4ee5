"""CPU profiles split by span (yappi's tag callback): each span's work under its own node."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import format_span_id
from viewers import load_cpuprofile

from otel_profiling.profilers import CpuProfiler


def checkout_work() -> int:
    return sum(i * i for i in range(60_000))


def search_work() -> int:
    return sum(i % 7 for i in range(60_000))


def untraced_work() -> int:
    return sum(range(30_000))


def subtree_functions(profile: dict, node_id: int) -> set:
    by_id = {n["id"]: n for n in profile["nodes"]}
    names, stack = set(), [node_id]
    while stack:
        node = by_id[stack.pop()]
        names.add(node["callFrame"]["functionName"])
        stack.extend(node["children"])
    return names


def test_each_span_gets_its_own_subtree() -> None:
    tracer = TracerProvider().get_tracer("test")
    profiler = CpuProfiler(by_span=True)
    assert profiler.attributes()["profiling.cpu.by_span"] is True
    profiler.start()
    try:
        with tracer.start_as_current_span("checkout") as checkout:
            checkout_work()
        with tracer.start_as_current_span("search") as search:
            search_work()
        untraced_work()
    finally:
        data = profiler.stop()
    profile = load_cpuprofile(data)
    nodes = {n["callFrame"]["functionName"]: n for n in profile["nodes"]}
    checkout_node = nodes[f"span {format_span_id(checkout.get_span_context().span_id)}"]
    search_node = nodes[f"span {format_span_id(search.get_span_context().span_id)}"]
    in_checkout = subtree_functions(profile, checkout_node["id"])
    in_search = subtree_functions(profile, search_node["id"])
    assert "checkout_work" in in_checkout and "search_work" not in in_checkout
    assert "search_work" in in_search and "checkout_work" not in in_search
    # work outside any span stays directly under its thread, not under a span
    for name in ("untraced_work",):
        assert name not in in_checkout | in_search
        assert name in nodes


def test_without_by_span_there_are_no_span_nodes() -> None:
    tracer = TracerProvider().get_tracer("test")
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


def test_by_span_from_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from otel_profiling.profilers.env import cpu_profiler_from_env

    monkeypatch.setenv("OTEL_PROFILING_CPU_BY_SPAN", "true")
    assert cpu_profiler_from_env().by_span is True
    monkeypatch.delenv("OTEL_PROFILING_CPU_BY_SPAN")
    assert cpu_profiler_from_env().by_span is False
