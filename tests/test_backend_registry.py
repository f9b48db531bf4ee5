"""Storage backends are classes registered by protocol name: a new protocol's quirks are
one class, and the exporter, the command line and the install hints all find it there."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping

import pytest
from opentelemetry.sdk.resources import Resource

from otel_profiling import Profile, ProfileKind
from otel_profiling.exporters import FsspecProfileExporter, backends
from otel_profiling.exporters.backends import (
    AsyncBackend,
    Backend,
    LocalBackend,
    S3Backend,
    backend_class,
    default_options,
    missing_backend_message,
    normalize_scheme,
    register_backend,
)
from otel_profiling.formats import default_format


def test_each_protocol_has_its_class_and_one_install_hint() -> None:
    assert backend_class("s3") is S3Backend and backend_class("s3a") is S3Backend
    assert backend_class("file") is LocalBackend
    assert backend_class("nosuch") is Backend
    assert backend_class("nosuch", async_impl=True) is AsyncBackend
    for protocol, extra in (("s3", "s3"), ("gs", "gcs"), ("abfs", "azure"), ("az", "azure")):
        message = missing_backend_message(protocol, ImportError("no module"))
        assert f"[{extra}]'" in message and f"'{protocol}://'" in message
    assert "install the fsspec implementation" in missing_backend_message("hdfs", ImportError())


def test_s3_defaults_live_in_the_s3_backend() -> None:
    options = default_options("s3", {"config_kwargs": {"response_checksum_validation": "x"}})
    assert options["config_kwargs"] == {
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "x",  # what the user set wins
    }
    assert default_options("file", {"auto_mkdir": True}) == {"auto_mkdir": True}


def test_schemes_are_read_in_any_case_by_one_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """``S3://`` is ``s3://`` (RFC 3986): the exporter from the environment gets the S3
    defaults for it, as the command line does."""
    from otel_profiling.exporters.env import fsspec_exporter_from_env

    assert normalize_scheme("S3://Bucket/Key") == ("s3://Bucket/Key", "s3")
    assert normalize_scheme("/var/Profiles") == ("/var/Profiles", "file")
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_URL", "S3://bucket/profiles")
    exporter = fsspec_exporter_from_env()
    assert exporter.url == "s3://bucket/profiles" and exporter.protocol == "s3"
    assert exporter._options["config_kwargs"]["request_checksum_calculation"] == "when_required"


def test_a_registered_backend_is_what_the_exporter_writes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    created: List[Dict[str, Any]] = []

    @register_backend("memory")
    class RecordingBackend(Backend):
        async def create(
            self, path: str, data: bytes, content_type: str, metadata: Mapping[str, str]
        ) -> None:
            created.append({"path": path, "data": data, "type": content_type, **metadata})
            await super().create(path, data, content_type, metadata)

    exporter = FsspecProfileExporter("memory://registry-test/profiles")
    start = datetime(2026, 11, 24, 10, 0, 0, tzinfo=timezone.utc)
    kind = ProfileKind.CPU_PROFILE
    profile = Profile(kind, default_format(kind), resource=Resource.create({}), start_time=start)
    profile.end(b"{}")
    path = exporter.write(profile)
    assert [c["path"] for c in created] == [path]
    assert created[0]["data"] == b"{}" and created[0]["type"] == "application/json"
    assert created[0]["profile-kind"] == "CPU_PROFILE"
    assert exporter.fs.cat_file(path) == b"{}"
