"""Shared fixtures: a real S3-compatible server (moto's, in a subprocess), test isolation,
third-party readers.

Helpers that are not fixtures live in ``support.py``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from support import MotoServer, s3_client

pytest_plugins = ["browser"]  # the `chromium` fixture


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
    return s3_client(s3_endpoint)


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
def speedscope_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """speedscope's npm package, unpacked (``npm pack``): its schema and its web app."""
    import shutil
    import tarfile

    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: speedscope comes from its npm package")
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
        archive.extractall(where, filter="data")
    return where / "package"


@pytest.fixture(scope="session")
def speedscope_schema(speedscope_package: Path) -> dict:
    """speedscope's own file-format JSON schema, from its npm package."""
    import json

    schema = speedscope_package / "dist" / "release" / "file-format-schema.json"
    assert schema.exists(), "speedscope's package no longer ships its schema"
    return dict(json.loads(schema.read_text()))
