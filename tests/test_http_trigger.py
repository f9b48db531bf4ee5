"""HttpTrigger over real sockets with urllib: profiles in the response and in the bucket."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Dict, Iterator, Optional, Tuple

import pytest
from helpers import GcCountsSnapshotProfiler, TracemallocStatsProfiler
from support import s3_options, wait_for
from viewers import cpuprofile_function_names, load_cpuprofile

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import FsspecProfileExporter, InMemoryProfileExporter
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import HttpTrigger
from otel_profiling.triggers.http import HEAD_TIMEOUT, MAX_CONCURRENT_REQUESTS, MAX_CONNECTIONS

TOKEN = "t0ken-for-tests-only"
Response = Tuple[int, Dict[str, str], bytes]


def request(
    trigger: HttpTrigger, path: str, method: str = "GET", token: Optional[str] = TOKEN
) -> Response:
    req = urllib.request.Request(trigger.url + path, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def error_of(response: Response, status: int) -> str:
    code, headers, body = response
    assert code == status, (code, body)
    assert headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["status"] == status
    return document["error"]


def http_workload_leaf(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(2000))


@pytest.fixture
def served() -> Iterator[Tuple[ProfilingAgent, HttpTrigger, InMemoryProfileExporter]]:
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    trigger = HttpTrigger(token=TOKEN)
    agent.register(trigger, CpuProfiler(), TracemallocStatsProfiler(), GcCountsSnapshotProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    yield agent, trigger, exporter
    agent.shutdown()


def test_cpu_profile_in_response_and_in_bucket(s3_endpoint, bucket, boto3_client) -> None:  # type: ignore[no-untyped-def]
    agent = ProfilingAgent()
    trigger = HttpTrigger(token=TOKEN)
    agent.register(trigger, CpuProfiler())
    url = f"s3://{bucket}/pprof"
    agent.add_profile_processor(
        BatchProfileProcessor(FsspecProfileExporter(url, storage_options=s3_options(s3_endpoint)))
    )
    agent.start()
    stop = threading.Event()
    worker = threading.Thread(target=http_workload_leaf, args=(stop,))
    worker.start()
    try:
        begun = time.monotonic()
        status, headers, body = request(trigger, "/cpu?seconds=1")
        elapsed = time.monotonic() - begun
        assert agent.force_flush(30_000)
    finally:
        stop.set()
        worker.join()
        agent.shutdown()
    assert status == 200, body
    assert elapsed >= 1.0
    assert headers["Content-Type"] == "application/json"
    disposition = headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="CPU_PROFILE-')
    filename = disposition.split('filename="')[1].rstrip('"')
    assert filename.endswith(".cpuprofile")
    profile = load_cpuprofile(body)
    names = {node["callFrame"]["functionName"] for node in profile["nodes"]}
    assert "http_workload_leaf" in names
    stored = boto3_client.get_object(Bucket=bucket, Key=f"pprof/{filename}")
    assert stored["Body"].read() == body
    assert stored["Metadata"]["profile-trigger"] == "http"


def test_token_missing_or_wrong_is_401(served, caplog) -> None:  # type: ignore[no-untyped-def]
    agent, trigger, exporter = served
    caplog.set_level(logging.DEBUG)
    for token in (None, "wrong", TOKEN + "x", ""):
        response = request(trigger, "/cpu?seconds=0.1", token=token)
        assert "token" in error_of(response, 401)
        assert response[1]["WWW-Authenticate"].startswith("Bearer")
    req = urllib.request.Request(trigger.url + "/")
    req.add_header("Authorization", f"Basic {TOKEN}")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 401
    assert not exporter.get_finished_profiles() and not agent.active_profiles
    status, _, body = request(trigger, "/")
    assert status == 200 and json.loads(body)["endpoints"]
    assert TOKEN not in repr(trigger)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


def test_non_loopback_without_token_is_refused_at_construction() -> None:
    for host in ("0.0.0.0", "", "::", "10.1.2.3", "example.com"):
        with pytest.raises(ValueError, match="token"):
            HttpTrigger(host=host)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        HttpTrigger(host=host)  # loopback: no token needed
    with pytest.raises(ValueError, match="port"):
        HttpTrigger(port=70000)


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("http://127.0.0.1", "it has a scheme (http://)"),
        ("127.0.0.1:6060", "it has a port (:6060)"),
        ("[::1]:6060", "it has a port (:6060)"),
        ("127.0.0.1/debug", "it has a path"),
        ("local host", "it has spaces"),
        ("1:2:3", "it is not an IP address"),
        ("*", "it is not a host name"),
    ],
)
def test_a_value_that_is_not_a_host_is_refused_as_such(host: str, problem: str) -> None:
    """Not "refuses to listen without a token": the message says what is wrong and the fix."""
    for token in (None, TOKEN):
        with pytest.raises(ValueError) as refused:
            HttpTrigger(host=host, token=token)
        message = str(refused.value)
        assert f"host={host!r} is not a host: {problem}" in message
        assert "host name or IP address alone" in message and "port=" in message
        assert "token" not in message


def test_a_bracketed_ipv6_address_is_the_address() -> None:
    """``[::1]`` binds ``::1`` (loopback, no token needed) and its URL has one pair of brackets."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    agent = ProfilingAgent()
    trigger = HttpTrigger(host="[::1]")
    agent.register(trigger, GcCountsSnapshotProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(InMemoryProfileExporter()))
    agent.start()
    try:
        assert trigger.host == "::1"
        assert trigger.url == f"http://[::1]:{trigger.port}/debug/profile"
        status, _, body = request(trigger, "/")
        assert status == 200 and json.loads(body)["endpoints"]
    finally:
        agent.shutdown()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_off_loopback_a_token_of_16_characters_at_least(host: str) -> None:
    for short in ("x", "fifteen-chars-x"):
        with pytest.raises(ValueError, match="shorter than 16 characters") as refused:
            HttpTrigger(host=host, token=short)
        assert short not in str(refused.value)
        assert "secrets.token_urlsafe" in str(refused.value)  # the fix
    assert HttpTrigger(host=host, token="sixteen-chars-xy").host == host
    assert HttpTrigger(token="x").authorized("Bearer x")  # loopback: any non-empty token


@pytest.mark.parametrize(
    "token", ["two words for a token", "tab\there-and-long-enough", "", "é" * 20]
)
def test_a_token_no_header_can_carry_is_refused(token: str) -> None:
    """Clients send the token in an HTTP header: spaces, control or non-ASCII characters fail."""
    with pytest.raises(ValueError, match="printable ASCII without spaces") as refused:
        HttpTrigger(host="0.0.0.0", token=token)
    assert not token or token not in str(refused.value)


def test_any_address_with_token_serves_and_checks_it() -> None:
    agent = ProfilingAgent()
    trigger = HttpTrigger(host="0.0.0.0", token=TOKEN)
    agent.register(trigger, GcCountsSnapshotProfiler())
    agent.start()
    try:
        loopback = HttpTrigger(port=trigger.port)  # only to build the 127.0.0.1 URL
        error_of(request(loopback, "/snapshot", token=None), 401)
        status, _, body = request(loopback, "/snapshot")
    finally:
        agent.shutdown()
    assert status == 200 and "types" in json.loads(body)


def test_concurrent_start_gets_409(served) -> None:  # type: ignore[no-untyped-def]
    agent, trigger, exporter = served
    first: Dict[str, Response] = {}
    thread = threading.Thread(target=lambda: first.update(r=request(trigger, "/cpu?seconds=2")))
    thread.start()
    assert wait_for(lambda: agent.active_profiles, timeout=10)
    assert "already running" in error_of(request(trigger, "/cpu?seconds=1"), 409)
    thread.join(60)
    assert first["r"][0] == 200
    load_cpuprofile(first["r"][2])
    assert agent.refused_starts == 1
    assert len(exporter.get_finished_profiles()) == 1


@pytest.mark.parametrize(
    "query",
    [
        "seconds=100000",
        "seconds=0",
        "seconds=-1",
        "seconds=nan",
        "seconds=inf",
        "seconds=abc",
        "seconds=",
        "seconds=1&seconds=2",
        "second=1",
        "seconds=1&debug=1",
    ],
)
def test_bad_parameters_are_400(served, query: str) -> None:  # type: ignore[no-untyped-def]
    agent, trigger, exporter = served
    message = error_of(request(trigger, f"/cpu?{query}"), 400)
    assert "seconds" in message or "parameter" in message
    assert not exporter.get_finished_profiles() and not agent.active_profiles


def test_seconds_bound_is_configurable() -> None:
    agent = ProfilingAgent()
    trigger = HttpTrigger(max_seconds=2)
    agent.register(trigger, CpuProfiler())
    agent.start()
    try:
        assert "<= 2" in error_of(request(trigger, "/cpu?seconds=3", token=None), 400)
    finally:
        agent.shutdown()


def test_unknown_path_and_wrong_method(served) -> None:  # type: ignore[no-untyped-def]
    _, trigger, _ = served
    assert "unknown path" in error_of(request(trigger, "/nope"), 404)
    url = trigger.url.replace("/debug/profile", "")
    req = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 404
    for path, method, allowed in (
        ("/cpu", "POST", "GET"),
        ("/cpu", "DELETE", "GET"),
        ("/cpu/start", "GET", "POST"),
        ("/snapshot", "PUT", "GET"),
    ):
        response = request(trigger, path, method=method)
        assert method in error_of(response, 405)
        assert response[1]["Allow"] == allowed


def test_heap_and_snapshot_route_by_kind(served) -> None:  # type: ignore[no-untyped-def]
    _, trigger, exporter = served
    status, headers, body = request(trigger, "/heap?seconds=0.3")
    assert status == 200, body
    assert 'filename="HEAP_PROFILE-' in headers["Content-Disposition"]
    assert headers["Content-Disposition"].endswith('.heapprofile"')
    assert "top" in json.loads(body)
    status, headers, body = request(trigger, "/snapshot")
    assert status == 200, body
    assert headers["Content-Disposition"].endswith('.heapsnapshot"')
    assert json.loads(body)["types"]["dict"] > 0
    kinds = [p.kind.value for p in exporter.get_finished_profiles()]
    assert kinds == ["HEAP_PROFILE", "HEAP_SNAPSHOT"]
    snapshot = exporter.get_finished_profiles()[1]
    assert snapshot.attributes["profiling.stop_reason"] == "snapshot taken"


def test_endpoint_without_profiler_of_its_kind_is_404_naming_it() -> None:
    agent = ProfilingAgent()
    trigger = HttpTrigger()
    agent.register(trigger, CpuProfiler())
    agent.start()
    try:
        assert "HeapProfiler()" in error_of(request(trigger, "/heap?seconds=1", token=None), 404)
        message = error_of(request(trigger, "/snapshot", token=None), 404)
        assert "HeapSnapshotProfiler()" in message
    finally:
        agent.shutdown()


def test_open_ended_window_start_and_stop(served) -> None:  # type: ignore[no-untyped-def]
    agent, trigger, exporter = served
    status, _, body = request(trigger, "/cpu/start", method="POST")
    assert status == 200 and json.loads(body)["status"] == "started"
    assert "already" in error_of(request(trigger, "/cpu/start", method="POST"), 409)
    assert "already running" in error_of(request(trigger, "/cpu?seconds=1"), 409)
    sum(i * i for i in range(100_000))
    status, headers, body = request(trigger, "/cpu/stop", method="POST")
    assert status == 200
    load_cpuprofile(body)
    (profile,) = exporter.get_finished_profiles()
    assert profile.attributes["profiling.trigger"] == "http"
    assert profile.attributes["profiling.reason"] == "POST /debug/profile/cpu/start"
    assert profile.attributes["profiling.stop_reason"] == "stopped over HTTP"
    assert "no CPU_PROFILE window" in error_of(request(trigger, "/cpu/stop", method="POST"), 409)
    assert not agent.active_profiles


def test_shutdown_answers_requests_in_flight_and_exports_their_profiles(served) -> None:  # type: ignore[no-untyped-def]
    agent, trigger, exporter = served
    assert request(trigger, "/heap/start", method="POST")[0] == 200
    answers: Dict[str, Response] = {}
    thread = threading.Thread(target=lambda: answers.update(r=request(trigger, "/cpu?seconds=200")))
    thread.start()
    assert wait_for(lambda: len(agent.active_profiles) == 2, timeout=10)
    begun = time.monotonic()
    agent.shutdown()
    thread.join(30)
    assert time.monotonic() - begun < 15
    assert answers["r"][0] == 200
    load_cpuprofile(answers["r"][2])
    reasons = sorted(
        p.attributes["profiling.stop_reason"] for p in exporter.get_finished_profiles()
    )
    assert reasons == ["agent shutdown", "agent shutdown"]
    with pytest.raises(OSError):
        urllib.request.urlopen(trigger.url + "/", timeout=5)


def test_port_in_use_is_a_clear_error() -> None:
    first, second = ProfilingAgent(), ProfilingAgent()
    taken = HttpTrigger()
    first.register(taken, CpuProfiler()).start()
    try:
        second.register(HttpTrigger(port=taken.port), CpuProfiler())
        with pytest.raises(OSError, match="cannot listen on 127.0.0.1"):
            second.start()
    finally:
        first.shutdown()
        second.shutdown()


def test_forgotten_window_ends_after_max_window_seconds() -> None:
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    trigger = HttpTrigger(max_window_seconds=0.5)
    agent.register(trigger, CpuProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    try:
        assert request(trigger, "/cpu/start", method="POST", token=None)[0] == 200
        assert wait_for(exporter.get_finished_profiles, timeout=15)
        (profile,) = exporter.get_finished_profiles()
        assert profile.attributes["profiling.stop_reason"] == "max_window_seconds reached"
        error_of(request(trigger, "/cpu/stop", method="POST", token=None), 409)
        # a window stopped in time is not ended again by its limit
        assert request(trigger, "/cpu/start", method="POST", token=None)[0] == 200
        assert request(trigger, "/cpu/stop", method="POST", token=None)[0] == 200
        time.sleep(0.8)
        assert len(exporter.get_finished_profiles()) == 2
    finally:
        agent.shutdown()


def test_real_heap_profilers_over_http() -> None:
    """/heap and /snapshot with HeapProfiler and HeapSnapshotProfiler: files DevTools loads."""
    from viewers import HeapSnapshot, load_heapprofile

    from otel_profiling.profilers import HeapProfiler, HeapSnapshotProfiler

    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    trigger = HttpTrigger(token=TOKEN)
    agent.register(trigger, HeapProfiler(), HeapSnapshotProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    try:
        status, headers, body = request(trigger, "/heap?seconds=0.2")
        assert status == 200, body
        assert headers["Content-Type"] == "application/json"
        assert headers["Content-Disposition"].endswith('.heapprofile"')
        load_heapprofile(body)
        status, headers, body = request(trigger, "/snapshot")
        assert status == 200, body[:200]
        assert headers["Content-Disposition"].endswith('.heapsnapshot"')
        assert HeapSnapshot(body).count > 1000
    finally:
        agent.shutdown()
    assert [p.kind.value for p in exporter.get_finished_profiles()] == [
        "HEAP_PROFILE",
        "HEAP_SNAPSHOT",
    ]


class DrippingClients:
    """Connections that send a request line, then one header line a second, never finishing.

    Without a deadline for the whole request head, each line arriving within the
    per-read timeout keeps a connection (and its thread) for as long as the
    client likes. ``closed_after`` records when the server closed each one.
    """

    def __init__(self, port: int, count: int, every: float = 1.0) -> None:
        self.started = time.monotonic()
        self.sockets = [
            socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)
        ]
        self.closed_after: Dict[int, float] = {}
        self.every = every
        self._stop = threading.Event()
        for sock in self.sockets:
            sock.sendall(b"GET /debug/profile/cpu?seconds=1 HTTP/1.1\r\nHost: slow\r\n")
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    @property
    def open(self) -> int:
        return len(self.sockets) - len(self.closed_after)

    def _drip(self) -> None:
        while not self._stop.is_set() and self.open:
            waiting = [s for i, s in enumerate(self.sockets) if i not in self.closed_after]
            readable, _, _ = select.select(waiting, [], [], self.every)
            for sock in readable:  # the server answered or closed: either way, it let go
                with contextlib.suppress(OSError):
                    sock.recv(65536)
                self.closed_after[self.sockets.index(sock)] = time.monotonic() - self.started
            for index, sock in enumerate(self.sockets):
                if index not in self.closed_after:
                    try:
                        sock.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        self.closed_after[index] = time.monotonic() - self.started

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock in self.sockets:
            sock.close()


def test_slow_unauthenticated_clients_do_not_lock_out_an_authorised_one(served) -> None:  # type: ignore[no-untyped-def]
    agent, trigger, exporter = served
    stop = threading.Event()
    worker = threading.Thread(target=http_workload_leaf, args=(stop,))
    worker.start()
    slow = DrippingClients(trigger.port, MAX_CONCURRENT_REQUESTS + 4)  # more than the slots
    try:
        time.sleep(0.5)  # each slow connection is in, dripping
        begun = time.monotonic()
        status, _, body = request(trigger, "/cpu?seconds=1")
        answered_after = time.monotonic() - begun
        open_then = slow.open
        # the server lets go of every slow connection at its head deadline, although each
        # header line arrives well within any per-read timeout
        assert wait_for(lambda: slow.open == 0, timeout=60), slow.closed_after
    finally:
        slow.close()
        stop.set()
        worker.join()
    assert status == 200, body
    assert "http_workload_leaf" in cpuprofile_function_names(load_cpuprofile(body))
    # promptly: one second of profile plus the encoding, under generous slack for a busy
    # machine; before, the request got 503 while the slow clients held every slot
    assert answered_after < 30, (answered_after, open_then)
    # 5 s deadline, ~1 s of drip resolution; the upper bound is slack for a loaded machine
    assert all(
        HEAD_TIMEOUT - 1 <= after < HEAD_TIMEOUT + 30 for after in slow.closed_after.values()
    )
    assert not agent.active_profiles and [
        p.kind.value for p in exporter.get_finished_profiles()
    ] == ["CPU_PROFILE"]


def test_connections_beyond_the_cap_get_503_at_once_then_service_resumes(served) -> None:  # type: ignore[no-untyped-def]
    agent, trigger, exporter = served
    idle = [
        socket.create_connection(("127.0.0.1", trigger.port), timeout=30)
        for _ in range(MAX_CONNECTIONS)
    ]
    try:
        extra = socket.create_connection(("127.0.0.1", trigger.port), timeout=30)
        with extra:
            answer = extra.recv(65536)
        assert answer.startswith(b"HTTP/1.0 503"), answer
        assert b"too many connections" in answer and b"Retry-After: 5" in answer
        # the idle connections never send a head: each is closed at its deadline
        for sock in idle:
            sock.settimeout(HEAD_TIMEOUT + 30)
            assert sock.recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
    status, _, body = request(trigger, "/snapshot")
    assert status == 200, body
    assert "types" in json.loads(body)
