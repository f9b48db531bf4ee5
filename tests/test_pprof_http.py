"""Go's ``net/http/pprof`` paths on the HTTP trigger, read by ``go tool pprof`` itself.

``/debug/pprof/profile?seconds=N`` answers a gzipped pprof CPU profile and
``/debug/pprof/heap?seconds=N`` a heap one, whatever format the profilers
export; the token rules of the trigger apply. The programs time their own
work: shares within ±15 %, heap bytes within ±10 %.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from support import APPS, child_env, free_port, wait_for
from viewers import load_pprof, pprof_stacks

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler, HeapProfiler
from otel_profiling.triggers import HttpTrigger

TOKEN = "t0ken-for-tests-only"
TOLERANCE = 0.15
HEAP_TOLERANCE = 0.10
KEPT: List[bytearray] = []


def within(value: float, truth: float, tolerance: float = TOLERANCE) -> bool:
    return abs(value - truth) <= tolerance * truth


def get(url: str, token: Optional[str] = TOKEN) -> Tuple[int, Dict[str, str], bytes]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(params=["heapprofile"])
def served(request) -> Iterator[Tuple[ProfilingAgent, HttpTrigger, InMemoryProfileExporter]]:  # type: ignore[no-untyped-def]
    exporter = InMemoryProfileExporter()
    agent = ProfilingAgent()
    trigger = HttpTrigger(token=TOKEN)
    # the default formats (cpuprofile, heapprofile): the pprof paths convert
    agent.register(trigger, CpuProfiler(), HeapProfiler(format=request.param))
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    yield agent, trigger, exporter
    agent.shutdown()


def base(trigger: HttpTrigger) -> str:
    return f"http://127.0.0.1:{trigger.port}/debug/pprof"


def pprof_hot_loop(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(2000))


def test_profile_path_answers_gzipped_pprof_as_go_does(served) -> None:  # type: ignore[no-untyped-def]
    agent, trigger, exporter = served
    stop = threading.Event()
    worker = threading.Thread(target=pprof_hot_loop, args=(stop,), name="pprof-worker")
    worker.start()
    try:
        status, headers, body = get(base(trigger) + "/profile?seconds=1")
    finally:
        stop.set()
        worker.join()
    assert status == 200, body
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == 'attachment; filename="profile"'
    assert body[:2] == b"\x1f\x8b"
    profile = load_pprof(body)
    leaves = {stack[-1] for stack, _ in pprof_stacks(profile)}
    assert "pprof_hot_loop" in {name for stack, _ in pprof_stacks(profile) for name in stack}
    assert leaves
    # the profile was exported too, in its own format
    assert wait_for(lambda: exporter.get_finished_profiles(), timeout=10)
    assert exporter.get_finished_profiles()[0].format == "cpuprofile"


@pytest.mark.parametrize("served", ["heapprofile", "pprof"], indirect=True)
def test_heap_path_counts_the_bytes_kept_in_the_window(served) -> None:  # type: ignore[no-untyped-def]
    """Truth: 100 bytearrays of 32 KiB kept in the window, each two blocks for
    tracemalloc (the object and its buffer), plus the list that holds them.

    Converted from ``.heapprofile``, which keeps no object counts, the answer
    has ``inuse_space`` only; from the heap profiler's own pprof it has the
    real ``inuse_objects`` too.
    """
    agent, trigger, exporter = served
    answer: Dict[str, Tuple[int, Dict[str, str], bytes]] = {}
    thread = threading.Thread(
        target=lambda: answer.setdefault("r", get(base(trigger) + "/heap?seconds=2"))
    )
    thread.start()
    assert wait_for(lambda: agent.active_profiles, timeout=30)
    block, blocks = 32 * 1024, 100

    def keep_in_window() -> None:
        for _ in range(blocks):
            KEPT.append(bytearray(block))

    keep_in_window()
    thread.join(timeout=120)
    status, headers, body = answer["r"]
    assert status == 200, body
    assert headers["Content-Disposition"] == 'attachment; filename="heap"'
    profile = load_pprof(body)
    types = [profile.string_table[t.type] for t in profile.sample_type]
    assert wait_for(lambda: exporter.get_finished_profiles(), timeout=10)
    counted = exporter.get_finished_profiles()[0].format == "pprof"
    assert types == (["inuse_objects"] if counted else []) + ["inuse_space"]
    values = [
        values
        for stack, values in pprof_stacks(profile)
        if any(name.endswith("keep_in_window") for name in stack)
    ]
    kept = sum(value[-1] for value in values)
    assert within(kept, block * blocks, HEAP_TOLERANCE), pprof_stacks(profile)[:5]
    if counted:  # two blocks per bytearray, and the list's array (one block, or a few)
        assert 2 * blocks <= sum(value[0] for value in values) <= 2 * blocks + 5, values
    KEPT.clear()


def test_pprof_paths_keep_the_token_rules(served) -> None:  # type: ignore[no-untyped-def]
    _, trigger, _ = served
    status, headers, _ = get(base(trigger) + "/profile?seconds=1", token=None)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, body = get(base(trigger) + "/profile?seconds=0")
    assert status == 400, body
    status, _, body = get(base(trigger) + "/profile?sec=1")
    assert status == 400, body


def test_go_tool_pprof_reads_the_profile_path_of_a_running_app(
    go_pprof: List[str], tmp_path: Path
) -> None:
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, str(APPS / "pprof_app.py")],
        env=child_env(
            OTEL_PROFILING_HTTP_PORT=str(port),
            OTEL_PROFILES_EXPORTER="none",
            OTEL_PROFILING_SIGNAL="none",
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "ready"
        assert wait_for(lambda: _listening(port), timeout=30)
        top = subprocess.run(
            [*go_pprof, "-top", f"http://127.0.0.1:{port}/debug/pprof/profile?seconds=2"],
            capture_output=True,
            text=True,
            timeout=300,
            env=child_env(HOME=str(tmp_path), PPROF_TMPDIR=str(tmp_path)),
        )
        out, err = app.communicate("stop\n", timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
    assert top.returncode == 0, top.stderr
    measured = json.loads(out.strip().splitlines()[-1])
    rows = {}
    for line in top.stdout.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[4].endswith("%"):
            rows[parts[5]] = float(parts[4].rstrip("%")) / 100  # cum%
    busy = measured["hot"] + measured["warm"]
    assert "Type: wall" in top.stdout, top.stdout
    # main thread alone works; its hot and warm shares match its own timing
    assert within(rows["hot"] / (rows["hot"] + rows["warm"]), measured["hot"] / busy), top.stdout


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- what a Go developer meets: pprof's own error display, the window, the index, a restart -----


def _pprof_run(go_pprof: List[str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*go_pprof, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(HOME=str(tmp_path), PPROF_TMPDIR=str(tmp_path)),
    )


def test_go_tool_pprof_prints_why_a_request_was_refused(
    go_pprof: List[str], tmp_path: Path
) -> None:
    """``go tool pprof`` prints an error body only when it is ``text/plain`` with
    ``X-Go-Pprof`` set, as Go's ``net/http/pprof`` answers; a JSON body leaves
    the user with a bare ``400 Bad Request``."""
    agent = ProfilingAgent()
    trigger = HttpTrigger()  # loopback, no token: go tool pprof sends none
    cpu = CpuProfiler()
    agent.register(trigger, cpu, HeapProfiler())
    agent.start()
    url = f"http://127.0.0.1:{trigger.port}/debug/pprof"
    try:
        status, headers, body = get(url + "/profile?seconds=0", token=None)
        assert status == 400
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert headers["X-Go-Pprof"] == "1"
        assert body.decode().endswith("\n") and "Content-Disposition" not in headers

        bad = _pprof_run(go_pprof, tmp_path, "-top", url + "/profile?seconds=0")
        assert bad.returncode != 0
        assert "400 Bad Request - seconds='0': must be a number > 0" in bad.stderr, bad.stderr

        goroutine = _pprof_run(go_pprof, tmp_path, "-top", url + "/goroutine")
        assert "404 Not Found - Go's goroutine profile has no counterpart" in goroutine.stderr, (
            goroutine.stderr
        )

        with agent.profile(cpu, name="held"):  # the CPU profiler is busy: who holds it is named
            busy = _pprof_run(go_pprof, tmp_path, "-top", url + "/profile?seconds=1")
        assert "409 Conflict - a CPU_PROFILE profile is already running" in busy.stderr, busy.stderr
        assert "started by trigger code (agent.profile(held))" in busy.stderr, busy.stderr
    finally:
        agent.shutdown()


def test_a_converted_cpu_profile_lasts_the_window_not_its_threads_sum(  # type: ignore[no-untyped-def]
    served, go_pprof: List[str], tmp_path: Path
) -> None:
    """Truth: the request's own perf_counter time bounds the window from above,
    the seconds asked for from below. A ``.cpuprofile`` lays its threads end
    to end, so its span is the sum over threads (here the worker and the main
    thread waiting for the answer: twice the window), which ``go tool pprof``
    showed as the Duration."""
    _, trigger, _ = served
    stop = threading.Event()
    worker = threading.Thread(target=pprof_hot_loop, args=(stop,), name="pprof-worker")
    worker.start()
    try:
        began = time.perf_counter()
        status, _, body = get(base(trigger) + "/profile?seconds=1")
        elapsed = time.perf_counter() - began
    finally:
        stop.set()
        worker.join()
    assert status == 200, body
    profile = load_pprof(body)
    assert 0.99e9 <= profile.duration_nanos <= elapsed * 1e9, (profile.duration_nanos, elapsed)
    saved = tmp_path / "profile.pb.gz"
    saved.write_bytes(body)
    raw = _pprof_run(go_pprof, tmp_path, "-raw", str(saved))
    assert raw.returncode == 0, raw.stderr
    header = next(line for line in raw.stdout.splitlines() if line.startswith("Duration:"))
    shown = float(header.split()[1])
    assert 0.99 <= shown <= elapsed, raw.stdout


def test_the_pprof_index_lists_the_two_profiles(served) -> None:  # type: ignore[no-untyped-def]
    _, trigger, _ = served
    for path in ("/", ""):  # Go redirects /debug/pprof to the index: the links are absolute
        status, headers, body = get(base(trigger) + path)
        assert status == 200, body
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        page = body.decode()
        assert 'href="/debug/pprof/profile"' in page and 'href="/debug/pprof/heap"' in page
        assert "no profiler" not in page  # both kinds are registered


def test_a_restarted_service_binds_its_fixed_port_again() -> None:
    """The server closes each connection first, which leaves it in TIME_WAIT on the
    server's port for a minute; a service restarted in that minute must bind it
    (SO_REUSEADDR, as Go's listeners), while a port in use stays refused."""
    import socket

    port = free_port()
    first = ProfilingAgent()
    first.register(HttpTrigger(port=port), CpuProfiler()).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /debug/pprof/ HTTP/1.0\r\n\r\n")
            while sock.recv(65536):  # until the server closes: TIME_WAIT is on its side
                pass
    finally:
        first.shutdown()
    again = ProfilingAgent()
    trigger = HttpTrigger(port=port)
    again.register(trigger, CpuProfiler()).start()
    try:
        status, _, _ = get(base(trigger) + "/", token=None)
        assert status == 200
    finally:
        again.shutdown()


def _worker_window(fmt: str, engine: str) -> Tuple[Any, float]:
    """A CPU profile of ``fmt`` from ``engine`` over the pprof path while a worker
    spins through the whole window; the profile and the request's perf_counter time."""
    agent = ProfilingAgent()
    trigger = HttpTrigger()
    agent.register(trigger, CpuProfiler(fmt, engine=engine))
    agent.add_profile_processor(SimpleProfileProcessor(InMemoryProfileExporter()))
    agent.start()
    stop = threading.Event()
    worker = threading.Thread(target=pprof_hot_loop, args=(stop,), name="pprof-worker")
    worker.start()
    try:
        began = time.perf_counter()
        status, _, body = get(base(trigger) + "/profile?seconds=1", token=None)
        elapsed = time.perf_counter() - began
    finally:
        stop.set()
        worker.join()
        agent.shutdown()
    assert status == 200, body
    return load_pprof(body), elapsed


@pytest.mark.parametrize("engine", ["sampling", "yappi"])
def test_a_folded_cpu_profile_keeps_its_time_over_the_pprof_path(engine: str) -> None:
    """Truth: under the wall clock, the worker that spins from before the window
    to after it counts the whole window, which lies between the 1 s asked for
    and the request's own perf_counter time (±15 % for the sampler's
    placement of the window's edges). Folded holds microseconds: read as
    nanoseconds they were a thousand times too small."""
    profile, elapsed = _worker_window("folded", engine)
    worker_ns = sum(
        values[-1] for stack, values in pprof_stacks(profile) if "pprof_hot_loop" in stack
    )
    assert 0.85e9 <= worker_ns <= elapsed * 1e9 * (1 + TOLERANCE), (worker_ns, elapsed)


def test_yappi_pprof_counts_one_sample_per_node_with_self_time() -> None:
    """The README's rule for the yappi engine's trees: each node with self time is
    one sample (``samples/count``), its time in ``wall/nanoseconds``; yappi's own
    pprof had 0 samples everywhere. Truth for the time as above."""
    profile, elapsed = _worker_window("pprof", "yappi")
    types = [profile.string_table[t.type] for t in profile.sample_type]
    assert types == ["samples", "wall"]
    values = [values for _, values in pprof_stacks(profile)]
    assert values and all(count == (1 if ns > 0 else 0) for count, ns in values), values
    worker_ns = sum(
        values[-1] for stack, values in pprof_stacks(profile) if "pprof_hot_loop" in stack
    )
    assert 0.85e9 <= worker_ns <= elapsed * 1e9 * (1 + TOLERANCE), (worker_ns, elapsed)
