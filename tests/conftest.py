"""Shared fixtures: a real S3-compatible server (moto's, in a subprocess) and helpers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, Iterator

import pytest

pytest_plugins = ["browser"]  # the `chromium` fixture

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 endpoint: ``AWS_ENDPOINT_URL`` if set (e.g. MinIO), else a moto server."""
    given = os.environ.get("AWS_ENDPOINT_URL")
    if given:
        yield given
        return
    server = MotoServer().start()
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test credentials unless real ones are given, and never a real AWS account by accident."""
    if not os.environ.get("AWS_ENDPOINT_URL"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-access-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


@pytest.fixture(autouse=True)
def _no_global_agent() -> Iterator[None]:
    """Each test starts and ends without a global agent (``configure()`` sets one)."""
    from otel_profiling.global_agent import _reset_profiling_agent

    _reset_profiling_agent()
    yield
    agent = _reset_profiling_agent()
    if agent is not None:
        agent.shutdown(5_000)


@pytest.fixture(autouse=True)
def _spool_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Spooled profiles go under the test's tmp dir, never into the real home."""
    spool_root = tmp_path / "spool"
    monkeypatch.setenv("OTEL_PROFILING_SPOOL_DIR", str(spool_root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return spool_root


@pytest.fixture
def bucket() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def boto3_client(s3_endpoint: str):  # type: ignore[no-untyped-def]
    """A boto3 client: a different S3 client from the s3fs one the exporter writes with."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=Config(request_checksum_calculation="when_required"),
    )


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


def child_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(APPS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def signal_child(command: list, env: Dict[str, str], signals: int = 2, **popen: object) -> tuple:
    """Run a child that prints "ready", send SIGUSR2 ``signals`` times with work in
    between, then say "quit" on stdin; returns (stdout, stderr) of a clean exit."""
    import signal

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


# -- third-party readers, installed from the distribution's packages when absent ---------------


@pytest.fixture(scope="session")
def go_pprof() -> list:
    """``go tool pprof``, with Go installed from Debian's ``golang-go`` when absent."""
    import shutil

    if shutil.which("go") is None:
        if shutil.which("apt-get") is None:
            pytest.skip("Go is not installed and apt-get is not available to install it")
        try:
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=300, check=True)
            subprocess.run(
                ["apt-get", "install", "-y", "golang-go"],
                capture_output=True,
                timeout=900,
                check=True,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"Go is not installed and `apt-get install golang-go` failed: {exc}")
        if shutil.which("go") is None:
            pytest.skip("`apt-get install golang-go` ran but no go binary was found")
    return [str(shutil.which("go")), "tool", "pprof"]


SPEEDSCOPE_VERSION = "1.25.0"


@pytest.fixture(scope="session")
def speedscope_schema(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """speedscope's own file-format JSON schema, from its npm package (``npm pack``)."""
    import json
    import shutil
    import tarfile

    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: speedscope's schema comes from its npm package")
    where = tmp_path_factory.mktemp("speedscope")
    try:
        subprocess.run(
            ["npm", "pack", f"speedscope@{SPEEDSCOPE_VERSION}"],
            cwd=where,
            capture_output=True,
            timeout=300,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"`npm pack speedscope@{SPEEDSCOPE_VERSION}` failed: {exc}")
    with tarfile.open(where / f"speedscope-{SPEEDSCOPE_VERSION}.tgz") as archive:
        member = archive.extractfile("package/dist/release/file-format-schema.json")
        assert member is not None, "speedscope's package no longer ships its schema"
        return dict(json.load(member))
