"""Fault injection against a real S3 server: outages, flaky networks, hangs, kills, forks.

Every test checks that no profile is lost: what was produced is read back from
the bucket with boto3 (a different client from the exporter's), byte for byte.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List

import boto3
import pytest
from botocore.config import Config
from faults import FlakyProxy, HangingServer
from reliability_helpers import bucket_objects, digests, sha
from support import APPS, MotoServer, child_env, free_port, make_profile, s3_options, wait_for
from viewers import load_cpuprofile

from otel_profiling.exporters import FsspecProfileExporter, S3Exporter
from otel_profiling.processors import BatchProfileProcessor
from otel_profiling.processors.spool import Spool

APP = str(APPS / "reliability_app.py")


def client_for(endpoint: str, key: str = "", secret: str = ""):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key or os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or os.environ["AWS_SECRET_ACCESS_KEY"],
        config=Config(request_checksum_calculation="when_required", retries={"max_attempts": 2}),
    )


def s3(endpoint: str, bucket: str, **kwargs: object) -> S3Exporter:
    return S3Exporter(bucket=bucket, end_point=endpoint, use_ssl=False, **kwargs)  # type: ignore[arg-type]


def run_app(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, APP, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(**env),
    )


def test_server_down_for_ten_seconds_loses_nothing(tmp_path: Path, bucket: str) -> None:
    server = MotoServer(port=free_port()).start()
    processor = BatchProfileProcessor(
        s3(server.endpoint, bucket, timeout_millis=2_000),
        schedule_delay_millis=100,
        spool=Spool(tmp_path / "spool"),
    )
    try:
        processor.on_end(make_profile(0))
        assert processor.force_flush(20_000) and processor.exported_profiles == 1
        server.stop()  # moto keeps its state in memory: the bucket goes with it
        produced = []
        outage_end = time.monotonic() + 10
        index = 1
        while time.monotonic() < outage_end:
            profile = make_profile(index, size=20_000)
            processor.on_end(profile)
            produced.append(profile)
            index += 1
            time.sleep(0.5)
        server.start()
        for extra in range(3):
            profile = make_profile(1000 + extra)
            processor.on_end(profile)
            produced.append(profile)
        client = client_for(server.endpoint)
        expected = sorted(sha(p.data) for p in produced)
        wait_for(lambda: digests(bucket_objects(client, bucket)) == expected, 120, 1.0)
        objects = bucket_objects(client, bucket)
        assert digests(objects) == expected
        assert sorted(objects) == sorted(p.key for p in produced)
        assert processor.spooled_profiles > 0  # the outage really made it spool
        # the counter moves just after the upload is visible: wait for it too
        wait_for(lambda: processor.resent_profiles == processor.spooled_profiles, 30)
        assert processor.resent_profiles == processor.spooled_profiles
        assert processor.spool is not None and processor.spool.pending() == 0
        assert processor.dropped_profiles == 0 and processor.failed_profiles == 0
    finally:
        processor.shutdown(5_000)
        server.stop()


def test_killed_process_spool_is_sent_by_next_process(
    s3_endpoint: str, bucket: str, boto3_client, _spool_in_tmp: Path
) -> None:  # type: ignore[no-untyped-def]
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = child_env(OTEL_SERVICE_NAME="kill-test")
    proc = subprocess.Popen(
        [sys.executable, APP, "spool-then-wait", dead, bucket, "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    keys: Dict[str, str] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if parts[0] == "key":
                keys[parts[1]] = parts[2]
            elif parts[0] == "spooled":
                assert parts[1] == "5"
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    spool_dir = _spool_in_tmp / "kill-test"
    assert len(list(spool_dir.rglob("*.profile"))) == 5
    assert len(keys) == 5

    result = run_app("start", s3_endpoint, bucket, OTEL_SERVICE_NAME="kill-test")
    assert result.returncode == 0, result.stderr
    assert "pending 0 resent 5" in result.stdout
    objects = bucket_objects(boto3_client, bucket)
    assert {k: sha(v) for k, v in objects.items()} == keys  # same keys, same bytes
    meta = boto3_client.head_object(Bucket=bucket, Key=next(iter(keys)))["Metadata"]
    assert meta["profile-kind"] == "CPU_PROFILE" and meta["attr-process.pid"] != str(os.getpid())
    assert not list(spool_dir.rglob("*.profile"))


def test_flaky_proxy_503_and_resets_lose_nothing(
    tmp_path: Path, s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    proxy = FlakyProxy(s3_endpoint).start()
    processor = BatchProfileProcessor(
        s3(proxy.endpoint, bucket, timeout_millis=20_000),
        schedule_delay_millis=50,
        max_export_batch_size=8,
        spool=Spool(tmp_path / "spool"),
    )
    try:
        produced = [make_profile(i, size=10_000) for i in range(20)]
        for profile in produced:
            processor.on_end(profile)
        expected = sorted(sha(p.data) for p in produced)
        wait_for(lambda: digests(bucket_objects(boto3_client, bucket)) == expected, 120, 0.5)
        objects = bucket_objects(boto3_client, bucket)
        assert digests(objects) == expected  # all there, byte-identical, no duplicates
        assert sorted(objects) == sorted(p.key for p in produced)
        assert proxy.failed_503 > 0 and proxy.resets > 0 and proxy.forwarded > 0
    finally:
        processor.shutdown(5_000)
        proxy.stop()


def test_wrong_credentials_one_clear_error_no_secret(bucket: str, _spool_in_tmp: Path) -> None:
    server = MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}).start()
    secret = "s3cr3t-VALUE-never-to-be-shown-42"
    access = "AKIAWRONGKEY0000TEST"
    try:
        result = run_app(
            "bad-credentials", server.endpoint, bucket, access, secret, OTEL_SERVICE_NAME="creds"
        )
    finally:
        server.stop()
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
    assert "alive True exported 0" in result.stdout  # the application kept running
    assert "spooled 3" in result.stdout  # and the profiles are kept, not lost
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr
    assert "Fix:" in errors[0] and "credentials" in errors[0]
    assert "Transient failure" not in result.stderr  # a permanent failure is not retried
    assert secret not in output and access not in output
    assert "***" in output  # the repr of the exporter was logged, redacted
    entries = list((_spool_in_tmp / "creds").rglob("*.profile"))
    assert len(entries) == 3
    for entry in entries:
        raw = entry.read_bytes()
        assert secret.encode() not in raw and access.encode() not in raw


def test_permanent_failure_logged_once_in_process(
    bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}).start()
    secret = "another-secret-value-xyz"
    try:
        exporter = S3Exporter(
            bucket=bucket,
            end_point=server.endpoint,
            use_ssl=False,
            access_key="AKIAWRONG",
            secret_key=secret,
        )
        with caplog.at_level(logging.DEBUG, logger="otel_profiling"):
            for i in range(3):
                profile = make_profile(i)
                assert exporter.export_unsent([profile]) == [profile]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert not [r for r in caplog.records if "Transient" in r.getMessage()]
        assert all(secret not in r.getMessage() for r in caplog.records)
        assert secret not in repr(exporter)
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["s3", "file"])
def test_same_key_same_millisecond_two_processes(
    backend: str, tmp_path: Path, s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    start = datetime(2026, 11, 24, 10, 15, 30, 123000, tzinfo=timezone.utc).isoformat()
    at = str(time.time() + 3.0)
    if backend == "s3":
        boto3_client.create_bucket(Bucket=bucket)
        args = ["same-key", f"s3://{bucket}/p", start, at, s3_endpoint]
    else:
        args = ["same-key", f"file://{tmp_path}/out", start, at]
    procs = [
        subprocess.Popen(
            [sys.executable, APP, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    written = sorted(out.split()[2] for out, _ in outs)
    assert all(out.startswith("unsent 0") for out, _ in outs)
    key = "CPU_PROFILE-2026-11-24T10:15:30.123Z.cpuprofile"
    if backend == "s3":
        objects = {k: sha(v) for k, v in bucket_objects(boto3_client, bucket).items()}
        assert sorted(objects) == [f"p/{key.replace('.cpuprofile', '-1.cpuprofile')}", f"p/{key}"]
        assert sorted(objects.values()) == written
    else:
        files = sorted(os.listdir(tmp_path / "out"))
        assert files == [key.replace(".cpuprofile", "-1.cpuprofile"), key]
        assert sorted(sha((tmp_path / "out" / f).read_bytes()) for f in files) == written


def test_preloaded_parent_forks_two_children_each_profile_arrives(
    s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    result = run_app("preload-fork", s3_endpoint, bucket, OTEL_SERVICE_NAME="preload")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    parent_pid = str(os.getpid())
    child_pids = [line.split()[1] for line in lines if line.startswith("child ")]
    assert len(child_pids) == 2 and len(set(child_pids)) == 2, (lines, result.stderr)
    assert all(line.endswith("flushed True") for line in lines if "flushed" in line)
    assert [line.split()[2] for line in lines if line.startswith("child-exit")] == ["0", "0"]
    objects = bucket_objects(boto3_client, bucket)
    assert len(objects) == 4  # parent before, two children, parent after
    pids: List[str] = []
    for key, data in objects.items():
        load_cpuprofile(data)  # each is a complete, valid .cpuprofile
        pids.append(
            boto3_client.head_object(Bucket=bucket, Key=key)["Metadata"]["attr-process.pid"]
        )
    assert set(child_pids) <= set(pids)
    assert parent_pid not in pids
    assert len(set(pids)) == 3


def test_shutdown_with_hanging_server_is_bounded_and_spools(tmp_path: Path, bucket: str) -> None:
    server = HangingServer().start()
    spool = Spool(tmp_path / "spool")
    # the export hangs for 8 s, far longer than the flush waits, even on a loaded machine
    processor = BatchProfileProcessor(
        s3(server.endpoint, bucket), export_timeout_millis=8_000, spool=spool
    )
    try:
        profile = make_profile(1)
        processor.on_end(profile)
        assert wait_for(lambda: server.connections > 0, 10)
        began = time.monotonic()
        assert processor.force_flush(1_000) is False
        processor.shutdown(timeout_millis=2_000)
        elapsed = time.monotonic() - began
        assert elapsed < 1.0 + 2.0 + 2.0, elapsed  # flush timeout + shutdown timeout + 2 s
        (kept,) = spool.profiles()  # kept once, though the export was still running
        assert kept.data == profile.data and kept.key == profile.key
        assert processor.spooled_profiles == 1 and processor.exported_profiles == 0
    finally:
        server.stop()


def test_interpreter_exit_with_hanging_server_is_bounded(bucket: str, _spool_in_tmp: Path) -> None:
    server = HangingServer().start()
    try:
        began = time.monotonic()
        result = run_app(
            "exit-while-hanging", server.endpoint, bucket, timeout=60, OTEL_SERVICE_NAME="hang"
        )
        total = time.monotonic() - began
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    exited_at = float(result.stdout.split()[1])
    assert time.time() - exited_at < 2.0 + 8.0, result.stderr  # exit timeout + margin (loaded CI)
    assert total < 60
    entries = list((_spool_in_tmp / "hang").rglob("*.profile"))
    assert len(entries) == 1, result.stderr
    assert entries[0].read_bytes().endswith(b'{"hanging": true}')


def test_resent_profile_that_had_arrived_is_not_duplicated(
    tmp_path: Path, s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    """A shutdown that times out spools in-flight profiles that may still arrive."""
    exporter = s3(s3_endpoint, bucket)
    profile = make_profile(1)
    assert exporter.export_unsent([profile]) == []
    spool = Spool(tmp_path / "spool")
    spool.put(profile)
    processor = BatchProfileProcessor(s3(s3_endpoint, bucket), spool=spool)
    try:
        # the counter moves just after the spool file is removed: wait for both
        assert wait_for(lambda: spool.pending() == 0 and processor.resent_profiles >= 1, 30)
        assert processor.resent_profiles == 1
        objects = bucket_objects(boto3_client, bucket)
        assert list(objects) == [profile.key]
    finally:
        processor.shutdown()


def test_checksums_sse_and_private_objects(s3_endpoint: str, bucket: str, boto3_client) -> None:  # type: ignore[no-untyped-def]
    exporter = s3(s3_endpoint, bucket, s3_additional_kwargs={"ServerSideEncryption": "AES256"})
    profile = make_profile(1, size=50_000)
    assert exporter.export_unsent([profile]) == []
    head = boto3_client.head_object(Bucket=bucket, Key=profile.key)
    assert head["ETag"].strip('"') == hashlib.md5(profile.data).hexdigest()
    assert head["ServerSideEncryption"] == "AES256"
    grants = boto3_client.get_object_acl(Bucket=bucket, Key=profile.key)["Grants"]
    assert not [g for g in grants if "URI" in g["Grantee"]]  # no AllUsers / AuthenticatedUsers
    with pytest.raises(ValueError, match="never made public"):
        s3(s3_endpoint, bucket, s3_additional_kwargs={"ACL": "public-read"})


def test_file_url_bytes_read_back_equal(tmp_path: Path) -> None:
    exporter = FsspecProfileExporter(f"file://{tmp_path}/out")
    profiles = [make_profile(i, size=30_000) for i in range(12)]
    assert exporter.export_unsent(profiles) == []
    for profile in profiles:
        assert (tmp_path / "out" / profile.key).read_bytes() == profile.data
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".tmp")]
    exporter.shutdown()  # its writer threads end: none is left to later tests


def test_s3_options_helper_still_matches(s3_endpoint: str) -> None:
    """The test helper's options go through the exporter's timeout settings unchanged."""
    exporter = FsspecProfileExporter("s3://x", s3_options(s3_endpoint), timeout_millis=3_000)
    config = exporter.fs.config_kwargs
    assert config["read_timeout"] == 3.0 and config["retries"] == {"total_max_attempts": 1}
    assert exporter.fs.retries == 1


def test_batch_with_clashing_keys_keeps_every_profile(
    s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    """The concurrent first try meets If-None-Match clashes; the retry path adds suffixes."""
    exporter = s3(s3_endpoint, bucket)
    assert exporter.export_unsent([make_profile(0)]) == []  # bucket known: concurrent path
    start = datetime(2026, 11, 24, 10, 15, 30, 123000, tzinfo=timezone.utc)
    clashing = [make_profile(i, start=start) for i in range(1, 6)]
    assert exporter.export_unsent(clashing) == []
    objects = bucket_objects(boto3_client, bucket)
    same = {
        k: v for k, v in objects.items() if k.startswith("CPU_PROFILE-2026-11-24T10:15:30.123Z")
    }
    assert len(same) == 5
    assert sorted(sha(v) for v in same.values()) == sorted(sha(p.data) for p in clashing)
