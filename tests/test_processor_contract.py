"""The processor contract the agent relies on: a public ``exporter`` and a bounded shutdown."""

from __future__ import annotations

from typing import Any, List


def test_agent_shuts_down_processors_of_either_shape() -> None:
    """Processors get ``shutdown(timeout_millis=...)`` when they take it, ``shutdown()`` if not."""
    from otel_profiling import ProfilingAgent
    from otel_profiling.exporters import InMemoryProfileExporter
    from otel_profiling.processors import ProfileProcessor, SimpleProfileProcessor

    calls: List[Any] = []

    class SpanShaped(ProfileProcessor):
        def shutdown(self) -> None:  # type: ignore[override]  # the SpanProcessor shape
            calls.append("no argument")

    class Bounded(ProfileProcessor):
        def shutdown(self, timeout_millis: Any = None) -> None:
            calls.append(timeout_millis)

    exporter = InMemoryProfileExporter()
    simple = SimpleProfileProcessor(exporter)
    agent = ProfilingAgent()
    for processor in (SpanShaped(), Bounded(), simple):
        agent.add_profile_processor(processor)
    agent.start()
    agent.shutdown(5_000)
    assert calls[0] == "no argument"
    assert isinstance(calls[1], float) and 0 < calls[1] <= 5_000
    assert simple.exporter is exporter and SpanShaped().exporter is None
