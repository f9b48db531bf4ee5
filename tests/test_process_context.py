"""The process context (OTEP 4719) as an outside reader finds it.

The test reads ``/proc/<pid>/maps`` and ``/proc/<pid>/mem`` itself and decodes
the payload with protobuf's own runtime against the ``ProcessContext`` message
(built here from the OTEP's proto, over opentelemetry-proto's ``Resource`` and
``KeyValue``), independently of the library's encoder and reader.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest
from support import APPS, child_env, wait_for

from otel_profiling import ProfilingAgent, __version__, process_context
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import HttpTrigger, SignalTrigger

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc only")

HEADER = struct.Struct("<8sIIQQ")  # the OTEP's header: signature, version, size, time, payload


def _process_context_class() -> Any:
    """``ProcessContext`` (sig-profiling's process_context.proto) for protobuf's runtime."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    file = descriptor_pb2.FileDescriptorProto(
        name="process_context.proto",
        package="opentelemetry.proto.processcontext.v1development",
        syntax="proto3",
        dependency=[resource_pb2.DESCRIPTOR.name, common_pb2.DESCRIPTOR.name],
    )
    message = file.message_type.add(name="ProcessContext")
    message.field.add(
        name="resource",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        type_name=".opentelemetry.proto.resource.v1.Resource",
    )
    message.field.add(
        name="extra_attributes",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        type_name=".opentelemetry.proto.common.v1.KeyValue",
    )
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(
            "opentelemetry.proto.processcontext.v1development.ProcessContext"
        )
    )


ProcessContextMessage = _process_context_class()


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class Context:
    """One reading of a process's ``OTEL_CTX`` mapping."""

    def __init__(self, maps_line: str, header: Tuple, payload: bytes) -> None:
        self.maps_line = maps_line
        self.signature, self.version, self.size, self.published_at, self.payload_at = header
        message = ProcessContextMessage()
        message.ParseFromString(payload)
        self.resource: Dict[str, Any] = {
            kv.key: _value(kv.value) for kv in message.resource.attributes
        }
        self.extra: Dict[str, Any] = {kv.key: _value(kv.value) for kv in message.extra_attributes}


def otel_ctx_lines(pid: int) -> list:
    with open(f"/proc/{pid}/maps") as maps:
        return [
            line
            for line in maps
            if line.split()[-1:] == ["[anon:OTEL_CTX]"] or "/memfd:OTEL_CTX" in line
        ]


def read_context(pid: int) -> Optional[Context]:
    """The OTEP's reading protocol: maps, header, payload, header again."""
    lines = otel_ctx_lines(pid)
    if not lines:
        return None
    assert len(lines) == 1, lines  # one context per process
    start = int(lines[0].split("-")[0], 16)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for _ in range(50):
            mem.seek(start)
            header = HEADER.unpack(mem.read(HEADER.size))
            if header[3] == 0:
                time.sleep(0.01)
                continue
            mem.seek(header[4])
            payload = mem.read(header[2])
            mem.seek(start)
            if HEADER.unpack(mem.read(HEADER.size))[3] == header[3]:
                return Context(lines[0], header, payload)
    raise AssertionError("the context kept changing while being read")


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Tuple[subprocess.Popen, int, int]]:
    """A child configured by env vars only; yields (process, pid, time before it started)."""
    before = time.time_ns()
    env = child_env(
        OTEL_SERVICE_NAME="ctx-test",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=test",
        OTEL_EXPORTER_FSSPEC_PROFILES_URL=f"file://{tmp_path}/profiles",
        OTEL_PROFILING_HTTP_PORT="0",
    )
    proc = subprocess.Popen(
        [sys.executable, str(APPS / "context_app.py"), str(tmp_path / "stop-child")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[:1] == ["ready"], (line, proc.stderr.read() if proc.stderr else "")
        yield proc, int(line[1]), before
    finally:
        (tmp_path / "stop-child").touch()
        if proc.poll() is None:
            proc.communicate("quit\n", timeout=30)


def test_a_configured_process_publishes_its_resource(configured: Tuple) -> None:
    proc, pid, before = configured
    context = read_context(pid)
    assert context is not None, "no OTEL_CTX mapping in /proc/<pid>/maps"
    assert "/memfd:OTEL_CTX" in context.maps_line  # memfds are allowed here
    assert context.signature == b"OTEL_CTX" and context.version == 2
    assert before <= context.published_at <= time.time_ns()
    assert context.resource["service.name"] == "ctx-test"
    assert context.resource["deployment.environment.name"] == "test"
    assert context.resource["telemetry.sdk.language"] == "python"
    uuid.UUID(context.resource["service.instance.id"])
    assert context.extra["otel_profiling.version"] == __version__
    assert context.extra["otel_profiling.trigger.signal"] == signal.SIGUSR2
    url = context.extra["otel_profiling.trigger.http"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/debug/profile")
    assert get(url + "/") == 200  # the published port is the one it serves


def test_a_forked_child_publishes_its_own(configured: Tuple, tmp_path: Path) -> None:
    proc, pid, _ = configured
    parent = read_context(pid)
    assert parent is not None
    proc.stdin.write("fork\n")
    proc.stdin.flush()
    line = proc.stdout.readline().split()
    assert line[:1] == ["child"], line
    child_pid = int(line[1])
    child = wait_for(lambda: read_context(child_pid), timeout=30)
    assert child is not None, "the forked child published no context"
    assert child.maps_line != parent.maps_line or child_pid != pid
    assert child.resource["service.name"] == "ctx-test"
    assert child.resource["service.instance.id"] != parent.resource["service.instance.id"]
    child_url = child.extra["otel_profiling.trigger.http"]
    assert child_url != parent.extra["otel_profiling.trigger.http"]  # a port of its own
    assert get(child_url + "/") == 200 and get(parent.extra["otel_profiling.trigger.http"] + "/")
    again = read_context(pid)
    assert again is not None and again.published_at == parent.published_at  # untouched
    assert again.resource == parent.resource
    (tmp_path / "stop-child").touch()  # the child shuts its agent down: its context goes

    def gone() -> bool:
        try:
            return not otel_ctx_lines(child_pid)  # empty for a zombie too
        except FileNotFoundError:
            return True

    assert wait_for(gone, timeout=30)


def test_updated_on_change_and_removed_at_shutdown() -> None:
    agent = ProfilingAgent()
    agent.register(SignalTrigger(signal.SIGUSR1), CpuProfiler())
    agent.start()
    try:
        first = read_context(os.getpid())
        assert first is not None
        assert first.extra["otel_profiling.trigger.signal"] == signal.SIGUSR1
        assert "otel_profiling.trigger.http" not in first.extra
        http = HttpTrigger(port=0)
        agent.register(http, CpuProfiler())
        second = read_context(os.getpid())
        assert second is not None
        assert second.extra["otel_profiling.trigger.http"] == http.url
        assert second.published_at > first.published_at
        assert second.maps_line == first.maps_line  # updated in place
    finally:
        agent.shutdown()
    assert otel_ctx_lines(os.getpid()) == []


def test_removed_at_shutdown_when_published_once() -> None:
    """An agent that published once and never updated still removes its context."""
    agent = ProfilingAgent()
    agent.register(SignalTrigger(signal.SIGUSR1), CpuProfiler())
    agent.start()
    try:
        assert read_context(os.getpid()) is not None
    finally:
        agent.shutdown()
    assert otel_ctx_lines(os.getpid()) == []


def test_the_librarys_reader_agrees(configured: Tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_profiling import process_context_reader

    _, pid, _ = configured
    independent = read_context(pid)
    ours = process_context_reader.read_process_context(pid)
    assert independent is not None and ours is not None
    assert ours.resource == independent.resource and ours.extra == independent.extra
    assert ours.signal == signal.SIGUSR2 and ours.agent_version == __version__

    # When /proc/<pid>/mem is refused (kernel.yama.ptrace_scope), the memfd is read instead.
    real_open = os.open

    def refuse_mem(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("/mem"):
            raise PermissionError(1, "Operation not permitted")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(process_context_reader.os, "open", refuse_mem)
    through_fd = process_context_reader.read_process_context(pid)
    assert through_fd is not None and through_fd.extra == independent.extra


def test_no_context_without_an_agent() -> None:
    from otel_profiling.process_context_reader import read_process_context

    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        assert otel_ctx_lines(plain.pid) == []
        assert read_process_context(plain.pid) is None
    finally:
        plain.kill()
        plain.wait()


def test_encoder_writes_every_attribute_type() -> None:
    payload = process_context.encode(
        {"s": "text", "i": -3, "b": True, "f": 1.5, "l": ["a", "b"]}, {"x": 7}
    )
    message = ProcessContextMessage()
    message.ParseFromString(payload)
    assert {kv.key: _value(kv.value) for kv in message.resource.attributes} == {
        "s": "text",
        "i": -3,
        "b": True,
        "f": 1.5,
        "l": ["a", "b"],
    }
    assert [(kv.key, _value(kv.value)) for kv in message.extra_attributes] == [("x", 7)]
