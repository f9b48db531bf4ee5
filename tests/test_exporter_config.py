"""Configuration that cannot work: refused when the exporter is made, or named once when met.

What needs no request is checked at construction, with a ``ValueError`` that
names the problem and the fix and shows no secret. What only the backend can
tell (a bucket that is missing and may not be created, a path that became a
file, a name too long for the disk, no credentials) is a permanent failure:
one error line with the fix, no retry, nothing logged as transient.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterator, List, TypeVar

import pytest
from faults import FaultProxy
from opentelemetry.sdk.resources import Resource
from support import make_profile

from otel_profiling import configure
from otel_profiling.exporters import FsspecProfileExporter, S3Exporter
from otel_profiling.redact import redact_url

E = TypeVar("E", FsspecProfileExporter, S3Exporter)


@pytest.fixture
def kept() -> Iterator[Callable[[E], E]]:
    """Shut down every exporter a test makes, so none leaves its writer threads behind."""
    made: List[FsspecProfileExporter] = []

    def keep(exporter: E) -> E:
        made.append(exporter)
        return exporter

    yield keep
    for exporter in made:
        exporter.shutdown()


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("s3://Bad_Bucket!/x", {}, "Invalid S3 bucket name 'Bad_Bucket!'"),
        ("s3://my bucket/x", {}, "Invalid S3 bucket name"),
        ("http://127.0.0.1:9000/profiles", {}, "OTLP exporter"),
        ("https://storage.example.com/p", {}, r"s3://bucket/prefix with endpoint_url"),
        ("memory://x/{nope}", {}, r"Unknown placeholder \{nope\}.*\{service\.name\}"),
        ("memory://x/{service.name", {}, "is not closed"),
        ("memory://x/{a b}", {}, "is not a placeholder"),
        ("memory://x", {"key_template": "../{kind}.{extension}"}, r"'\.\.'"),
        ("memory://x", {"key_template": "a/../../{kind}"}, r"'\.\.'"),
        ("memory://x", {"key_template": "/etc/{kind}"}, "must be relative"),
        ("memory://x", {"key_template": "{kind}-{secret}"}, r"Unknown placeholder \{secret\}"),
        ("memory://x", {"key_template": ""}, "empty"),
        ("file:///tmp/caf\udce9/x", {}, "not UTF-8"),
    ],
)
def test_refused_at_construction_with_the_fix(url: str, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FsspecProfileExporter(url, **options)


def test_local_path_through_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file.*choose a directory"):
        FsspecProfileExporter(f"file://{tmp_path}/a-file/profiles/{{service.name}}")


def test_local_name_too_long_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="more than the 255"):
        FsspecProfileExporter(f"file://{tmp_path}/{'x' * 300}/p")
    with pytest.raises(ValueError, match="more than the 255"):
        FsspecProfileExporter(f"file://{tmp_path}", key_template=f"{'y' * 300}/{{kind}}")


SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


@pytest.mark.parametrize(
    "url",
    [
        f"s3://{KEY_ID}:{SECRET}@bucket/x",
        f"s3://{SECRET}@bucket/x",
        f"s3a://{KEY_ID}:{SECRET}@bucket",
        f"memory://user:{SECRET}@host/x",
        f"file://user:{SECRET}@localhost/tmp/x",
    ],
)
def test_credentials_in_the_url_are_refused_and_never_shown(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        FsspecProfileExporter(url)
    text = str(caught.value)
    assert "AWS_ACCESS_KEY_ID" in text and "storage_options" in text
    assert SECRET not in text and KEY_ID not in text
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_credentials_in_the_url_from_env_never_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_URL", f"s3://{KEY_ID}:{SECRET}@bucket/x")
    monkeypatch.setenv("OTEL_PROFILING_SIGNAL", "none")
    with caplog.at_level(logging.DEBUG):
        agent = configure()
    assert agent is not None  # the application goes on, without that exporter
    assert not agent.processors
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "OTEL_EXPORTER_FSSPEC_PROFILES_URL" in logged and "AWS_ACCESS_KEY_ID" in logged
    assert SECRET not in logged and KEY_ID not in logged
    agent.shutdown()


def test_azure_container_at_account_is_not_taken_for_credentials() -> None:
    try:
        FsspecProfileExporter("abfs://container@account.dfs.core.windows.net/profiles")
    except ImportError as exc:  # adlfs missing: the URL itself was accepted
        assert "otel-profiling-agent[azure]" in str(exc)


def test_redact_url_finds_credentials_anywhere_in_a_text() -> None:
    text = f"PUT failed for s3://{KEY_ID}:{SECRET}@bucket/x?X-Amz-Signature=abc123&part=1 (x)"
    redacted = redact_url(text)
    assert SECRET not in redacted and KEY_ID not in redacted and "abc123" not in redacted
    assert "s3://***@bucket/x?X-Amz-Signature=***&part=1" in redacted


def permanent_errors(caplog: pytest.LogCaptureFixture) -> list:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def transient_lines(caplog: pytest.LogCaptureFixture) -> list:
    return [
        r.getMessage()
        for r in caplog.records
        if "Transient failure" in r.getMessage() or "Could not write" in r.getMessage()
    ]


def test_missing_bucket_not_to_be_created_is_named_once_not_retried(
    s3_endpoint: str,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
    kept: Callable[[E], E],
) -> None:
    proxy = FaultProxy(s3_endpoint).start()
    exporter = kept(
        S3Exporter(bucket=bucket, end_point=proxy.endpoint, use_ssl=False, create_container=False)
    )
    try:
        with caplog.at_level(logging.DEBUG, logger="otel_profiling"):
            for i in range(3):
                profile = make_profile(i)
                assert exporter.export_unsent([profile]) == [profile]
    finally:
        proxy.stop()
    assert proxy.count("PUT") == 3  # one try per export, no retry
    (error,) = permanent_errors(caplog)
    assert "does not exist" in error and "Fix: create the bucket" in error
    assert not transient_lines(caplog)


def test_directory_replaced_by_a_file_is_permanent(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    kept: Callable[[E], E],
) -> None:
    out = tmp_path / "out"
    exporter = kept(FsspecProfileExporter(f"file://{out}"))
    assert exporter.export_unsent([make_profile(1)]) == []
    for name in os.listdir(out):
        os.unlink(out / name)
    out.rmdir()
    out.write_bytes(b"now a file")
    with caplog.at_level(logging.DEBUG, logger="otel_profiling"):
        for i in range(2, 4):
            profile = make_profile(i)
            assert exporter.export_unsent([profile]) == [profile]
    (error,) = permanent_errors(caplog)
    assert "is a file, not a directory" in error and "Fix:" in error
    assert not transient_lines(caplog)


def test_name_too_long_for_the_disk_is_permanent(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    kept: Callable[[E], E],
) -> None:
    # the long part follows a placeholder, so only the write can tell
    exporter = kept(
        FsspecProfileExporter(
            f"file://{tmp_path}", key_template="{kind}-" + "n" * 300 + ".{extension}"
        )
    )
    profile = make_profile(1)
    with caplog.at_level(logging.DEBUG, logger="otel_profiling"):
        assert exporter.export_unsent([profile]) == [profile]
    (error,) = permanent_errors(caplog)
    assert "File name too long" in error and "shorten the URL path, the key template" in error
    assert not transient_lines(caplog)


def test_no_credentials_at_all_is_permanent(
    s3_endpoint: str,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kept: Callable[[E], E],
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    exporter = kept(S3Exporter(bucket=bucket, end_point=s3_endpoint, use_ssl=False))
    profile = make_profile(1)
    with caplog.at_level(logging.DEBUG, logger="otel_profiling"):
        assert exporter.export_unsent([profile]) == [profile]
    (error,) = permanent_errors(caplog)
    assert "NoCredentialsError" in error and "AWS_ACCESS_KEY_ID" in error
    assert not transient_lines(caplog)


def test_names_that_are_not_utf8_are_exported(
    s3_endpoint: str,
    bucket: str,
    boto3_client,
    tmp_path: Path,
    kept: Callable[[E], E],
) -> None:  # type: ignore[no-untyped-def]
    """A service name or attribute the environment could not decode (0xE9, 0xFF bytes)."""
    exporter = kept(S3Exporter(bucket=bucket, end_point=s3_endpoint, use_ssl=False, prefix="p"))
    profile = make_profile(1, **{"user.note": "\udcff"})
    profile.resource = Resource({"service.name": "caf\udce9"})
    assert exporter.export_unsent([profile]) == []
    meta = boto3_client.head_object(Bucket=bucket, Key=f"p/{profile.key}")["Metadata"]
    assert meta["service-name"] == "caf%E9" and meta["attr-user.note"] == "%FF"
    local = kept(FsspecProfileExporter(f"file://{tmp_path}/{{service.name}}"))
    assert local.export_unsent([profile]) == []
    assert os.listdir(tmp_path) == ["caf_"]


def test_long_placeholder_values_are_shortened(tmp_path: Path, kept: Callable[[E], E]) -> None:
    exporter = kept(FsspecProfileExporter(f"file://{tmp_path}/{{service.name}}"))
    profile = make_profile(1)
    profile.resource = Resource({"service.name": "s" * 300})
    other = make_profile(2)
    other.resource = Resource({"service.name": "s" * 299 + "t"})
    assert exporter.export_unsent([profile, other]) == []
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and all(len(n) <= 100 for n in names)  # apart, and short
    assert all((tmp_path / n).is_dir() for n in names)
