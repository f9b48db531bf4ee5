"""Shared test helpers that are not fixtures: paths, child processes, waiting, S3, profiles.

Tests import them from here (``from support import ...``); ``conftest.py`` holds
only fixtures. Child processes started with ``child_env()`` can import this
module too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, List, Optional, Union

from opentelemetry.sdk.resources import Resource

from otel_profiling import Profile, ProfileKind
from otel_profiling.formats import default_format
from otel_profiling.processors import BatchProfileProcessor

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
APPS = TESTS / "apps"

# -- processes and ports ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> Dict[str, str]:
    """The environment of a child Python: the repository, the apps and these helpers importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(APPS), str(TESTS), env.get("PYTHONPATH", "")]
    )
    env.update(extra)
    return env


def run_child(
    command: List[str], env: Dict[str, str], cwd: Optional[Path] = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end with ``child_env()`` plus ``env``; its output as text."""
    return subprocess.run(
        command,
        env=child_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def signal_child(command: list, env: Dict[str, str], signals: int = 2, **popen: object) -> tuple:
    """Run a child that prints "ready", send SIGUSR2 ``signals`` times with work in
    between, then say "quit" on stdin; returns (stdout, stderr) of a clean exit."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        **popen,  # type: ignore[arg-type]
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "ready", (line, proc.stderr.read() if proc.stderr else "")
        for _ in range(signals):
            proc.send_signal(signal.SIGUSR2)
            time.sleep(0.6)
        out, err = proc.communicate("quit\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "done" in out
    return out, err


def wait_for(condition, timeout: float = 10.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return condition()


# -- S3 ---------------------------------------------------------------------------------------


class MotoServer:
    """``python -m moto.server`` on a free loopback port; can be stopped and restarted."""

    def __init__(self, port: int = 0, env: Dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.env = env or {}
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("moto server exited at start") from None
                time.sleep(0.1)
        raise RuntimeError("moto server did not become ready in 30 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def s3_options(endpoint: str) -> dict:
    return {
        "endpoint_url": endpoint,
        "key": os.environ["AWS_ACCESS_KEY_ID"],
        "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
        "config_kwargs": {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        },
    }


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    """A boto3 S3 client (another client than the s3fs one the exporter writes with), signing
    with SigV4 as a presigned URL must be (``X-Amz-Signature``)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=Config(signature_version="s3v4", request_checksum_calculation="when_required"),
    )


# -- profiles ---------------------------------------------------------------------------------

_BASE = datetime(2026, 11, 24, 10, 0, 0, tzinfo=timezone.utc)


def make_profile(
    payload: Union[bytes, int] = b"x" * 10,
    *,
    kind: ProfileKind = ProfileKind.CPU_PROFILE,
    size: int = 2048,
    start: Optional[datetime] = None,
    duration: Optional[timedelta] = None,
    service: Optional[str] = None,
    **attributes: object,
) -> Profile:
    """An ended profile whose payload the test knows.

    ``payload`` is the bytes, or an index ``i``: then the payload is
    ``{"index":i}`` and random bytes up to ``size``, the profile carries
    ``test.index`` and trigger ``test``, and its start time is its own unless
    ``start`` is given (so keys do not collide). ``service`` sets the resource's
    ``service.name``; ``duration`` puts the end that long after ``start``
    (otherwise the profile ends now). Other keywords become attributes.
    """
    trigger = None
    if isinstance(payload, int):
        attributes = {"test.index": payload, **attributes}
        start = start or _BASE + timedelta(milliseconds=7 * payload) + _jitter()
        trigger = "test"
        payload = f'{{"index":{payload}}}'.encode() + os.urandom(max(size - 16, 0))
    profile = Profile(
        kind,
        default_format(kind),
        resource=Resource.create({"service.name": service}) if service else None,
        attributes=attributes or None,  # type: ignore[arg-type]
        start_time=start,
        trigger=trigger,
    )
    end = start + duration if start is not None and duration is not None else None
    profile.end(payload, end_time=end)
    return profile


def _jitter() -> timedelta:
    return timedelta(seconds=int.from_bytes(os.urandom(3), "big"))


def settled(processor: BatchProfileProcessor) -> int:
    """The profiles a batch processor has counted: every profile ends in exactly one counter."""
    return (
        processor.exported_profiles
        + processor.spooled_profiles
        + processor.failed_profiles
        + processor.dropped_profiles
        + processor.error_profiles
    )
