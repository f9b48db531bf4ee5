"""Real servers with several workers, configured by environment variables only.

gunicorn (``--preload`` and not), uvicorn ``--workers`` and uWSGI run
``tests/apps/server_app.py`` under ``opentelemetry-instrument``; the test loads
them with requests and profiles them with ``otel-profiling trigger <master>``.
Each worker's profile must land in the store under the worker's pid, the
master must be neither upgraded nor killed, no worker replaced, and the time
the profile gives the request handler must match what the handler measured
of itself (``time.perf_counter``) during the window.

Tolerance: 20 % + 0.1 s per worker. The sampling engine samples at 100 Hz
(about 200 samples per worker here), and a request that straddles the start
or the stop of the window counts in the profile but not in the ground truth
(requests last 50 ms: at most one per edge per worker).
"""

from __future__ import annotations

import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import pytest
from instrumented import instrument_script, instrumented_env
from support import APPS, ROOT, child_env, free_port, wait_for
from viewers import load_cpuprofile

from otel_profiling.cli.processes import tree
from otel_profiling.process_context_reader import read_process_context

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc only")

BIN = Path(sys.executable).parent
TOLERANCE = 0.20
SLACK = 0.1


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "otel_profiling", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
    )


class Server:
    """A server started under ``opentelemetry-instrument``, its master and its workers."""

    def __init__(self, tmp_path: Path, command: Sequence[str], port: int, env: Dict[str, str]):
        self.tmp = tmp_path
        self.port = port
        self.log = tmp_path / "requests"
        self.log.mkdir()
        self.stderr_path = tmp_path / "server.err"
        base = child_env(
            OTEL_PROFILING_ENABLED="true",
            OTEL_SERVICE_NAME="served",
            OTEL_BPP_SCHEDULE_DELAY="200",
            SERVER_APP_LOG=str(self.log),
            **env,
        )
        self.proc = subprocess.Popen(
            [instrument_script(), *command],
            cwd=APPS,
            env=instrumented_env(base, tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=self.stderr_path.open("w"),
        )

    @property
    def master(self) -> int:
        return self.proc.pid  # opentelemetry-instrument execs the server: same pid

    def pids(self) -> Set[int]:
        return {p.pid for p in tree(self.master)}

    def agents(self) -> Dict[int, Any]:
        found: Dict[int, Any] = {}
        for pid in self.pids():
            context = read_process_context(pid)
            if context is not None and context.agent_version:
                found[pid] = context
        return found

    def wait_ready(self, agents: int) -> None:
        """Serving, and ``agents`` processes of the tree have published their context."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.stderr()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2).close()
            except OSError:
                return False
            return len(self.agents()) >= agents

        assert wait_for(ready, timeout=60, interval=0.2), self.stderr()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def load(self, seconds: float, clients: int = 4) -> None:
        """``clients`` threads requesting ``/work`` back to back for ``seconds``."""
        deadline = time.monotonic() + seconds

        def client() -> None:
            while time.monotonic() < deadline:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/work", timeout=30).read()

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def handled(self, suffix: str = ".jsonl") -> Dict[int, List[Dict[str, Any]]]:
        """What each worker measured of its own requests (``.awaited``: of their awaits)."""
        found: Dict[int, List[Dict[str, Any]]] = {}
        for path in self.log.glob(f"*{suffix}"):
            rows = path.read_text().splitlines()
            found[int(path.name[: -len(suffix)])] = [json.loads(row) for row in rows]
        return found

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                for pid in self.pids():
                    os.kill(pid, signal.SIGKILL)
                self.proc.wait(10)


def handler_seconds(data: bytes, function: str = "handle_request") -> float:
    """Time the profile gives ``function`` (with what it called): a ``.cpuprofile``'s
    samples, or a ``pstats`` file's cumulative time as ``pstats.Stats`` reads it."""
    if not data.startswith(b"{"):
        return pstats_cumulative(data, function)
    profile = load_cpuprofile(data)
    nodes = {node["id"]: node for node in profile["nodes"]}
    parent = {child: node["id"] for node in profile["nodes"] for child in node.get("children", [])}
    stamps: List[float] = []
    now = profile["startTime"]
    for delta in profile["timeDeltas"]:
        now += delta
        stamps.append(now)
    stamps.append(profile["endTime"])
    total = 0.0
    for index, node_id in enumerate(profile["samples"]):
        cursor: Optional[int] = node_id
        while cursor is not None:
            if nodes[cursor]["callFrame"]["functionName"] == function:
                total += stamps[index + 1] - stamps[index]
                break
            cursor = parent.get(cursor)
    return total / 1e6


def pstats_cumulative(data: bytes, function: str) -> float:
    with tempfile.NamedTemporaryFile(suffix=".pstats") as handle:
        handle.write(data)
        handle.flush()
        stats = pstats.Stats(handle.name).stats  # type: ignore[attr-defined]
    return sum(ct for (_, _, name), (_, _, _, ct, _) in stats.items() if name == function)


def check_against_ground_truth(
    server: Server,
    profiles: Dict[int, bytes],
    function: str = "handle_request",
    suffix: str = ".jsonl",
    measure: str = "elapsed",
) -> None:
    """``function``'s time in each worker's profile against what its requests measured
    (``measure``: ``elapsed`` by ``perf_counter``, ``cpu`` by ``thread_time``)."""
    handled = server.handled(suffix)
    assert len(handled) >= 2, f"requests reached {sorted(handled)} only"
    for pid, requests in handled.items():
        inside = [r[measure] for r in requests if r["profiled"]]
        assert len(inside) >= 5, (pid, len(requests))  # enough to compare
        measured = sum(inside)
        profiled = handler_seconds(profiles[pid], function)
        assert abs(profiled - measured) <= TOLERANCE * measured + SLACK, (
            pid,
            function,
            profiled,
            measured,
        )


def file_profiles(root: Path) -> Dict[int, bytes]:
    """``{pid: profile}`` from ``file://root/{process.pid}``, one CPU profile per process."""
    found = {}
    for folder in root.iterdir() if root.exists() else []:
        files = list(folder.glob("CPU_PROFILE-*"))
        assert len(files) <= 1, files
        if files:
            found[int(folder.name)] = files[0].read_bytes()
    return found


def wait_profiles(store: Path, pids: Set[int]) -> Dict[int, bytes]:
    """The CPU profiles of ``pids`` once all are in ``store`` (a minute at most)."""
    found = wait_for(lambda: set(file_profiles(store)) >= pids and file_profiles(store), 60)
    assert found, f"profiles of {sorted(pids)} expected, found {sorted(file_profiles(store))}"
    return found


Stored = Dict[int, Tuple[bytes, Dict[str, str]]]
"""``{pid: (profile, object metadata)}``."""


def s3_profiles(client: Any, bucket: str) -> Stored:
    """The profiles in ``bucket``, by the pid in their metadata."""
    found: Stored = {}
    try:
        listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    except client.exceptions.NoSuchBucket:
        return found  # created by the first export
    for obj in listing:
        got = client.get_object(Bucket=bucket, Key=obj["Key"])
        found[int(got["Metadata"]["attr-process.pid"])] = (got["Body"].read(), got["Metadata"])
    return found


def wait_s3_profiles(client: Any, bucket: str, pids: Set[int]) -> Stored:
    """The profiles of ``pids`` once all are in ``bucket`` (a minute at most)."""
    found = wait_for(lambda: (got := s3_profiles(client, bucket)) and set(got) >= pids and got, 60)
    assert found, (
        f"profiles of {sorted(pids)} expected, {sorted(s3_profiles(client, bucket))} found"
    )
    return found


def profile_window(server: Server, seconds: float = 3.0) -> None:
    """``otel-profiling trigger <master>`` around ``seconds`` of load."""
    started = cli("trigger", str(server.master), "--json")
    assert started.returncode == 0, started.stderr
    signalled = {row["pid"] for row in json.loads(started.stdout)["signalled"]}
    assert signalled == set(server.agents()), (signalled, server.agents())
    time.sleep(0.5)
    server.load(seconds)
    stopped = cli("trigger", str(server.master))
    assert stopped.returncode == 0, stopped.stderr


@pytest.fixture
def servers() -> Iterator[List[Server]]:
    started: List[Server] = []
    yield started
    for server in started:
        server.stop(signal.SIGINT if "uwsgi" in " ".join(server.proc.args) else signal.SIGTERM)


def gunicorn(
    tmp_path: Path, *options: str, env: Dict[str, str], app: str = "server_app:application"
) -> Server:
    port = free_port()
    command = [str(BIN / "gunicorn"), *options, "-w", "2", "-b", f"127.0.0.1:{port}"]
    return Server(tmp_path, [*command, app], port, env)


def uvicorn(tmp_path: Path, env: Dict[str, str]) -> Server:
    """uvicorn with two workers (and its supervisor, and multiprocessing's tracker)."""
    port = free_port()
    command = [str(BIN / "uvicorn"), "--workers", "2", "--port", str(port), "server_app:asgi"]
    # a worker slower to start than this is replaced: on a loaded machine, 5 s is short
    return Server(tmp_path, [*command, "--timeout-worker-healthcheck", "120"], port, env)


def test_gunicorn_preload_each_worker_profiled_to_s3(
    tmp_path: Path, servers: List[Server], s3_endpoint: str, bucket: str, boto3_client: Any
) -> None:
    server = gunicorn(
        tmp_path,
        "--preload",
        env={
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"s3://{bucket}/served",
            "OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS": json.dumps(
                {"endpoint_url": s3_endpoint}
            ),
            "AWS_REGION": "us-east-1",
        },
    )
    servers.append(server)
    server.wait_ready(agents=3)
    before = server.pids()
    agents = server.agents()
    assert {signal.SIGRTMIN + 4} == {c.signal for c in agents.values()}  # not gunicorn's own
    assert len({c.resource["service.instance.id"] for c in agents.values()}) == 3

    profile_window(server)
    stored = wait_s3_profiles(boto3_client, bucket, before)
    profiles = {pid: data for pid, (data, _) in stored.items()}
    assert set(profiles) == before  # master and each worker, under its own pid
    assert server.pids() == before  # no worker replaced, no upgraded master
    assert "Worker was sent SIGUSR2" not in server.stderr()
    assert server.stderr().count("Booting worker") == 2
    check_against_ground_truth(server, profiles)


def test_gunicorn_without_preload_refuses_its_own_signal(
    tmp_path: Path, servers: List[Server]
) -> None:
    """An explicit SIGUSR2 is refused with a warning; ``--seconds`` gives one window."""
    store = tmp_path / "profiles"
    server = gunicorn(
        tmp_path,
        env={
            "OTEL_PROFILING_SIGNAL": "SIGUSR2",
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{store}/{{process.pid}}",
        },
    )
    servers.append(server)
    server.wait_ready(agents=3)
    assert "SIGUSR2 is refused as the profiling signal: gunicorn uses it itself" in server.stderr()
    assert "set OTEL_PROFILING_SIGNAL=SIGRTMIN+4" in server.stderr()
    before = server.pids()
    loader = threading.Thread(target=server.load, args=(5.0,))
    loader.start()
    window = cli("trigger", str(server.master), "--seconds", "3")
    loader.join()
    assert window.returncode == 0, window.stderr
    assert window.stdout.count("sent SIGRTMIN+4") == 2 * len(before)
    profiles = wait_profiles(store, before)
    assert set(profiles) == before and server.pids() == before
    check_against_ground_truth(server, profiles)


def test_uvicorn_workers_each_profiled(tmp_path: Path, servers: List[Server]) -> None:
    """With the default engine (sampling, ``.cpuprofile``): the handler's computing time on
    its stack, and the time it was suspended awaiting ``wait_upstream()`` in that
    coroutine's own stack (under its task), not in the event loop's ``select``."""
    store = tmp_path / "profiles"
    server = uvicorn(
        tmp_path, {"OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{store}/{{process.pid}}"}
    )
    servers.append(server)
    server.wait_ready(agents=4)  # the supervisor, multiprocessing's tracker, two workers
    before = server.pids()
    agents = server.agents()
    assert agents[server.master].signal == signal.SIGRTMIN + 4  # the supervisor catches USR2
    profile_window(server)
    profiles = wait_profiles(store, set(agents))
    assert set(profiles) == set(agents)  # every process with an agent, under its own pid
    assert server.pids() == before
    workers = {pid: data for pid, data in profiles.items() if pid in server.handled()}
    assert all(data.startswith(b"{") for data in workers.values())  # .cpuprofile, the default
    check_against_ground_truth(server, workers)
    check_against_ground_truth(server, workers, "wait_upstream", ".awaited")


def uwsgi_binary() -> Optional[str]:
    return shutil.which("uwsgi", path=str(BIN))


@pytest.mark.skipif(
    uwsgi_binary() is None,
    reason="uWSGI is not installed: pip builds it from source (it needs a C compiler and "
    "Python's headers); install the test extra where they are available",
)
def test_uwsgi_workers_each_profiled(tmp_path: Path, servers: List[Server]) -> None:
    """uWSGI's loop runs no Python between requests: the signal is taken by a waiting thread."""
    store = tmp_path / "profiles"
    port = free_port()
    command = [
        str(uwsgi_binary()),
        "--http-socket",
        f"127.0.0.1:{port}",
        "--master",
        "--processes",
        "2",
        "--enable-threads",
        "--py-call-uwsgi-fork-hooks",
        "--module",
        "server_app:application",
    ]
    server = Server(
        tmp_path,
        command,
        port,
        {"OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{store}/{{process.pid}}"},
    )
    servers.append(server)
    server.wait_ready(agents=3)
    before = server.pids()
    profile_window(server)
    # No request follows the stop: the workers must act on it while idle in uWSGI's loop.
    profiles = wait_profiles(store, before)
    assert set(profiles) == before and server.pids() == before
    check_against_ground_truth(server, profiles)


@pytest.mark.skipif(uwsgi_binary() is None, reason="uWSGI is not installed (see above)")
def test_uwsgi_without_fork_hooks_is_explained(tmp_path: Path, servers: List[Server]) -> None:
    """Without uWSGI's fork hooks workers have no agent: listed with the fix, not signalled."""
    port = free_port()
    command = [str(uwsgi_binary()), "--http-socket", f"127.0.0.1:{port}", "--master"]
    command += ["--processes", "2", "--enable-threads", "--module", "server_app:application"]
    server = Server(
        tmp_path, command, port, {"OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{tmp_path}/p"}
    )
    servers.append(server)
    server.wait_ready(agents=1)
    assert wait_for(lambda: len(server.pids()) == 3, timeout=30)
    before = server.pids()
    listing = cli("trigger", str(server.master), "--list", "--json")
    rows = {row["pid"]: row for row in json.loads(listing.stdout)}
    workers = before - {server.master}
    assert all("--py-call-uwsgi-fork-hooks" in (rows[pid]["note"] or "") for pid in workers), rows
    sent = cli("trigger", str(server.master), "--json")
    assert sent.returncode == 0, sent.stderr
    assert [row["pid"] for row in json.loads(sent.stdout)["signalled"]] == [server.master]
    cli("trigger", str(server.master))  # stop the master's profile again
    time.sleep(0.5)
    assert server.pids() == before


def test_http_trigger_per_worker_on_port_zero(tmp_path: Path, servers: List[Server]) -> None:
    """``OTEL_PROFILING_HTTP_PORT=0``: each process serves its own port, listed by ``--list``."""
    store = tmp_path / "profiles"
    server = gunicorn(
        tmp_path,
        "--preload",
        env={
            "OTEL_PROFILING_HTTP_PORT": "0",
            "OTEL_PROFILING_SIGNAL": "none",
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{store}/{{process.pid}}",
        },
    )
    servers.append(server)
    server.wait_ready(agents=3)
    listing = cli("trigger", str(server.master), "--list", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["pid"]: row for row in json.loads(listing.stdout)}
    urls = {pid: row["http"] for pid, row in rows.items()}
    assert set(urls) == server.pids() and len(set(urls.values())) == 3, urls
    refused = cli("trigger", str(server.master))  # agents, but none listens on a signal
    assert refused.returncode == 1 and "no signal trigger" in refused.stderr

    workers = sorted(server.pids() - {server.master})
    returned: Dict[int, bytes] = {}

    def fetch(pid: int) -> None:
        with urllib.request.urlopen(f"{urls[pid]}/cpu?seconds=3", timeout=60) as response:
            returned[pid] = response.read()

    fetchers = [threading.Thread(target=fetch, args=(pid,)) for pid in workers]
    for thread in fetchers:
        thread.start()
    time.sleep(0.5)
    server.load(2.0)
    for thread in fetchers:
        thread.join()
    stored = wait_profiles(store, set(workers))
    assert set(stored) == set(workers)  # exported by the worker that was asked, under its pid
    for pid in workers:
        assert returned[pid] == stored[pid]
    check_against_ground_truth(server, stored)


def test_trigger_refuses_a_tree_without_an_agent(tmp_path: Path) -> None:
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    try:
        assert wait_for(lambda: len(tree(shell.pid)) == 3, timeout=10)
        refused = cli("trigger", str(shell.pid))
        assert refused.returncode == 1
        assert "runs an otel-profiling agent" in refused.stderr
        assert "nothing was sent" in refused.stderr and "3 process(es)" in refused.stderr
        time.sleep(0.3)
        assert shell.poll() is None and len(tree(shell.pid)) == 3  # all alive
    finally:
        shell.kill()
        shell.wait()


def test_trigger_never_signals_another_sdks_context(tmp_path: Path) -> None:
    """A process whose OTEL_CTX is not an otel-profiling agent's is left alone."""
    received = tmp_path / "received"
    code = (
        "import os, signal, sys, time\n"
        "from otel_profiling import process_context\n"
        "signal.signal(signal.SIGUSR2, lambda *a: open(sys.argv[1], 'a').write('got\\n'))\n"
        "process_context.publish({'service.name': 'other-sdk'}, {})\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code, str(received)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "ready"
        refused = cli("trigger", str(other.pid))
        assert refused.returncode == 1
        assert "publishes a process context, but runs no otel-profiling agent" in refused.stderr
        time.sleep(0.3)
        assert not received.exists() and other.poll() is None
    finally:
        other.kill()
        other.wait()


def stop_during_window(server: Server, store: Path, pids: Set[int]) -> Dict[int, bytes]:
    """Open a window on every process, load the server, then stop it by SIGTERM (as a
    container is stopped) while the window is open. The stop must stay within the agents'
    exit timeout (10 s) plus what the server itself takes; returns the stored profiles
    once those of ``pids`` are in (a process may end after the server: multiprocessing's
    resource tracker ends when the supervisor's pipe closes, then exports)."""
    started = cli("trigger", str(server.master))
    assert started.returncode == 0, started.stderr
    time.sleep(0.5)
    server.load(3.0)
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(60)
    assert time.monotonic() - began < 20
    return wait_profiles(store, pids)


def test_uvicorn_sigterm_exports_the_open_windows(tmp_path: Path, servers: List[Server]) -> None:
    """SIGTERM to uvicorn (a container being stopped) while a window is open: uvicorn's
    workers end by raising SIGTERM again once they have shut down gracefully, which kills
    the interpreter before its exit hooks; every process's profile must still be stored,
    the handler's time in it matching what the requests measured, and the stop must stay
    within the agent's exit timeout (10 s) plus what uvicorn itself takes."""
    store = tmp_path / "profiles"
    server = uvicorn(
        tmp_path,
        {
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{store}/{{process.pid}}",
            "OTEL_PROFILING_FLUSH_ON_SIGTERM": "true",  # as the README shows for uvicorn
        },
    )
    servers.append(server)
    server.wait_ready(agents=4)  # the supervisor, multiprocessing's tracker, two workers
    agents = set(server.agents())
    profiles = stop_during_window(server, store, agents)
    assert set(profiles) == agents, (sorted(profiles), sorted(agents), server.stderr())
    workers = {pid: data for pid, data in profiles.items() if pid in server.handled()}
    assert len(workers) == 2
    check_against_ground_truth(server, workers)


def test_plain_program_stopped_by_sigterm_exports_its_open_window(tmp_path: Path) -> None:
    """``opentelemetry-instrument python app.py`` stopped by SIGTERM (``docker stop``) while
    a window is open, with ``OTEL_PROFILING_FLUSH_ON_SIGTERM=true``: the profile is stored
    and the process still ends by SIGTERM.

    Ground truth: the app's worker thread runs ``plain_workload`` the whole time, so the
    profile gives it the time from SIGUSR2 to SIGTERM (1.5 s), within 20 % + 0.1 s (the
    signals are taken on the main thread's next bytecode, a few ms late).
    """
    store = tmp_path / "profiles"
    env = child_env(
        OTEL_PROFILING_ENABLED="true",
        OTEL_SERVICE_NAME="plain",
        OTEL_EXPORTER_FSSPEC_PROFILES_URL=f"file://{store}",
        OTEL_PROFILING_FLUSH_ON_SIGTERM="true",
    )
    proc = subprocess.Popen(
        [instrument_script(), sys.executable, str(APPS / "plain_app.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=instrumented_env(env, tmp_path),
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGUSR2)
        began = time.perf_counter()
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        window = time.perf_counter() - began
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM  # ended by SIGTERM, as without the library
    [stored] = list(store.glob("CPU_PROFILE-*.cpuprofile"))
    profiled = handler_seconds(stored.read_bytes(), "plain_workload")
    assert abs(profiled - window) <= TOLERANCE * window + SLACK, (profiled, window)


def test_gunicorn_toggle_after_worker_restarts(tmp_path: Path, servers: List[Server]) -> None:
    """``--max-requests`` replaces every worker during a window opened by
    ``otel-profiling trigger <master>``: the workers forked meanwhile have no window open,
    so the next ``trigger`` (the stop) must not signal them, which would start one there.
    Ground truth: each request records whether its worker was profiling."""
    store = tmp_path / "profiles"
    server = gunicorn(
        tmp_path,
        "--max-requests",
        "20",
        env={"OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{store}/{{process.pid}}"},
    )
    servers.append(server)
    server.wait_ready(agents=3)
    first = server.pids()
    started = cli("trigger", str(server.master))
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 60
    while server.pids() & (first - {server.master}) and time.monotonic() < deadline:
        server.load(0.5)
    assert not server.pids() & (first - {server.master}), "the workers were not replaced"
    server.wait_ready(agents=3)  # the new workers have published their context
    new = server.pids() - first
    served_before = {pid: len(rows) for pid, rows in server.handled().items()}

    stopped = cli("trigger", str(server.master))
    assert stopped.returncode == 0, stopped.stderr
    time.sleep(0.5)
    server.load(0.5, clients=1)
    after = {
        pid: rows[served_before.get(pid, 0) :]
        for pid, rows in server.handled().items()
        if pid not in first
    }
    assert sum(len(rows) for rows in after.values()) >= 3, after
    assert not [pid for pid, rows in after.items() if any(r["profiled"] for r in rows)], after
    assert f"sent SIGRTMIN+4 to {server.master} " in stopped.stdout
    for pid in new:
        assert f"to {pid} " not in stopped.stdout and f"process {pid}: not profiling" in (
            stopped.stderr
        )
    listing = json.loads(cli("trigger", str(server.master), "--list", "--json").stdout)
    assert not [row for row in listing if row["profiling"]], listing  # nothing left open
    profiles = wait_profiles(store, first)  # the replaced workers exported theirs at exit
    assert set(profiles) == first

    # --seconds starts only processes not profiling yet: with all of them profiling, none
    def all_profiling() -> bool:
        listing = json.loads(cli("trigger", str(server.master), "--list", "--json").stdout)
        return all(row["profiling"] for row in listing)

    again = cli("trigger", str(server.master))
    assert again.returncode == 0, again.stderr
    assert wait_for(all_profiling, timeout=20)  # each has toggled and published it
    refused = cli("trigger", str(server.master), "--seconds", "1")
    assert refused.returncode == 1 and "already profiling, so nothing was sent" in refused.stderr
    assert all_profiling()  # none was stopped


def test_gunicorn_uvicorn_workers_sigterm_with_the_documented_hook(
    tmp_path: Path, servers: List[Server]
) -> None:
    """gunicorn's uvicorn worker class sets SIGTERM back to its default in each worker, and
    uvicorn raises it again after its graceful shutdown: with ``flush_on_sigterm()`` in
    ``post_worker_init`` (as the README shows) the workers' open windows are still stored
    when the server is stopped, their handler time matching what the requests measured."""
    store = tmp_path / "profiles"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "from otel_profiling import flush_on_sigterm\n\n\n"
        "def post_worker_init(worker):\n"
        "    flush_on_sigterm()\n"
    )
    server = gunicorn(
        tmp_path,
        *("-c", str(conf), "-k", "uvicorn.workers.UvicornWorker"),
        env={"OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{store}/{{process.pid}}"},
        app="server_app:asgi",
    )
    servers.append(server)
    server.wait_ready(agents=3)
    before = server.pids()
    profiles = stop_during_window(server, store, before)
    assert set(profiles) == before, (sorted(profiles), sorted(before), server.stderr())
    workers = {pid: data for pid, data in profiles.items() if pid != server.master}
    check_against_ground_truth(server, workers)


def test_gunicorn_workers_cpu_clock(
    tmp_path: Path, servers: List[Server], s3_endpoint: str, bucket: str, boto3_client: Any
) -> None:
    """``OTEL_PROFILING_CPU_CLOCK=cpu`` in forked workers: a sync worker runs its requests
    on the thread that gunicorn's master forked it from, whose ``Thread.native_id`` Python
    leaves at the master's; its CPU must still be its own, and its timer signal (the main
    thread's CPU clock) must fire there. Ground truth: the CPU time each request measured
    of itself (``time.thread_time``), 20 % + 0.1 s as for the wall clock."""
    server = gunicorn(
        tmp_path,
        env={
            "OTEL_PROFILING_CPU_CLOCK": "cpu",
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"s3://{bucket}/served",
            "OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS": json.dumps(
                {"endpoint_url": s3_endpoint}
            ),
            "AWS_REGION": "us-east-1",
        },
    )
    servers.append(server)
    server.wait_ready(agents=3)
    before = server.pids()
    profile_window(server, seconds=3.0)
    found = wait_s3_profiles(boto3_client, bucket, before)
    workers = {pid: data for pid, (data, _) in found.items() if pid != server.master}
    check_against_ground_truth(server, workers, measure="cpu")
    for pid in workers:  # requests run on each worker's main thread: sampled by its signal
        assert found[pid][1]["attr-profiling.cpu.main_thread_samples"] == "signal", found[pid][1]
