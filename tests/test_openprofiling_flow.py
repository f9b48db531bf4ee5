"""OpenProfiling's flow end to end: SIGUSR2 twice → yappi CPU profile → batch → storage."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import fsspec
import pytest
from support import APPS, child_env, signal_child, wait_for
from viewers import cpuprofile_function_names, load_cpuprofile

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import FsspecProfileExporter
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import SignalTrigger

KEY = re.compile(r"^CPU_PROFILE-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\.cpuprofile$")


def run_openprofiling_child(*args: str) -> str:
    """Start the child, send SIGUSR2 twice with work in between, shut it down."""
    _, err = signal_child([sys.executable, str(APPS / "openprofiling_app.py"), *args], child_env())
    return err


def test_openprofiling_flow_s3(s3_endpoint: str, bucket: str, boto3_client) -> None:  # type: ignore[no-untyped-def]
    run_openprofiling_child("s3", s3_endpoint, bucket)
    keys = [obj["Key"] for obj in boto3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 1, keys
    assert KEY.match(keys[0]), keys[0]
    obj = boto3_client.get_object(Bucket=bucket, Key=keys[0])
    assert obj["ContentType"] == "application/json"
    assert obj["Metadata"]["profile-kind"] == "CPU_PROFILE"
    assert obj["Metadata"]["profile-status"] == "OK"
    profile = load_cpuprofile(obj["Body"].read())
    names = cpuprofile_function_names(profile)
    assert {"app_workload", "app_workload_leaf"} <= names


def test_openprofiling_flow_file_url(tmp_path: Path) -> None:
    target = tmp_path / "out"
    run_openprofiling_child(f"file://{target}")
    files = os.listdir(target)
    assert len(files) == 1 and KEY.match(files[0]), files
    profile = load_cpuprofile((target / files[0]).read_bytes())
    assert "app_workload_leaf" in cpuprofile_function_names(profile)


def busy_loop_for_memory_test(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


@pytest.mark.skipif(not hasattr(signal, "SIGUSR2"), reason="needs SIGUSR2")
def test_openprofiling_flow_memory_url_in_process() -> None:
    """memory:// lives in this process, so the signal is sent to ourselves."""
    url = "memory://openprofiling-test/profiles"
    agent = ProfilingAgent()
    agent.register(SignalTrigger("SIGUSR2"), CpuProfiler())
    agent.start(exporter=FsspecProfileExporter(url))
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert wait_for(lambda: agent.active_profiles)
        busy_loop_for_memory_test(0.3)
        os.kill(os.getpid(), signal.SIGUSR2)
        assert wait_for(lambda: not agent.active_profiles)
        assert agent.force_flush(10_000)
    finally:
        agent.shutdown()
    fs = fsspec.filesystem("memory")
    names = [Path(p).name for p in fs.ls("/openprofiling-test/profiles", detail=False)]
    assert len(names) == 1 and KEY.match(names[0]), names
    profile = load_cpuprofile(fs.cat(f"/openprofiling-test/profiles/{names[0]}"))
    assert "busy_loop_for_memory_test" in cpuprofile_function_names(profile)
    fs.rm("/openprofiling-test", recursive=True)
