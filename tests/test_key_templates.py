"""One naming rule both ways: keys made by ``ProfileNamer`` are parsed back, and the
command line finds objects written under a custom key template (moto S3 and ``file://``)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List

import pytest
from clitools import cli
from opentelemetry.sdk.resources import Resource

from otel_profiling import Profile, ProfileKind
from otel_profiling.exporters import FsspecProfileExporter
from otel_profiling.formats import default_format, get_format
from otel_profiling.naming import DEFAULT_NAMER, ProfileNamer, collision_key, iso_millis

TEMPLATES = [
    "{kind}-{start_time}.{extension}",
    "{service.name}/{date}/{start_time}_{kind}.{extension}",
    "{kind}/{process.pid}/{profiling.trigger}-{start_time}.{extension}",
    "{start_time}.{kind}",
]
CUSTOM = "{service.name}/{date}/{start_time}_{kind}.{extension}"


def _cpuprofile(samples: int) -> bytes:
    """A DevTools CPU profile with ``samples`` samples of 1 ms each in one function."""
    frame = {"url": "/srv/app.py", "scriptId": "1", "lineNumber": 0, "columnNumber": 0}
    nodes = [
        {"id": 1, "callFrame": {**frame, "functionName": "(root)"}, "hitCount": 0, "children": [2]},
        {"id": 2, "callFrame": {**frame, "functionName": "work"}, "hitCount": samples},
    ]
    body = {
        "nodes": nodes,
        "startTime": 0,
        "endTime": samples * 1000,
        "samples": [2] * samples,
        "timeDeltas": [1000] * samples,
    }
    return json.dumps(body).encode()


def _profile(
    kind: ProfileKind, data: bytes, start: datetime, service: str = "checkout", fmt: str = ""
) -> Profile:
    profile = Profile(
        kind,
        get_format(kind, fmt) if fmt else default_format(kind),
        resource=Resource.create({"service.name": service}),
        attributes={"process.pid": 4242, "profiling.trigger": "signal"},
        trigger="signal",
        start_time=start,
    )
    profile.end(data, end_time=start + timedelta(seconds=2))
    return profile


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("kind", list(ProfileKind))
def test_key_and_parse_are_inverse(template: str, kind: ProfileKind) -> None:
    start = datetime(2026, 11, 24, 10, 15, 30, 123456, tzinfo=timezone.utc)
    profile = _profile(kind, b"x", start)
    namer = ProfileNamer(template)
    key = namer.key(profile)
    for name in (key, collision_key(key, "1"), collision_key(key, "9f3a0c1d"), f"a/b/{key}"):
        parsed = namer.parse(name)
        assert parsed is not None, name
        assert parsed.kind is kind
        assert parsed.start_time == start.replace(microsecond=123000)  # milliseconds kept
        if "{extension}" in template:
            assert parsed.extension == profile.extension
        found = DEFAULT_NAMER.find(name)  # without knowing the template
        assert found is not None and (found.kind, found.start_time) == (
            parsed.kind,
            parsed.start_time,
        )


def test_profile_key_is_the_default_namers() -> None:
    start = datetime(2026, 11, 24, 10, 15, 30, 123000, tzinfo=timezone.utc)
    profile = _profile(ProfileKind.CPU_PROFILE, b"x", start)
    assert profile.key == DEFAULT_NAMER.key(profile)
    assert profile.key == "CPU_PROFILE-2026-11-24T10:15:30.123Z.cpuprofile"


def test_a_name_that_is_not_a_profiles_is_not_parsed() -> None:
    namer = ProfileNamer(CUSTOM)
    for name in (
        "README.txt",
        "checkout/2026-11-24/not-a-time_CPU_PROFILE.cpuprofile",
        "checkout/2026-11-24/2026-11-24T10:15:30.123Z_GPU_PROFILE.cpuprofile",
        "CPU_PROFILE-2026-13-45T10:15:30.123Z.cpuprofile",  # no such month
    ):
        assert namer.parse(name) is None, name
        assert DEFAULT_NAMER.find(name) is None, name
    assert not ProfileNamer("{service.name}/{start_time}.{extension}").parseable


def _write_fleet(exporter: FsspecProfileExporter) -> List[Dict[str, Any]]:
    """Five CPU profiles of two services (two in the same millisecond) and one heap profile."""
    base = datetime(2026, 11, 24, 9, 0, 0, tzinfo=timezone.utc)
    written = []
    for i, (service, minutes, samples) in enumerate(
        [("checkout", 0, 3), ("checkout", 0, 5), ("billing", 10, 7), ("billing", 20, 11)]
    ):
        start = base + timedelta(minutes=minutes)
        profile = _profile(ProfileKind.CPU_PROFILE, _cpuprofile(samples), start, service)
        path = exporter.write(profile)
        written.append({"path": path, "start": profile.start_time, "samples": samples, "i": i})
    heap = _profile(ProfileKind.HEAP_PROFILE, b'{"head": {}}', base + timedelta(hours=1))
    exporter.write(heap)
    return written


def _check_ls_and_merge(
    url: str, written: List[Dict[str, Any]], tmp_path: Path, env: Dict[str, str]
) -> None:
    listed = cli("ls", url, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["kind"] for r in rows] == ["CPU_PROFILE"] * 4 + ["HEAP_PROFILE"]
    starts = [iso_millis(w["start"]) for w in sorted(written, key=lambda w: w["start"])]
    assert [r["start_time"] for r in rows[:4]] == starts
    # the two checkout profiles share a millisecond: one key got a collision suffix
    assert len({r["key"] for r in rows}) == 5
    assert all(r["key"].startswith(("checkout/", "billing/")) for r in rows)
    only_cpu = cli("ls", url, "--kind", "cpu", "--since", "2026-11-24T09:05:00Z", "--json", env=env)
    assert only_cpu.returncode == 0, only_cpu.stderr
    # the service is the key's first segment (file:// keeps no metadata to read it from)
    assert [r["key"].split("/")[0] for r in json.loads(only_cpu.stdout)] == ["billing"] * 2

    out = tmp_path / "merged.pprof"
    merged = cli("merge", url, "--kind", "cpu", "-o", str(out), "--json", env=env)
    assert merged.returncode == 0, merged.stderr
    summary = json.loads(merged.stdout)
    assert summary["inputs"] == 4 and summary["merged"] == 4
    # every sample of every input, none lost and none counted twice
    assert summary["samples"] == sum(w["samples"] for w in written)


def test_ls_and_merge_find_a_custom_template_on_file_urls(tmp_path: Path) -> None:
    root = tmp_path / "store"
    exporter = FsspecProfileExporter(f"file://{root}", key_template=CUSTOM)
    written = _write_fleet(exporter)
    assert written[1]["path"].endswith("-1.cpuprofile")  # the clash kept both
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    _check_ls_and_merge(f"file://{root}", written, tmp_path, env)


def test_ls_and_merge_find_a_custom_template_on_s3(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    options = {
        "endpoint_url": s3_endpoint,
        "key": os.environ["AWS_ACCESS_KEY_ID"],
        "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
        "config_kwargs": {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        },
    }
    exporter = FsspecProfileExporter(f"s3://{bucket}/custom", options, key_template=CUSTOM)
    written = _write_fleet(exporter)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["AWS_ENDPOINT_URL"] = s3_endpoint
    _check_ls_and_merge(f"s3://{bucket}/custom", written, tmp_path, env)


def test_http_download_is_named_as_the_stored_object(tmp_path: Path) -> None:
    import urllib.request

    from otel_profiling import ProfilingAgent
    from otel_profiling.processors import SimpleProfileProcessor
    from otel_profiling.profilers import CpuProfiler
    from otel_profiling.triggers import HttpTrigger

    token = "t0ken-for-tests-only"
    exporter = FsspecProfileExporter(f"file://{tmp_path}", key_template=CUSTOM)
    agent = ProfilingAgent()
    trigger = HttpTrigger(token=token)
    agent.register(trigger, CpuProfiler())
    agent.add_profile_processor(SimpleProfileProcessor(exporter))
    agent.start()
    try:
        req = urllib.request.Request(trigger.url + "/cpu?seconds=0.2", method="GET")
        req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=120) as resp:
            disposition = resp.headers["Content-Disposition"]
            body = resp.read()
    finally:
        agent.shutdown()
    filename = disposition.split('filename="')[1].rstrip('"')
    stored = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(stored) == 1
    assert stored[0].name == filename  # the download is named as the object it is stored as
    assert stored[0].read_bytes() == body
    assert filename.endswith("_CPU_PROFILE.cpuprofile")
