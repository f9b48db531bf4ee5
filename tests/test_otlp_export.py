"""Profiles over OTLP to a real receiver (HTTP and gRPC), checked against the specification.

Every request the receivers get is decoded with the official generated classes
and run through ``otlp_checker.check`` (zero entries, index bounds, sample
shape, timestamps inside the window, id lengths). The applications time their
own work: CPU values match it within ±15 %, heap bytes within ±10 %.

CPU payloads are sampled in child processes, never in this one: on CPython 3.11
walking the frames of gRPC's threads (Cython frames) from the sampler crashed
the interpreter once in a full run here.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from otlp_receiver import GrpcReceiver, HttpReceiver, Receiver, profiles_of
from support import APPS, child_env, free_port, wait_for

from otel_profiling.exporters.otlp import OtlpProfileExporter
from otel_profiling.exporters.otlp_config import OtlpConfig, config_from_env
from otel_profiling.formats import default_format, get_format, read_profile
from otel_profiling.processors.batch import BatchProfileProcessor
from otel_profiling.processors.spool import Spool
from otel_profiling.profile import Profile, ProfileKind
from otel_profiling.version import __version__

CPU_TOLERANCE = 0.15
HEAP_TOLERANCE = 0.10
PROTOCOLS = ["http/protobuf", "grpc"]


def within(value: float, truth: float, tolerance: float) -> bool:
    return abs(value - truth) <= tolerance * truth


@pytest.fixture(params=PROTOCOLS)
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server: Any = HttpReceiver() if request.param == "http/protobuf" else GrpcReceiver()
    server.protocol = request.param
    server.start()
    yield server
    server.stop()
    server.raise_errors()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()
    server.raise_errors()


def run_app(receiver: Receiver, protocol: str, *args: str, **env: str) -> Dict[str, Any]:
    """The app, configured by environment variables only; returns what it measured."""
    endpoint = receiver.endpoint  # type: ignore[attr-defined]
    variables = {
        "OTEL_PROFILES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_SERVICE_NAME": "otlp-app",
        "OTEL_PROFILING_CPU_FORMAT": "pprof",
        **env,
    }
    run = subprocess.run(
        [sys.executable, str(APPS / "otlp_app.py"), *args],
        env=child_env(**variables),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert wait_for(lambda: receiver.requests, timeout=30), run.stderr
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def names_of(dictionary: Any, stack_index: int) -> List[str]:
    """Function names of a stack, leaf first."""
    names = []
    for loc in dictionary.stack_table[stack_index].location_indices:
        for line in dictionary.location_table[loc].lines:
            function = dictionary.function_table[line.function_index]
            names.append(dictionary.string_table[function.name_strindex])
    return names


def attributes(dictionary: Any, indices: Any) -> Dict[str, Any]:
    out = {}
    for index in indices:
        entry = dictionary.attribute_table[index]
        value = entry.value
        out[dictionary.string_table[entry.key_strindex]] = getattr(value, value.WhichOneof("value"))
    return out


def text(dictionary: Any, value_type: Any) -> Tuple[str, str]:
    return (
        dictionary.string_table[value_type.type_strindex],
        dictionary.string_table[value_type.unit_strindex],
    )


# -- an application sends its CPU profile ------------------------------------------------------


def test_cpu_profile_carries_span_links_timestamps_and_the_apps_timing(
    receiver: Receiver,
) -> None:
    truth = run_app(receiver, receiver.protocol)  # type: ignore[attr-defined]
    (profile, d, resource), *rest = profiles_of(receiver)
    assert rest == []
    resource_attrs = {kv.key: kv.value.string_value for kv in resource.attributes}
    assert resource_attrs["service.name"] == "otlp-app"
    scope = receiver.requests[0].resource_profiles[0].scope_profiles[0].scope
    assert scope.name == "otel_profiling"
    assert text(d, profile.sample_type) == ("wall", "nanoseconds")
    assert text(d, profile.period_type) == ("wall", "nanoseconds")
    assert profile.period == 10_000_000  # the default 0.01 s sampling interval
    assert profile.duration_nano >= truth["main_seconds"] * 1e9

    for location in d.location_table[1:]:
        assert location.mapping_index == 0
        assert attributes(d, location.attribute_indices) == {"profile.frame.type": "cpython"}
    hot_ns = 0
    hot_stamps: List[int] = []
    for sample in profile.samples:
        names = names_of(d, sample.stack_index)
        attrs = attributes(d, sample.attribute_indices)
        assert attrs["thread.name"] and attrs["thread.id"], "every sample names its thread"
        link = d.link_table[sample.link_index]
        if "hot_work" in names:
            assert sample.link_index != 0, "hot_work ran inside the span"
            assert link.trace_id.hex() == truth["trace_id"]
            assert link.span_id.hex() == truth["span_id"]
            assert attrs["thread.name"] == "MainThread"
            hot_ns += sum(sample.values)
            hot_stamps.extend(sample.timestamps_unix_nano)
        if "cold_work" in names:
            assert sample.link_index == 0, "cold_work ran outside any span"
        assert len(sample.timestamps_unix_nano) == len(sample.values)
    assert within(hot_ns / 1e9, truth["hot_seconds"], CPU_TOLERANCE)
    # the timeline: hot_work's samples span the time it ran
    assert within((max(hot_stamps) - min(hot_stamps)) / 1e9, truth["hot_seconds"], CPU_TOLERANCE)
    if receiver.protocol == "http/protobuf":  # type: ignore[attr-defined]
        assert receiver.headers[0]["Content-Encoding"] == "gzip"


def test_cpuprofile_payload_keeps_threads_and_timeline_without_links(
    http_receiver: HttpReceiver,
) -> None:
    truth = run_app(http_receiver, "http/protobuf", OTEL_PROFILING_CPU_FORMAT="cpuprofile")
    ((profile, d, _),) = profiles_of(http_receiver)
    hot_ns = sum(sum(s.values) for s in profile.samples if "hot_work" in names_of(d, s.stack_index))
    assert within(hot_ns / 1e9, truth["hot_seconds"], CPU_TOLERANCE)
    threads = {attributes(d, s.attribute_indices).get("thread.name") for s in profile.samples}
    assert "MainThread" in threads
    assert all(s.timestamps_unix_nano for s in profile.samples)
    assert len(d.link_table) == 1  # a .cpuprofile has no trace ids


@pytest.mark.parametrize(
    "engine, fmt, period",
    [
        # the sampling engine: the interval it was configured with (5 ms), in every format
        ("sampling", "cpuprofile", 5_000_000),
        ("sampling", "folded", 5_000_000),
        ("sampling", "speedscope", 5_000_000),
        # yappi does not sample: what its pprof says, the payload as written for pprof (a
        # call tree's period, 1) and, converted from another format, 0 (no interval)
        ("yappi", "cpuprofile", 0),
        ("yappi", "pprof", 1),
    ],
)
def test_cpu_profile_carries_the_period_its_pprof_has(
    http_receiver: HttpReceiver, engine: str, fmt: str, period: int
) -> None:
    """A ``.cpuprofile`` went out with period 0 while its pprof said the interval."""
    run_app(
        http_receiver,
        "http/protobuf",
        OTEL_PROFILING_CPU_FORMAT=fmt,
        OTEL_PROFILING_CPU_ENGINE=engine,
        OTEL_PROFILING_CPU_INTERVAL="0.005",
    )
    ((profile, d, _),) = profiles_of(http_receiver)
    assert attributes(d, profile.attribute_indices)["profiling.cpu.engine"] == engine
    assert text(d, profile.period_type) == ("wall", "nanoseconds")
    assert profile.period == period


def test_heap_profile_bytes_match_what_the_app_keeps(receiver: Receiver) -> None:
    truth = run_app(
        receiver,
        receiver.protocol,  # type: ignore[attr-defined]
        "heap",
        OTEL_PROFILING_PROFILERS="heap",
        OTEL_PROFILING_HEAP_FORMAT="pprof",
    )
    by_type = {text(d, p.sample_type): (p, d) for p, d, _ in profiles_of(receiver)}
    assert set(by_type) == {("inuse_space", "bytes"), ("inuse_objects", "count")}
    space, d = by_type[("inuse_space", "bytes")]
    kept = sum(sum(s.values) for s in space.samples if "keep_memory" in names_of(d, s.stack_index))
    assert within(kept, truth["kept_bytes"], HEAP_TOLERANCE)
    objects, _ = by_type[("inuse_objects", "count")]
    blocks = sum(
        sum(s.values) for s in objects.samples if "keep_memory" in names_of(d, s.stack_index)
    )
    # each bytearray is two live blocks: the object and its buffer
    assert within(blocks, 2 * truth["kept_objects"], HEAP_TOLERANCE)
    # both profiles share the request's one dictionary
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("heap_format", ["heapprofile", "folded", "speedscope"])
def test_payload_without_object_counts_gives_inuse_space_only(
    http_receiver: HttpReceiver, heap_format: str
) -> None:
    """These formats keep bytes per stack, no object counts: no ``inuse_objects``."""
    truth = run_app(
        http_receiver,
        "http/protobuf",
        "heap",
        OTEL_PROFILING_PROFILERS="heap",
        OTEL_PROFILING_HEAP_FORMAT=heap_format,
    )
    ((profile, d, _),) = profiles_of(http_receiver)
    assert text(d, profile.sample_type) == ("inuse_space", "bytes")
    kept = sum(
        sum(s.values) for s in profile.samples if "keep_memory" in names_of(d, s.stack_index)
    )
    assert within(kept, truth["kept_bytes"], HEAP_TOLERANCE)


# -- delivery --------------------------------------------------------------------------------------


_PAYLOAD_PROGRAM = """
import sys, time
from otel_profiling.profilers import CpuProfiler
profiler = CpuProfiler(format="pprof")
profiler.start()
end = time.perf_counter() + float(sys.argv[1])
while time.perf_counter() < end:
    pass
sys.stdout.buffer.write(profiler.stop())
"""


@functools.cache
def _sampled_payload(seconds: float) -> bytes:
    """A real sampling CPU profile in pprof, taken in a child process: the sampler never
    runs beside this process's gRPC threads (see the module docstring)."""
    run = subprocess.run(
        [sys.executable, "-c", _PAYLOAD_PROGRAM, str(seconds)],
        env=child_env(),
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def cpu_profile(seconds: float = 0.3) -> Profile:
    """A profile record around a real sampling payload, its window the payload's own."""
    data = _sampled_payload(seconds)
    tree = read_profile(data, fmt="pprof")
    start = datetime.fromtimestamp(tree.start_ns / 1e9, timezone.utc)
    end = datetime.fromtimestamp((tree.start_ns + tree.duration_ns) / 1e9, timezone.utc)
    profile = Profile(
        ProfileKind.CPU_PROFILE, get_format(ProfileKind.CPU_PROFILE, "pprof"), start_time=start
    )
    profile.end(data, end_time=end + timedelta(microseconds=1))
    return profile


_MADE: List[OtlpProfileExporter] = []


@pytest.fixture(autouse=True)
def _close_exporters() -> Iterator[None]:
    """Each test's exporters are shut down (their gRPC channels closed) when it ends."""
    yield
    while _MADE:
        _MADE.pop().shutdown()


def exporter_for(receiver: Receiver, protocol: str, **kw: Any) -> OtlpProfileExporter:
    endpoint = receiver.endpoint  # type: ignore[attr-defined]
    if protocol == "http/protobuf":
        endpoint += "/v1development/profiles"
    exporter = OtlpProfileExporter(OtlpConfig(endpoint=endpoint, protocol=protocol, **kw))
    _MADE.append(exporter)
    return exporter


def test_retries_on_unavailable_honouring_the_receivers_delay(receiver: Receiver) -> None:
    protocol = receiver.protocol  # type: ignore[attr-defined]
    if protocol == "grpc":
        receiver.script = [("UNAVAILABLE", 0.4), ("RESOURCE_EXHAUSTED", 0.4)]
    else:
        receiver.script = [(503, 0.4, "busy"), (429, 0.4, "slow down")]
    exporter = exporter_for(receiver, protocol, timeout_millis=20_000)
    began = time.monotonic()
    assert exporter.export_unsent([cpu_profile()]) == []
    assert receiver.attempts == 3
    assert len(receiver.requests) == 1
    assert exporter.sent_profiles == 1
    assert time.monotonic() - began >= 0.8  # both asked-for waits were honoured


def test_invalid_argument_is_not_retried_and_logged_once(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    protocol = receiver.protocol  # type: ignore[attr-defined]
    failure: Any = ("INVALID_ARGUMENT", None) if protocol == "grpc" else (400, None, "bad stack")
    receiver.script = [failure, failure]
    exporter = exporter_for(receiver, protocol, timeout_millis=20_000)
    profiles = [cpu_profile(0.1)]
    with caplog.at_level(logging.ERROR, logger="otel_profiling.exporters.otlp"):
        # the content is refused: dropped (the specification's MUST), not handed back to spool
        assert exporter.export_unsent(profiles) == []
        assert exporter.export_unsent(profiles) == []
    assert receiver.attempts == 2  # one try per export, none retried
    assert exporter.refused_profiles == 2 and exporter.sent_profiles == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "the same refusal is logged once"
    expected = "scripted INVALID_ARGUMENT" if protocol == "grpc" else "bad stack"
    assert expected in errors[0].getMessage()
    assert "refused_profiles" in errors[0].getMessage()


def test_refused_content_is_not_spooled_and_sent_again(receiver: Receiver, tmp_path: Any) -> None:
    """HTTP 400 / ``INVALID_ARGUMENT`` "MUST NOT" be retried: re-sending it from the spool
    every backoff interval would be a retry (forever, as the answer never changes)."""
    protocol = receiver.protocol  # type: ignore[attr-defined]
    failure: Any = ("INVALID_ARGUMENT", None) if protocol == "grpc" else (400, None, "bad stack")
    receiver.script = [failure] * 20
    exporter = exporter_for(receiver, protocol, timeout_millis=5000)
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=50, spool=Spool(tmp_path))
    try:
        processor.on_end(cpu_profile(0.1))
        assert wait_for(lambda: receiver.attempts >= 1, timeout=30)
        # the spool re-sends after 1 s, then 2 s: 3.5 s leaves room for two re-sends
        time.sleep(3.5)
        assert receiver.attempts == 1
        assert exporter.refused_profiles == 1
        assert processor.spooled_profiles == 0
    finally:
        processor.shutdown(5000)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_protocol_sent_to_the_others_port_is_one_clear_error_and_spooled(
    protocol: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """http/protobuf to a gRPC port was retried until the deadline as a connection error,
    logged as a ``BadStatusLine`` of HTTP/2 frame bytes; grpc to an HTTP port as
    ``UNAVAILABLE``. One error naming the fix, no retry, the profile spooled."""
    server: Any = GrpcReceiver() if protocol == "http/protobuf" else HttpReceiver()
    server.start()
    try:
        exporter = exporter_for(server, protocol, timeout_millis=20_000)
        processor = BatchProfileProcessor(
            exporter, schedule_delay_millis=50, spool=Spool(tmp_path / "spool")
        )
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="otel_profiling.exporters.otlp"):
            processor.on_end(cpu_profile(0.1))
            assert wait_for(lambda: processor.spooled_profiles == 1, timeout=30)
            # not retried until the 20 s deadline: 5 s is slack for a loaded machine
            assert time.monotonic() - began < 5
            processor.force_flush(5000)  # the spool's re-send gets the same answer
            processor.shutdown(5000)
        assert processor.failed_profiles == 0 and exporter.sent_profiles == 0
        other = "grpc" if protocol == "http/protobuf" else "http/protobuf"
        records = [r.getMessage() for r in caplog.records if r.name.endswith("otlp")]
        assert len(records) == 1, records
        assert f"OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL={other}" in records[0]
        assert "4318" in records[0] and "4317" in records[0]
        assert "BadStatusLine" not in records[0] and "\x00" not in records[0]
    finally:
        server.stop()


def test_grpc_retries_the_codes_the_specification_calls_retryable() -> None:
    receiver = GrpcReceiver().start()
    try:
        receiver.script = [(code, None) for code in ("CANCELLED", "ABORTED", "OUT_OF_RANGE")]
        receiver.script.append(("DATA_LOSS", None))
        exporter = exporter_for(receiver, "grpc", timeout_millis=20_000)
        assert exporter.export_unsent([cpu_profile(0.1)]) == []
        assert receiver.attempts == 5 and len(receiver.requests) == 1
    finally:
        receiver.stop()
    receiver.raise_errors()


def test_grpc_message_over_the_receivers_limit_is_refused_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """gRPC answers a message over the server's limit with ``RESOURCE_EXHAUSTED`` and no
    ``RetryInfo``: not retryable per the specification (it would fail until the deadline,
    then again from the spool forever). The exporter's own 4 MiB bound keeps batches under
    gRPC's default; here the receiver takes 512 bytes, below one request."""
    receiver = GrpcReceiver(max_message=512).start()
    try:
        exporter = exporter_for(receiver, "grpc", timeout_millis=20_000)
        began = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="otel_profiling.exporters.otlp"):
            assert exporter.export_unsent([cpu_profile(0.3)]) == []
        assert time.monotonic() - began < 5, "not retried until the 20 s deadline"
        assert exporter.refused_profiles == 1 and exporter.sent_profiles == 0
        assert "max_recv_msg_size_mib" in caplog.text
    finally:
        receiver.stop()
    receiver.raise_errors()


def test_grpc_resource_exhausted_with_retry_info_is_retried() -> None:
    receiver = GrpcReceiver().start()
    try:
        receiver.script = [("RESOURCE_EXHAUSTED", 0.3)]
        exporter = exporter_for(receiver, "grpc", timeout_millis=20_000)
        began = time.monotonic()
        assert exporter.export_unsent([cpu_profile(0.1)]) == []
        assert time.monotonic() - began >= 0.3
        assert receiver.attempts == 2 and len(receiver.requests) == 1
    finally:
        receiver.stop()
    receiver.raise_errors()


def test_retry_after_as_an_http_date_is_honoured(http_receiver: HttpReceiver) -> None:
    """RFC 9110: ``Retry-After`` is seconds or an HTTP date; a date 2 s ahead (whole seconds:
    at least 1 s from now) must delay the retry by at least 1 s, not the backoff's ~0.1 s."""
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    http_receiver.script = [(503, when, "busy")]
    exporter = exporter_for(http_receiver, "http/protobuf", timeout_millis=20_000)
    began = time.monotonic()
    assert exporter.export_unsent([cpu_profile(0.1)]) == []
    assert time.monotonic() - began >= 1.0
    assert http_receiver.attempts == 2


def test_a_header_http_refuses_is_reported_without_its_value(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A value with a control character (``%0A`` decoded) made every request raise an error
    quoting the value, a token, into the log; the profiles were lost."""
    protocol = receiver.protocol  # type: ignore[attr-defined]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_HEADERS", "api-key=s3cr3t%0Aevil")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL", protocol)
    endpoint = receiver.endpoint  # type: ignore[attr-defined]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    with caplog.at_level(logging.DEBUG):
        exporter = OtlpProfileExporter()
        _MADE.append(exporter)
        processor = BatchProfileProcessor(exporter, spool=False)
        processor.on_end(cpu_profile(0.1))
        processor.shutdown(10_000)
    assert "s3cr3t" not in caplog.text
    assert "OTEL_EXPORTER_OTLP_PROFILES_HEADERS" in caplog.text and "'api-key'" in caplog.text
    assert processor.exported_profiles == 1  # sent without the header it could not use
    with pytest.raises(ValueError, match="'api-key'") as caught:
        OtlpConfig(headers={"api-key": "s3cr3t\r\nx"})
    assert "s3cr3t" not in str(caught.value)


class _Redirect(BaseHTTPRequestHandler):
    """Answers every POST with ``301`` to ``target`` (an http ingress moving to https does)."""

    target = ""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(301)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_redirect_is_not_followed_and_names_the_new_location(
    http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """urllib followed a 301 to a POST with a GET without the body, carrying the token to
    the other host; a 200 to that GET counted the profile as sent."""
    handler = type("Redirect", (_Redirect,), {"target": http_receiver.endpoint + "/p"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1development/profiles"
        exporter = OtlpProfileExporter(
            OtlpConfig(endpoint=endpoint, headers={"authorization": "Bearer s3cr3t"})
        )
        _MADE.append(exporter)
        profiles = [cpu_profile(0.1)]
        with caplog.at_level(logging.ERROR, logger="otel_profiling.exporters.otlp"):
            assert exporter.export_unsent(profiles) == profiles  # kept: the endpoint is wrong
        assert http_receiver.connections == 0, "nothing, and no token, goes to the new host"
        assert http_receiver.endpoint + "/p" in caplog.text
        assert "s3cr3t" not in caplog.text
    finally:
        server.shutdown()
        server.server_close()


def test_a_receiver_answering_a_byte_at_a_time_cannot_hold_the_export() -> None:
    """The timeout is the export's deadline: urllib's bounds each read only, so an answer
    of one byte every 0.5 s (30 s in all) held a 1 s export, and the process's exit."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
    answer += b"Content-Length: 0\r\n\r\n"

    def drip() -> None:
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(30)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                for byte in answer[:60]:
                    connection.sendall(bytes([byte]))
                    time.sleep(0.5)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}/v1development/profiles"
        exporter = OtlpProfileExporter(OtlpConfig(endpoint=endpoint, timeout_millis=1000))
        _MADE.append(exporter)
        profiles = [cpu_profile(0.1)]
        began = time.monotonic()
        assert exporter.export_unsent(profiles) == profiles
        # 1 s deadline; 2 s of slack for a loaded machine, far below the 30 s answer
        assert time.monotonic() - began < 3.0
    finally:
        listener.close()


def test_a_batch_is_split_into_requests_below_the_size_bound(
    http_receiver: HttpReceiver,
) -> None:
    exporter = exporter_for(http_receiver, "http/protobuf")
    profiles = [cpu_profile(0.1) for _ in range(5)]
    one = len(http_receiver.requests)
    assert exporter.export_unsent(profiles) == []
    assert len(http_receiver.requests) == one + 1  # all five in one request by default
    exporter.max_request_bytes = 1  # every profile alone
    assert exporter.export_unsent(profiles) == []
    assert len(http_receiver.requests) == one + 6
    assert all(len(profiles_of_request(r)) == 1 for r in http_receiver.requests[one + 1 :])


def profiles_of_request(request: Any) -> List[Any]:
    return [p for rp in request.resource_profiles for sp in rp.scope_profiles for p in sp.profiles]


def test_partial_success_is_logged_and_counted(
    http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    http_receiver.rejected = 1
    exporter = exporter_for(http_receiver, "http/protobuf")
    with caplog.at_level(logging.WARNING, logger="otel_profiling.exporters.otlp"):
        assert exporter.export_unsent([cpu_profile(0.1)]) == []
    assert exporter.rejected_profiles == 1
    assert "sample too old" in caplog.text


def test_receiver_down_spools_and_sends_when_back(tmp_path: Any) -> None:
    port = free_port()
    exporter = OtlpProfileExporter(
        OtlpConfig(endpoint=f"http://127.0.0.1:{port}/v1development/profiles")
    )
    processor = BatchProfileProcessor(
        exporter,
        schedule_delay_millis=50,
        export_timeout_millis=1000,
        spool=Spool(tmp_path / "spool"),
    )
    try:
        processor.on_end(cpu_profile(0.2))
        assert wait_for(lambda: processor.spooled_profiles == 1, timeout=30)
        server = HttpReceiver(port).start()
        try:
            assert wait_for(lambda: processor.resent_profiles == 1, timeout=90)
            assert len(server.requests) == 1
            # read back from the spool's bytes: the timeline and threads are still there
            ((profile, d, _),) = profiles_of(server)
            assert all(s.timestamps_unix_nano for s in profile.samples)
            assert all("thread.name" in attributes(d, s.attribute_indices) for s in profile.samples)
            server.raise_errors()
        finally:
            server.stop()
    finally:
        processor.shutdown(5000)
    assert processor.exported_profiles == 0 and processor.failed_profiles == 0


def test_heap_snapshot_is_skipped_with_one_line_and_counted(
    http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = Profile(ProfileKind.HEAP_SNAPSHOT, default_format(ProfileKind.HEAP_SNAPSHOT))
    snapshot.end(b'{"snapshot": {}, "nodes": [], "edges": [], "strings": []}')
    exporter = exporter_for(http_receiver, "http/protobuf")
    with caplog.at_level(logging.INFO, logger="otel_profiling.exporters.otlp"):
        assert exporter.export_unsent([snapshot, cpu_profile(0.1)]) == []
    assert exporter.skipped_profiles == 1
    assert exporter.sent_profiles == 1
    assert len([r for r in caplog.records if "skips" in r.getMessage()]) == 1
    ((profile, d, _),) = profiles_of(http_receiver)
    assert text(d, profile.sample_type)[1] == "nanoseconds"


def test_fork_child_sends_on_its_own_channel(receiver: Receiver) -> None:
    protocol = receiver.protocol  # type: ignore[attr-defined]
    exporter = exporter_for(receiver, protocol)
    assert exporter.export_unsent([cpu_profile(0.1)]) == []  # the parent's channel is open
    profile = cpu_profile(0.1)
    pid = os.fork()
    if pid == 0:  # the child: exit status says whether its export went through
        code = 1
        try:
            code = 0 if exporter.export_unsent([profile]) == [] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert len(receiver.requests) == 2


# -- configuration ---------------------------------------------------------------------------------


def test_generic_endpoint_gets_the_profiles_path_and_specific_is_used_as_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert config_from_env().endpoint == "http://collector:4318/v1development/profiles"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", "https://vendor.example/v1/profiles")
    assert config_from_env().endpoint == "https://vendor.example/v1/profiles"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL", "grpc")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT")
    config = config_from_env()
    assert config.endpoint == "http://collector:4318/"
    assert config.grpc_target() == ("collector:4318", True)


def test_profiles_settings_win_over_generic_ones_and_bad_values_warn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5000")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT", "2500")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL", "http/json")
    with caplog.at_level(logging.WARNING):
        config = config_from_env()
    assert config.timeout_millis == 2500
    assert config.compression == "gzip"
    assert config.protocol == "http/protobuf"
    assert "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL" in caplog.text


def test_header_values_are_sent_but_never_shown(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Bearer%20s3cr3t-t0ken-value"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_HEADERS", f"Authorization={secret},x-team=a")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", http_receiver.endpoint + "/p")
    exporter = OtlpProfileExporter()
    assert "s3cr3t" not in repr(exporter)
    http_receiver.script = [(400, None, "no")]
    with caplog.at_level(logging.DEBUG):
        exporter.export_unsent([cpu_profile(0.1)])
        assert exporter.export_unsent([cpu_profile(0.1)]) == []
    assert "s3cr3t" not in caplog.text
    assert http_receiver.headers[0]["Authorization"] == "Bearer s3cr3t-t0ken-value"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_HEADERS", "Authorization s3cr3t")
    with caplog.at_level(logging.WARNING):
        assert config_from_env().headers == {}
    assert "s3cr3t" not in caplog.text


def test_without_the_extra_the_error_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        sys.modules, "opentelemetry.proto.profiles.v1development.profiles_pb2", None
    )
    with pytest.raises(ImportError, match=r"pip install 'otel-profiling-agent\[otlp\]'"):
        OtlpProfileExporter(OtlpConfig())


def test_otlp_beside_fsspec_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from otel_profiling.exporters.env import exporters_from_env

    monkeypatch.setenv("OTEL_PROFILES_EXPORTER", "fsspec,otlp")
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_URL", f"file://{tmp_path}")
    kinds = [type(e).__name__ for e in exporters_from_env()]
    assert kinds == ["FsspecProfileExporter", "OtlpProfileExporter"]


def test_user_info_in_the_endpoint_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``http://user:password@collector:4317``: neither transport sends it (gRPC put it in
    the target and logged "errors resolving user:password@..." on every try); refused
    when the exporter is made, naming the header to use instead."""
    receiver = GrpcReceiver().start()
    try:
        endpoint = f"http://user:s3cr3t@127.0.0.1:{receiver.port}"
        for protocol in ("grpc", "http/protobuf"):
            for given in (endpoint, endpoint.removeprefix("http://")):
                if protocol == "http/protobuf" and "//" not in given:
                    continue
                with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROFILES_HEADERS") as e:
                    OtlpConfig(endpoint=given, protocol=protocol, insecure=True)
                assert "s3cr3t" not in str(e.value)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", endpoint)
        with caplog.at_level(logging.DEBUG):
            config = config_from_env()
        assert "s3cr3t" not in caplog.text and "s3cr3t" not in config.endpoint
        assert "credentials go in a header" in caplog.text
    finally:
        receiver.stop()


def test_requests_name_the_exporter_in_their_user_agent(receiver: Receiver) -> None:
    """The OTLP exporter specification: a User-Agent naming the exporter, its language and
    version (urllib sent ``Python-urllib/3.x``); one set in the headers wins."""
    protocol = receiver.protocol  # type: ignore[attr-defined]
    exporter = exporter_for(receiver, protocol)
    assert exporter.export_unsent([cpu_profile(0.1)]) == []
    agent = {k.lower(): v for k, v in receiver.headers[-1].items()}["user-agent"]
    assert agent.startswith(f"otel-profiling-OTLP-Exporter-Python/{__version__}")
    if protocol == "http/protobuf":
        exporter = exporter_for(receiver, protocol, headers={"user-agent": "mine/1"})
        assert exporter.export_unsent([cpu_profile(0.1)]) == []
        assert receiver.headers[-1]["User-Agent"] == "mine/1"


def test_a_retry_after_beyond_the_deadline_holds_the_next_exports_too(
    receiver: Receiver,
) -> None:
    """A wait longer than the export's deadline ends the export (the profile is spooled);
    the spool's re-send, 1 s later, must not ask again before the time the receiver gave."""
    protocol = receiver.protocol  # type: ignore[attr-defined]
    receiver.script = [("UNAVAILABLE", 2.0)] if protocol == "grpc" else [(429, 2, "slow down")]
    exporter = exporter_for(receiver, protocol, timeout_millis=500)
    profiles = [cpu_profile(0.1)]
    assert exporter.export_unsent(profiles) == profiles
    answered = time.monotonic()  # the 2 s count from the answer, before this at the latest
    assert exporter.export_unsent(profiles) == profiles
    assert receiver.attempts == 1, "no request before the 2 s the receiver asked for"
    time.sleep(max(answered + 2.1 - time.monotonic(), 0))
    assert exporter.export_unsent(profiles) == []
    assert receiver.attempts == 2


def test_a_404_on_an_endpoint_without_path_names_the_profiles_path(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The usual mistake: the profiles endpoint is used as given, so a bare
    ``http://collector:4318`` there posts to ``/``, which a Collector answers with 404."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", http_receiver.endpoint)
    http_receiver.script = [(404, None, "404 page not found")]
    exporter = OtlpProfileExporter()
    _MADE.append(exporter)
    with caplog.at_level(logging.ERROR, logger="otel_profiling.exporters.otlp"):
        profiles = [cpu_profile(0.1)]
        assert exporter.export_unsent(profiles) == profiles  # a setting to fix: kept
    assert "/v1development/profiles" in caplog.text and "404 page not found" in caplog.text
