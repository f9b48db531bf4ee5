"""``ProfilingSpanProcessor``: a traced request handled while profiling links both ways."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Tuple

import fsspec
import pytest
from conftest import ROOT, child_env, s3_options
from helpers import GcCountsSnapshotProfiler, ManualTrigger
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id
from viewers import cpuprofile_function_names, cpuprofile_inclusive_times, load_cpuprofile

from otel_profiling import ProfilingAgent, ProfilingSpanProcessor, set_profiling_agent
from otel_profiling.exporters import FsspecProfileExporter, InMemoryProfileExporter
from otel_profiling.global_agent import _reset_profiling_agent
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler

REPORT_SECONDS = 0.15  # long enough for a 10 ms sampler to see it many times
REPORT_TIMES: list = []  # (seconds) of each handle_report call, as the program timed it


def handle_report() -> None:
    began = time.perf_counter()
    while time.perf_counter() - began < REPORT_SECONDS:
        pass
    REPORT_TIMES.append(time.perf_counter() - began)


class Handler(BaseHTTPRequestHandler):
    tracer = None

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        tracer = self.tracer
        assert tracer is not None
        with tracer.start_as_current_span("GET /report"), tracer.start_as_current_span("render"):
            body = str(handle_report()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def traced_server() -> Iterator[Tuple[TracerProvider, InMemorySpanExporter, str]]:
    provider = TracerProvider(resource=Resource.create({"service.name": "reports"}))
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    Handler.tracer = provider.get_tracer("test")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider, spans, f"http://127.0.0.1:{server.server_address[1]}/report"
    finally:
        server.shutdown()
        server.server_close()
        provider.shutdown()


def get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200


def test_traced_request_while_profiling_links_span_and_profile(
    traced_server, s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    provider, spans, url = traced_server
    agent = ProfilingAgent(resource=provider.resource)
    stored = FsspecProfileExporter(
        f"s3://{bucket}/profiles/{{service.name}}", s3_options(s3_endpoint)
    )
    memory = InMemoryProfileExporter()
    agent.add_profile_processor(BatchProfileProcessor(stored))
    agent.add_profile_processor(SimpleProfileProcessor(memory))
    trigger = ManualTrigger()
    agent.register(trigger, CpuProfiler())
    agent.start()
    provider.add_span_processor(ProfilingSpanProcessor(agent))
    try:
        get(url)  # before profiling
        [profile] = trigger.start()
        REPORT_TIMES.clear()
        get(url)  # while profiling
        handle_report()  # and work on this thread, which the profile must show
        in_window = sum(REPORT_TIMES)  # two calls: the request's and this thread's
        trigger.stop()
        get(url)  # after
        assert agent.force_flush(30_000)
    finally:
        agent.shutdown(10_000)

    roots = [s for s in spans.get_finished_spans() if s.name == "GET /report"]
    assert len(roots) == 3
    before, during, after = roots
    profile_url = during.attributes["profiling.profile.url"]
    assert "profiling.profile.url" not in before.attributes
    assert "profiling.profile.url" not in after.attributes
    children = [s for s in spans.get_finished_spans() if s.name == "render"]
    assert all("profiling.profile.url" not in s.attributes for s in children)

    # the profile carries the request's trace and span ids
    trace_id = format_trace_id(during.context.trace_id)
    [exported] = memory.get_finished_profiles()
    assert exported is profile
    assert list(exported.attributes["profiling.trace_ids"]) == [trace_id]
    assert list(exported.attributes["profiling.span_ids"]) == [
        format_span_id(during.context.span_id)
    ]
    assert during.attributes["thread.name"].endswith("(process_request_thread)")
    assert list(exported.attributes["profiling.thread_ids"]) == [during.attributes["thread.id"]]

    # following the URL finds the object, which names the trace in its metadata
    [obj] = boto3_client.list_objects_v2(Bucket=bucket)["Contents"]
    assert profile_url == f"s3://{bucket}/{obj['Key']}"
    assert obj["Key"].startswith("profiles/reports/CPU_PROFILE-")
    with fsspec.open(profile_url, "rb", **s3_options(s3_endpoint)) as handle:
        data = handle.read()
    # the time both calls in the window took, as they timed it (±25 %: 10 ms sampling)
    profiled = cpuprofile_inclusive_times(load_cpuprofile(data))["handle_report"] / 1e6
    assert abs(profiled - in_window) <= 0.25 * in_window, (profiled, in_window)
    meta = boto3_client.head_object(Bucket=bucket, Key=obj["Key"])["Metadata"]
    assert trace_id in meta["attr-profiling.trace_ids"]
    assert meta["attr-profiling.profile.url"] == profile_url


def traced(agent: ProfilingAgent) -> Tuple[Any, InMemorySpanExporter]:
    """A tracer whose spans go through ProfilingSpanProcessor(agent) into memory."""
    provider = TracerProvider()
    spans = InMemorySpanExporter()
    provider.add_span_processor(ProfilingSpanProcessor(agent))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider.get_tracer("test"), spans


def memory_agent() -> Tuple[ProfilingAgent, ManualTrigger, InMemoryProfileExporter]:
    exported = InMemoryProfileExporter()
    agent = ProfilingAgent()
    agent.add_profile_processor(
        SimpleProfileProcessor(FsspecProfileExporter(f"memory://links-{uuid.uuid4().hex}"))
    )
    agent.add_profile_processor(SimpleProfileProcessor(exported))
    trigger = ManualTrigger()
    agent.register(trigger, CpuProfiler())
    return agent.start(), trigger, exported


def test_span_running_when_the_profile_starts_is_linked() -> None:
    agent, trigger, exported = memory_agent()
    tracer, spans = traced(agent)
    try:
        with tracer.start_as_current_span("long job") as job:
            [profile] = trigger.start()
            handle_report()
            trigger.stop()
    finally:
        agent.shutdown(5_000)
    [finished] = spans.get_finished_spans()
    assert (
        finished.attributes["profiling.profile.url"] == profile.attributes["profiling.profile.url"]
    )
    assert str(profile.attributes["profiling.profile.url"]).startswith("memory:///links-")
    [ended] = exported.get_finished_profiles()
    assert list(ended.attributes["profiling.trace_ids"]) == [
        format_trace_id(job.get_span_context().trace_id)
    ]
    # the span names its thread, whose subtree the CPU profile holds
    assert finished.attributes["thread.id"] == threading.get_ident()
    assert finished.attributes["thread.name"] == threading.current_thread().name
    thread_node = f"{threading.current_thread().name} (thread {threading.get_ident()})"
    assert thread_node in cpuprofile_function_names(load_cpuprofile(ended.data))


def test_links_per_profile_are_bounded() -> None:
    agent, trigger, exported = memory_agent()
    provider = TracerProvider()
    provider.add_span_processor(ProfilingSpanProcessor(agent, max_links_per_profile=3))
    tracer = provider.get_tracer("test")
    try:
        trigger.start()
        for index in range(5):
            with tracer.start_as_current_span(f"request {index}"):
                pass
        trigger.stop()
    finally:
        agent.shutdown(5_000)
    [profile] = exported.get_finished_profiles()
    assert len(profile.attributes["profiling.trace_ids"]) == 3
    assert len(profile.attributes["profiling.span_ids"]) == 3
    assert profile.attributes["profiling.links.dropped"] == 2


def test_processor_without_agent_uses_the_global_one() -> None:
    _reset_profiling_agent()
    provider = TracerProvider()
    spans = InMemorySpanExporter()
    provider.add_span_processor(ProfilingSpanProcessor())  # before profiling is configured
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("no agent yet"):
        pass
    agent, trigger, exported = memory_agent()
    set_profiling_agent(agent)
    try:
        [profile] = trigger.start()
        with tracer.start_as_current_span("profiled"):
            pass
        trigger.stop()
    finally:
        _reset_profiling_agent()
        agent.shutdown(5_000)
    first, second = spans.get_finished_spans()
    assert "profiling.profile.url" not in first.attributes
    assert second.attributes["profiling.profile.url"] == profile.attributes["profiling.profile.url"]


def test_two_profiles_at_once_put_both_urls_on_the_span() -> None:
    agent = ProfilingAgent()
    agent.add_profile_processor(
        SimpleProfileProcessor(FsspecProfileExporter(f"memory://two-{uuid.uuid4().hex}"))
    )
    cpu_trigger, note_trigger = ManualTrigger(), ManualTrigger()
    agent.register(cpu_trigger, CpuProfiler())
    agent.register(note_trigger, GcCountsSnapshotProfiler())
    agent.start()
    tracer, spans = traced(agent)
    try:
        [cpu] = cpu_trigger.start()
        with tracer.start_as_current_span("both"):
            [note] = note_trigger.start()  # starts while the span runs
        note_trigger.stop()
        cpu_trigger.stop()
    finally:
        agent.shutdown(5_000)
    [span] = spans.get_finished_spans()
    cpu_url = cpu.attributes["profiling.profile.url"]
    note_url = note.attributes["profiling.profile.url"]
    assert str(note_url).endswith(".heapsnapshot") and note_url != cpu_url
    assert span.attributes["profiling.profile.url"] == cpu_url
    assert list(span.attributes["profiling.profile.urls"]) == [cpu_url, note_url]
    trace_id = format_trace_id(span.context.trace_id)
    assert list(cpu.attributes["profiling.trace_ids"]) == [trace_id]
    assert list(note.attributes["profiling.trace_ids"]) == [trace_id]


def test_traced_service_example(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = child_env()
    for name in list(env):
        if name.startswith("OTEL_"):
            del env[name]
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "traced_service.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    trace_id = lines["trace id"].strip()
    assert lines["profile -> trace ids"].strip() == trace_id
    url = lines["span -> profile"].strip()
    assert url.startswith(f"file://{tmp_path}/profiles/CPU_PROFILE-")
    with fsspec.open(url, "rb") as handle:
        assert "handle_request" in cpuprofile_function_names(load_cpuprofile(handle.read()))


def test_forked_child_does_not_link_to_the_parents_profile() -> None:
    agent, trigger, _ = memory_agent()
    tracer, spans = traced(agent)
    try:
        [profile] = trigger.start()
        pid = os.fork()
        if pid == 0:  # child: the parent's running profile is not this process's
            code = 1
            try:
                with tracer.start_as_current_span("child request"):
                    pass
                [span] = spans.get_finished_spans()
                code = 0 if "profiling.profile.url" not in span.attributes else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        with tracer.start_as_current_span("parent request"):
            pass
        trigger.stop()
    finally:
        agent.shutdown(5_000)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    [span] = spans.get_finished_spans()
    assert span.attributes["profiling.profile.url"] == profile.attributes["profiling.profile.url"]


class UserinfoExporter(InMemoryProfileExporter):
    """An exporter whose object URLs carry credentials (as an ftp:// or http:// one may)."""

    def url_for(self, profile) -> str:  # type: ignore[no-untyped-def]
        return f"ftp://alice:hunter2@files.example/profiles/{profile.key}"


def test_profile_url_never_carries_credentials() -> None:
    agent = ProfilingAgent()
    agent.add_profile_processor(SimpleProfileProcessor(UserinfoExporter()))
    trigger = ManualTrigger()
    agent.register(trigger, GcCountsSnapshotProfiler())
    agent.start()
    try:
        [profile] = trigger.start()
        trigger.stop()
    finally:
        agent.shutdown(5_000)
    url = profile.attributes["profiling.profile.url"]
    assert url == f"ftp://***@files.example/profiles/{profile.key}"
    assert "hunter2" not in str(dict(profile.attributes))
