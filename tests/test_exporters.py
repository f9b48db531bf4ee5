"""FsspecProfileExporter and S3Exporter against real backends (moto's S3 server, local, memory)."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
from datetime import datetime, timezone

import fsspec
import pytest
from opentelemetry.sdk.resources import Resource
from support import s3_options

from otel_profiling.exporters import (
    ConsoleProfileExporter,
    FsspecProfileExporter,
    InMemoryProfileExporter,
    ProfileExportResult,
    S3Exporter,
)
from otel_profiling.formats import default_format
from otel_profiling.profile import Profile, ProfileKind

SECRET = "s3cr3t-DO-NOT-LEAK-9f8e7d"
START = datetime(2026, 11, 24, 10, 15, 30, 123456, tzinfo=timezone.utc)


def profile_at(start: datetime = START, data: bytes = b'{"nodes":[]}', **attrs: object) -> Profile:
    profile = Profile(
        ProfileKind.CPU_PROFILE,
        default_format(ProfileKind.CPU_PROFILE),
        resource=Resource.create({"service.name": "checkout", "host.name": "web-1"}),
        attributes=attrs or {"profiling.trigger": "test"},
        start_time=start,
        trigger="test",
    )
    profile.end(data)
    return profile


def test_key_is_kind_and_iso_start_time() -> None:
    assert profile_at().key == "CPU_PROFILE-2026-11-24T10:15:30.123Z.cpuprofile"


def test_s3_object_has_content_type_and_metadata(
    s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    exporter = FsspecProfileExporter(f"s3://{bucket}/profiles", s3_options(s3_endpoint))
    profile = profile_at(**{"custom.attr": "é value", "profiling.trigger": "test"})
    assert exporter.export([profile]) is ProfileExportResult.SUCCESS
    obj = boto3_client.get_object(Bucket=bucket, Key=f"profiles/{profile.key}")
    assert obj["Body"].read() == profile.data
    assert obj["ContentType"] == "application/json"
    meta = obj["Metadata"]
    assert meta["profile-kind"] == "CPU_PROFILE"
    assert meta["profile-start-time"] == "2026-11-24T10:15:30.123Z"
    assert meta["profile-status"] == "OK"
    assert meta["service-name"] == "checkout"
    assert meta["profile-trigger"] == "test"
    assert "profile-duration-ms" in meta
    assert meta["attr-custom.attr"] == "%C3%A9 value"


def test_s3_bucket_is_created_once(s3_endpoint: str, bucket: str, boto3_client) -> None:  # type: ignore[no-untyped-def]
    exporter = FsspecProfileExporter(f"s3://{bucket}", s3_options(s3_endpoint))
    calls = []
    backend = exporter._get_backend()
    original = backend.fs._call_s3

    async def counting(method: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(method)
        return await original(method, *args, **kwargs)

    backend.fs._call_s3 = counting
    second = START.replace(microsecond=999000)
    assert exporter.export([profile_at(), profile_at(second)]) is ProfileExportResult.SUCCESS
    assert calls.count("create_bucket") == 1
    assert len(boto3_client.list_objects_v2(Bucket=bucket)["Contents"]) == 2


def test_s3_never_overwrites_an_existing_key(s3_endpoint: str, bucket: str, boto3_client) -> None:  # type: ignore[no-untyped-def]
    first = FsspecProfileExporter(f"s3://{bucket}", s3_options(s3_endpoint))
    second = FsspecProfileExporter(f"s3://{bucket}", s3_options(s3_endpoint))  # "another container"
    assert first.export([profile_at(data=b"one")]) is ProfileExportResult.SUCCESS
    assert second.export([profile_at(data=b"two")]) is ProfileExportResult.SUCCESS
    keys = sorted(o["Key"] for o in boto3_client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [
        "CPU_PROFILE-2026-11-24T10:15:30.123Z-1.cpuprofile",
        "CPU_PROFILE-2026-11-24T10:15:30.123Z.cpuprofile",
    ]
    bodies = {boto3_client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}
    assert bodies == {b"one", b"two"}


def test_s3_exporter_with_openprofiling_options(  # type: ignore[no-untyped-def]
    s3_endpoint: str, bucket: str, boto3_client
) -> None:
    from urllib.parse import urlparse

    endpoint = urlparse(s3_endpoint)
    exporter = S3Exporter(
        end_point=endpoint.hostname,
        port=endpoint.port,
        use_ssl=False,
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        bucket=bucket,
        prefix="team-a",
    )
    assert exporter.export([profile_at()]) is ProfileExportResult.SUCCESS
    keys = [o["Key"] for o in boto3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["team-a/CPU_PROFILE-2026-11-24T10:15:30.123Z.cpuprofile"]


def test_s3_exporter_endpoint_rules() -> None:
    minio = S3Exporter(bucket="b", end_point="minio.local", port=9000, use_ssl=False)
    assert minio._options["endpoint_url"] == "http://minio.local:9000"
    tls = S3Exporter(bucket="b", end_point="minio.local")
    assert tls._options["endpoint_url"] == "https://minio.local"
    aws = S3Exporter(bucket="b", end_point="s3.amazonaws.com", region="eu-west-1")
    assert "endpoint_url" not in aws._options
    assert aws._options["client_kwargs"] == {"region_name": "eu-west-1"}
    assert aws._options["config_kwargs"]["request_checksum_calculation"] == "when_required"
    with pytest.raises(ValueError, match="bucket"):
        S3Exporter(bucket="")


def test_secrets_never_in_repr_or_logs(
    s3_endpoint: str, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = S3Exporter(
        bucket=bucket,
        end_point="127.0.0.1",
        port=1,
        use_ssl=False,  # nothing listens on port 1
        access_key="AKIA-visible-id",
        secret_key=SECRET,
        storage_options={"config_kwargs": {"retries": {"max_attempts": 1}}},
        timeout_millis=2_000,
    )
    assert SECRET not in repr(exporter) and "AKIA-visible-id" not in repr(exporter)
    assert "***" in repr(exporter)
    with caplog.at_level(logging.DEBUG):
        assert exporter.export([profile_at()]) is ProfileExportResult.FAILURE
    text = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "Could not write" in text
    assert SECRET not in text


def test_local_files_are_created_exclusively(tmp_path) -> None:  # type: ignore[no-untyped-def]
    exporter = FsspecProfileExporter(f"file://{tmp_path}/deep/dir")
    assert (
        exporter.export([profile_at(data=b"a"), profile_at(data=b"b")])
        is ProfileExportResult.SUCCESS
    )
    names = sorted(os.listdir(tmp_path / "deep" / "dir"))
    assert names == [
        "CPU_PROFILE-2026-11-24T10:15:30.123Z-1.cpuprofile",
        "CPU_PROFILE-2026-11-24T10:15:30.123Z.cpuprofile",
    ]
    assert (tmp_path / "deep" / "dir" / names[1]).read_bytes() == b"a"


def test_placeholders_fill_from_the_resource(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    exporter = FsspecProfileExporter(
        "memory://fleet/{service.name}/{host.name}/{deployment.environment}"
    )
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    profile = profile_at()  # an agent with another resource: no deployment.environment
    with caplog.at_level(logging.WARNING):
        assert exporter.path_for(profile) == (
            "/fleet/checkout/web-1/unknown/CPU_PROFILE-2026-11-24T10:15:30.123Z.cpuprofile"
        )
        exporter.path_for(profile)
    missing = [r for r in caplog.records if "{deployment.environment}" in r.getMessage()]
    assert len(missing) == 1  # said once, not silently, not on every profile
    assert exporter.export([profile]) is ProfileExportResult.SUCCESS
    assert fsspec.filesystem("memory").cat(exporter.path_for(profile)) == profile.data
    fsspec.filesystem("memory").rm("/fleet", recursive=True)


def test_placeholders_from_a_resource_built_in_code() -> None:
    """Semantic-convention names are accepted even when only the agent's resource has them."""
    exporter = FsspecProfileExporter("memory://fleet/{service.name}/{service.version}")
    profile = profile_at()
    profile.resource = Resource.create({"service.name": "shop", "service.version": "2.0"})
    assert exporter.path_for(profile).startswith("/fleet/shop/2.0/")
    with pytest.raises(ValueError, match=r"Unknown placeholder \{team\}.*service\.\*"):
        FsspecProfileExporter("memory://fleet/{team}")


def test_unknown_placeholder_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"Unknown placeholder \{missing\}.*\{service\.name\}"):
        FsspecProfileExporter("memory://fleet/{service.name}/{missing}")
    with pytest.raises(ValueError, match=r"Unknown placeholder \{nope\} in the key template"):
        FsspecProfileExporter("memory://fleet", key_template="{nope}-{kind}.{extension}")
    with pytest.raises(ValueError, match="not closed"):
        FsspecProfileExporter("memory://fleet/{service.name")


def test_placeholder_values_cannot_escape_the_prefix() -> None:
    exporter = FsspecProfileExporter("memory://safe/{service.name}")
    profile = Profile(
        ProfileKind.CPU_PROFILE,
        default_format(ProfileKind.CPU_PROFILE),
        resource=Resource.create({"service.name": "../../etc/x y"}),
        start_time=START,
    )
    assert exporter.path_for(profile).startswith("/safe/")
    assert "/../" not in exporter.path_for(profile)


def test_failed_profiles_are_not_written_as_empty_objects(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    exporter = FsspecProfileExporter(f"file://{tmp_path}")
    failed = Profile(ProfileKind.CPU_PROFILE, default_format(ProfileKind.CPU_PROFILE))
    failed.end(error=RuntimeError("yappi broke"))
    with caplog.at_level(logging.WARNING):
        assert exporter.export([failed]) is ProfileExportResult.SUCCESS
    assert os.listdir(tmp_path) == []
    assert "yappi broke" in caplog.text


def test_missing_backend_names_the_extra_to_install() -> None:
    for protocol, extra, module in (("gs", "gcs", "gcsfs"), ("az", "azure", "adlfs")):
        if importlib.util.find_spec(module) is None:
            with pytest.raises(
                ImportError, match=rf"pip install 'otel-profiling-agent\[{extra}\]'"
            ):
                FsspecProfileExporter(f"{protocol}://bucket/profiles")
            return
    pytest.skip("gcsfs and adlfs are both installed: no missing backend to test")


def test_empty_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="OTEL_EXPORTER_FSSPEC_PROFILES_URL"):
        FsspecProfileExporter("")


def test_in_memory_and_console_exporters() -> None:
    memory = InMemoryProfileExporter()
    profile = profile_at()
    assert memory.export([profile]) is ProfileExportResult.SUCCESS
    assert memory.get_finished_profiles() == (profile,)
    out = io.StringIO()
    assert ConsoleProfileExporter(out).export([profile]) is ProfileExportResult.SUCCESS
    line = json.loads(out.getvalue())
    assert line["key"] == profile.key and line["service.name"] == "checkout"
    assert line["size"] == len(profile.data)


def test_local_files_follow_the_umask(tmp_path) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(0o022)
    try:
        exporter = FsspecProfileExporter(f"file://{tmp_path}")
        assert exporter.export([profile_at()]) is ProfileExportResult.SUCCESS
    finally:
        os.umask(old)
    (name,) = os.listdir(tmp_path)
    assert os.stat(tmp_path / name).st_mode & 0o777 == 0o644
