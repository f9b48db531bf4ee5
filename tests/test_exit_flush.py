"""The exit flush writes without starting a thread (the worker or the calling thread writes).

Python 3.12.0 and 3.12.1 refuse to start any thread from an exit hook. The
app forbids it the same way on every Python (and the suite runs on 3.12.1
too), then exits without shutting the agent down: the profile it left queued
or running must be in storage, not in the spool, whatever the backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import bucket_objects
from support import APPS, child_env

APP = str(APPS / "exit_app.py")


def run_exit_app(*args: str, spool: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, APP, *args],
        env=child_env(OTEL_SERVICE_NAME="exit-test", OTEL_PROFILING_SPOOL_DIR=str(spool)),
        capture_output=True,
        text=True,
        timeout=120,
    )


def check(result: subprocess.CompletedProcess, payloads: list, mode: str, spool: Path) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "exiting", result.stdout
    assert "threads-refused 0" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(payloads) == 1, (payloads, result.stderr)
    assert json.loads(payloads[0])["label"] == mode
    assert not list(spool.rglob("*.profile"))  # sent, not kept for later


@pytest.mark.parametrize("mode", ["queued", "running"])
def test_exit_flush_to_s3_starts_no_thread(
    mode: str, s3_endpoint: str, bucket: str, boto3_client, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    spool = tmp_path / "spool"
    result = run_exit_app(f"s3://{bucket}/exit", mode, s3_endpoint, spool=spool)
    payloads = list(bucket_objects(boto3_client, bucket).values())
    check(result, payloads, mode, spool)


@pytest.mark.parametrize("mode", ["queued", "running"])
def test_exit_flush_to_local_files_starts_no_thread(mode: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    out = tmp_path / "out"
    result = run_exit_app(f"file://{out}", mode, spool=spool)
    names = os.listdir(out) if out.exists() else []
    check(result, [(out / n).read_bytes() for n in names], mode, spool)


SIGTERM_PROBE = """
import signal, sys
from otel_profiling import ProfilingAgent, flush_on_sigterm
from otel_profiling.exporters import InMemoryProfileExporter
from otel_profiling.processors import SimpleProfileProcessor
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import SignalTrigger

agent = ProfilingAgent()
agent.add_profile_processor(SimpleProfileProcessor(InMemoryProfileExporter()))
agent.register(SignalTrigger(), CpuProfiler())
agent.start()
print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
print(flush_on_sigterm(), signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
"""


def test_sigterm_keeps_its_default_unless_the_app_asks_for_the_flush() -> None:
    """A started agent leaves SIGTERM at its default: with a Python handler, a SIGTERM that
    arrives just before the main thread blocks is never handled, and the process does not
    end (``Pool.terminate()`` then waits for its worker for ever). ``flush_on_sigterm()``
    installs the flush when asked."""
    result = subprocess.run(
        [sys.executable, "-c", SIGTERM_PROBE],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "False"], result.stdout + result.stderr


CONFIGURE_PROBE = """
import signal, sys, threading
import otel_profiling

if sys.argv[1] == "thread":
    worker = threading.Thread(target=otel_profiling.configure)
    worker.start()
    worker.join()
else:
    otel_profiling.configure()
print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
"""


@pytest.mark.parametrize("where", ["main", "thread"])
def test_the_variable_installs_the_sigterm_flush_or_says_why_not(
    where: str, tmp_path: Path
) -> None:
    """``OTEL_PROFILING_FLUSH_ON_SIGTERM=true``: ``configure()`` on the main thread installs
    the flush; from another thread it cannot (Python installs handlers only from the main
    thread) and one warning names the variable and the fix."""
    result = subprocess.run(
        [sys.executable, "-c", CONFIGURE_PROBE, where],
        env=child_env(
            OTEL_PROFILING_FLUSH_ON_SIGTERM="true",
            OTEL_EXPORTER_FSSPEC_PROFILES_URL=f"file://{tmp_path}",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    installed = result.stdout.split() == ["False"]
    assert installed == (where == "main"), result.stdout + result.stderr
    warned = "OTEL_PROFILING_FLUSH_ON_SIGTERM is true, but the SIGTERM flush was not installed"
    assert (warned in result.stderr) == (where == "thread"), result.stderr
    if where == "thread":
        assert "configure from it" in result.stderr
