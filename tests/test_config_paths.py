"""``configure()``, ``otel-profiling run`` and ``opentelemetry-instrument`` build the agent
the same way: ``OTEL_PROFILING_AT_START`` works from each, in a real child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from otel_profiling.environment_variables import (
    OTEL_EXPORTER_FSSPEC_PROFILES_URL,
    OTEL_PROFILING_AT_START,
    OTEL_PROFILING_SIGNAL,
)

PROGRAM = """
import json, time
from otel_profiling import configure, get_profiling_agent

def spin_in_main_program(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(500))

agent = configure()
print(json.dumps(sorted(type(t).__name__ for t in agent.triggers)), flush=True)
spin_in_main_program(0.5)
assert get_profiling_agent() is agent
"""


def _env(out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env[OTEL_EXPORTER_FSSPEC_PROFILES_URL] = f"file://{out}"
    env[OTEL_PROFILING_AT_START] = "true"
    env[OTEL_PROFILING_SIGNAL] = "none"
    return env


def test_configure_from_code_profiles_from_the_call_when_at_start(tmp_path: Path) -> None:
    out = tmp_path / "profiles"
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=_env(out),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0]) == ["StartupTrigger"]
    files = list(out.glob("CPU_PROFILE-*.cpuprofile"))
    assert len(files) == 1, files
    names = {
        node["callFrame"]["functionName"] for node in json.loads(files[0].read_bytes())["nodes"]
    }
    assert "spin_in_main_program" in names  # profiling began at configure(), in the program


def test_run_sets_the_global_agent_as_configure_does(tmp_path: Path) -> None:
    """``otel-profiling run`` builds through ``configure()``: the program sees the same agent."""
    out = tmp_path / "profiles"
    script = tmp_path / "app.py"
    script.write_text(
        PROGRAM.replace(
            "agent = configure()",
            "agent = get_profiling_agent()\nassert agent is not None and configure() is agent",
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_profiling",
            "run",
            "--cpu",
            "--url",
            f"file://{out}",
            "--",
            sys.executable,
            str(script),
        ],
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "StartupTrigger" in json.loads(done.stdout.splitlines()[0])
    files = list(out.glob("CPU_PROFILE-*.cpuprofile"))
    assert len(files) == 1, files
