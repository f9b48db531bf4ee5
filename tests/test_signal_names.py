"""Signal names, real-time signals included, and the default signal outside a server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from support import child_env, wait_for

from otel_profiling import ProfilingAgent
from otel_profiling.profilers import CpuProfiler
from otel_profiling.servers import safe_signal
from otel_profiling.signal_names import signal_name
from otel_profiling.triggers import SignalTrigger
from otel_profiling.triggers.signals import parse_signal

RTMIN = int(signal.SIGRTMIN)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("SIGUSR2", signal.SIGUSR2),
        ("usr1", signal.SIGUSR1),
        ("12", signal.SIGUSR2),
        ("SIGRTMIN", RTMIN),
        ("SIGRTMIN+4", RTMIN + 4),
        ("rtmin+4", RTMIN + 4),
        (str(RTMIN + 4), RTMIN + 4),
        ("SIGRTMAX-1", int(signal.SIGRTMAX) - 1),
    ],
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["SIGNOPE", "SIGRTMIN+99", "SIGRTMAX+1", "0", "99"])
def test_parse_signal_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="SIGRTMIN\\+4"):
        parse_signal(text)


def test_names_round_trip() -> None:
    assert signal_name(signal.SIGUSR2) == "SIGUSR2"
    assert signal_name(RTMIN + 4) == "SIGRTMIN+4" == signal_name(safe_signal())
    for number in (signal.SIGUSR1, RTMIN, RTMIN + 7):
        assert parse_signal(signal_name(number)) == number


def test_outside_a_server_the_default_is_sigusr2() -> None:
    trigger = SignalTrigger()
    agent = ProfilingAgent()
    agent.register(trigger, CpuProfiler())
    agent.start()
    try:
        assert trigger.signum == signal.SIGUSR2 and trigger.name == "signal:SIGUSR2"
        assert trigger.context_attributes() == {
            "otel_profiling.trigger.signal": signal.SIGUSR2,
            "otel_profiling.trigger.signal.active": False,  # the next signal starts
        }
        assert signal.getsignal(signal.SIGUSR2) == trigger._handler
    finally:
        agent.shutdown()
    assert trigger.context_attributes() == {}


def test_a_realtime_signal_toggles_profiling(tmp_path: object) -> None:
    """An explicit real-time signal works like SIGUSR2 in a plain process."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from otel_profiling import configure\n"
        "agent = configure()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "agent.shutdown()\n"
        "print('done', flush=True)\n"
    )
    out = f"{tmp_path}/profiles"
    env = child_env(
        OTEL_PROFILING_SIGNAL="SIGRTMIN+7", OTEL_EXPORTER_FSSPEC_PROFILES_URL=f"file://{out}"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert proc.stderr is not None
        proc.send_signal(RTMIN + 7)
        # Python runs a handler once for signals that arrive before it runs: wait for the start.
        lines = iter(proc.stderr.readline, "")
        assert any("profile started (trigger signal:SIGRTMIN+7)" in line for line in lines)
        proc.send_signal(RTMIN + 7)
        # the exporter writes a hidden temporary file first, then renames it
        files = wait_for(
            lambda: os.path.isdir(out) and [f for f in os.listdir(out) if not f.startswith(".")],
            timeout=30,
        )
        assert files and files[0].startswith("CPU_PROFILE-"), files
        stdout, _ = proc.communicate("\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "done" in stdout
