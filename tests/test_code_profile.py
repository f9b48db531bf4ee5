"""agent.profile(...): from code, as a block or a decorator, in threads and in async code."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from support import wait_for
from viewers import cpuprofile_function_names, load_cpuprofile

from otel_profiling import ProfileStatus, ProfilingAgent
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler


def code_block_leaf(n: int) -> int:
    return sum(i * i for i in range(n))


@pytest.fixture
def agent_and_exporter():  # type: ignore[no-untyped-def]
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    yield agent, exporter
    agent.shutdown()


def test_with_block_gives_the_finished_profile(agent_and_exporter) -> None:  # type: ignore[no-untyped-def]
    agent, exporter = agent_and_exporter
    with agent.profile(CpuProfiler(), name="nightly-import", attributes={"job.id": 7}) as handle:
        assert handle.profile is not None and not handle.profile.ended
        code_block_leaf(3_000_000)  # ~0.3 s: long enough to be sampled
    profile = handle.profile
    assert profile.ended and profile.status is ProfileStatus.OK
    assert profile.name == "nightly-import"
    assert profile.attributes["job.id"] == 7
    assert profile.attributes["profiling.trigger"] == "code"
    assert profile.attributes["profiling.reason"] == "agent.profile(nightly-import)"
    assert "code_block_leaf" in cpuprofile_function_names(load_cpuprofile(profile.data))
    assert exporter.get_finished_profiles() == (profile,)


def test_decorator_profiles_each_call(agent_and_exporter) -> None:  # type: ignore[no-untyped-def]
    agent, exporter = agent_and_exporter
    block = agent.profile(CpuProfiler())

    @block
    def import_batch(n: int) -> int:
        return code_block_leaf(n)

    assert import_batch(1000) == code_block_leaf(1000)
    assert import_batch(2000) == code_block_leaf(2000)
    first, second = exporter.get_finished_profiles()
    assert block.profile is second
    assert first.name == second.name == "test_decorator_profiles_each_call.<locals>.import_batch"
    assert import_batch.__name__ == "import_batch"
    # OpenTelemetry semantic conventions: what ran, and on which thread
    assert first.attributes["code.function.name"] == (
        "test_code_profile.test_decorator_profiles_each_call.<locals>.import_batch"
    )
    assert first.attributes["thread.name"] == threading.current_thread().name
    assert first.attributes["thread.id"] == threading.get_ident()


def test_exception_propagates_and_the_profile_is_kept(agent_and_exporter) -> None:  # type: ignore[no-untyped-def]
    agent, exporter = agent_and_exporter

    @agent.profile(CpuProfiler(), name="failing")
    def failing() -> None:
        code_block_leaf(1000)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        failing()
    (profile,) = exporter.get_finished_profiles()
    assert profile.attributes["profiling.block.error"] is True
    load_cpuprofile(profile.data)


def test_async_decorator_and_async_with(agent_and_exporter) -> None:  # type: ignore[no-untyped-def]
    agent, exporter = agent_and_exporter
    profiler = CpuProfiler()

    @agent.profile(profiler, name="async-job")
    async def job() -> int:
        result = code_block_leaf(2_000_000)
        await asyncio.sleep(0.01)
        return result

    async def main() -> tuple:
        result = await job()
        async with agent.profile(profiler, name="async-block") as handle:
            code_block_leaf(2_000_000)
            await asyncio.sleep(0.01)
        return result, handle

    result, handle = asyncio.run(main())
    assert result == code_block_leaf(2_000_000)
    names = [p.name for p in exporter.get_finished_profiles()]
    assert names == ["async-job", "async-block"]
    assert handle.profile.ended
    for profile in exporter.get_finished_profiles():
        assert "code_block_leaf" in cpuprofile_function_names(load_cpuprofile(profile.data))


def test_concurrent_threads_one_profiled_the_other_refused(agent_and_exporter) -> None:  # type: ignore[no-untyped-def]
    agent, exporter = agent_and_exporter
    block = agent.profile(CpuProfiler(), name="shared")
    inside = threading.Barrier(2, timeout=30)
    handles = []

    def worker() -> None:
        with block as handle:
            handles.append(handle)
            inside.wait()  # both are inside the block at the same time
            code_block_leaf(1000)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(h.refused for h in handles) == [False, True]
    assert agent.refused_starts == 1
    assert len(exporter.get_finished_profiles()) == 1
    assert block.profile is next(h.profile for h in handles if not h.refused)


def test_refusals_are_counted_and_logged_once(agent_and_exporter, caplog) -> None:  # type: ignore[no-untyped-def]
    agent, _ = agent_and_exporter
    profiler = CpuProfiler()
    caplog.set_level(logging.DEBUG, logger="otel_profiling.agent")
    with agent.profile(profiler, name="outer"):
        for _ in range(3):
            with agent.profile(profiler, name="inner") as inner:
                assert inner.refused
    assert agent.refused_starts == 3
    refusals = [r for r in caplog.records if "not started" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_a_second_cpu_profiler_is_refused_while_yappi_is_busy(agent_and_exporter) -> None:  # type: ignore[no-untyped-def]
    agent, exporter = agent_and_exporter
    first, second = CpuProfiler(engine="yappi"), CpuProfiler(engine="yappi")
    with agent.profile(first, name="a"), agent.profile(second, name="b") as b:
        assert b.refused
    assert [p.name for p in exporter.get_finished_profiles()] == ["a"]
    assert agent.refused_starts == 1


def test_shutdown_inside_a_block_ends_and_exports_its_profile() -> None:
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    with agent.profile(CpuProfiler(), name="cut-short") as handle:
        code_block_leaf(1000)
        agent.shutdown()
        assert handle.profile.ended
    assert exporter.get_finished_profiles() == (handle.profile,)
    assert handle.profile.attributes["profiling.stop_reason"] == "agent shutdown"
    with agent.profile(CpuProfiler()) as late:  # after shutdown: runs unprofiled, no error
        pass
    assert late.refused


def test_profile_rejects_what_is_not_a_profiler(agent_and_exporter) -> None:  # type: ignore[no-untyped-def]
    agent, _ = agent_and_exporter
    with pytest.raises(TypeError, match="not a Profiler"):
        agent.profile("cpu")  # type: ignore[arg-type]


def test_block_used_from_many_tasks_keeps_entries_apart(agent_and_exporter) -> None:  # type: ignore[no-untyped-def]
    """Tasks entering one block concurrently: one profiles, the others run unprofiled."""
    agent, exporter = agent_and_exporter
    block = agent.profile(CpuProfiler(), name="tasks")

    async def task(gate: asyncio.Event) -> bool:
        async with block as handle:
            await gate.wait()
        return handle.refused

    async def main() -> list:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(task(gate)) for _ in range(4)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*tasks)

    refused = asyncio.run(main())
    assert sorted(refused) == [False, True, True, True]
    assert wait_for(lambda: len(exporter.get_finished_profiles()) == 1)
    assert not agent.active_profiles
