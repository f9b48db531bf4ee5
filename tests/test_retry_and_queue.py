"""Error classification, backoff, the enforced export timeout and the bounded queue."""

from __future__ import annotations

import errno
import logging
import threading
import time
from pathlib import Path
from typing import List, Sequence

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from conftest import wait_for
from faults import HangingServer
from reliability_helpers import make_profile

from otel_profiling import Profile
from otel_profiling.exporters import InMemoryProfileExporter, ProfileExportResult, S3Exporter
from otel_profiling.exporters.retry import Backoff, is_transient, remedy_for
from otel_profiling.processors import BatchProfileProcessor
from otel_profiling.processors.spool import Spool


def client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


def wrapped(outer: Exception, cause: BaseException) -> Exception:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        ConnectionResetError(errno.ECONNRESET, "reset"),
        TimeoutError("timed out"),
        OSError(errno.EBUSY, "Please reduce your request rate."),  # s3fs's SlowDown / 503
        wrapped(OSError(errno.EIO, "x"), client_error(500, "InternalError")),
        wrapped(OSError(errno.EIO, "x"), client_error(503, "SlowDown")),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_transient_failures_are_retried(exc: Exception) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(PermissionError("Access Denied"), client_error(403, "AccessDenied")),
        wrapped(PermissionError("bad key"), client_error(403, "InvalidAccessKeyId")),
        wrapped(FileNotFoundError("no bucket"), client_error(404, "NoSuchBucket")),
        wrapped(OSError(errno.EINVAL, "bad"), client_error(400, "InvalidArgument")),
        ValueError("bad option"),
    ],
)
def test_permanent_failures_are_not(exc: Exception) -> None:
    assert not is_transient(exc)


def test_remedy_names_the_fix() -> None:
    bad_key = wrapped(PermissionError("x"), client_error(403, "InvalidAccessKeyId"))
    assert "AWS_ACCESS_KEY_ID" in remedy_for(bad_key)
    assert "create the bucket" in remedy_for(FileNotFoundError("x"))


def test_backoff_grows_with_jitter_and_respects_the_deadline() -> None:
    backoff = Backoff(time.monotonic() + 0.5, initial=0.05, maximum=0.2)
    began = time.monotonic()
    waits = 0
    while backoff.wait():
        waits += 1
    assert 2 <= waits <= 20
    assert time.monotonic() - began <= 0.5


def test_export_timeout_is_enforced_on_a_hanging_server(bucket: str) -> None:
    server = HangingServer().start()
    try:
        exporter = S3Exporter(
            bucket=bucket, end_point=server.endpoint, use_ssl=False, timeout_millis=1_500
        )
        profiles = [make_profile(i) for i in range(3)]
        began = time.monotonic()
        unsent = exporter.export_unsent(profiles)
        elapsed = time.monotonic() - began
        assert unsent == profiles
        assert elapsed < 1.5 + 1.0, elapsed
        assert exporter.export(profiles[:1]) is ProfileExportResult.FAILURE
    finally:
        server.stop()


class GatedExporter(InMemoryProfileExporter):
    """An exporter that blocks until the test opens the gate: the backend is stuck."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        self.entered.set()
        self.gate.wait(30)
        return super().export(profiles)


def test_queue_bounded_by_bytes_drops_counted_and_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = GatedExporter()
    processor = BatchProfileProcessor(
        exporter,
        schedule_delay_millis=10,
        max_export_batch_size=1,
        max_queue_bytes=10_000,
        spool=Spool(tmp_path / "spool"),
    )
    with caplog.at_level(logging.WARNING, logger="otel_profiling"):
        processor.on_end(make_profile(0, size=3_000))
        assert exporter.entered.wait(10)  # the worker is now stuck in export
        enqueue_records = len(caplog.records)
        for i in range(1, 21):
            processor.on_end(make_profile(i, size=3_000))
            assert processor.queued_bytes <= 10_000
        assert len(caplog.records) == enqueue_records  # on_end never logs
        # 10 kB hold the 3 kB profile being exported and two queued ones
        assert processor.dropped_profiles == 20 - 2
        exporter.gate.set()
        assert processor.force_flush(10_000)
    drops = [r for r in caplog.records if "Dropped" in r.getMessage()]
    assert len(drops) == 1 and "18" in drops[0].getMessage()
    assert "OTEL_BPP_MAX_QUEUE_BYTES" in drops[0].getMessage()
    kept = [p.attributes["test.index"] for p in exporter.get_finished_profiles()]
    assert kept == [0, 19, 20]  # the oldest were dropped
    processor.shutdown()


def test_failures_without_spool_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Failing(InMemoryProfileExporter):
        def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
            return ProfileExportResult.FAILURE

    processor = BatchProfileProcessor(Failing(), schedule_delay_millis=10, spool=False)
    with caplog.at_level(logging.WARNING, logger="otel_profiling"):
        processor.on_end(make_profile(1))
        assert processor.force_flush(10_000)
    assert processor.failed_profiles == 1
    assert any("spooling is off" in r.getMessage() for r in caplog.records)
    processor.shutdown()


def test_spooled_profiles_resent_when_backend_recovers(tmp_path: Path) -> None:
    """In process: a backend that fails, then works; the spool empties into it."""

    class Flaky(InMemoryProfileExporter):
        def __init__(self) -> None:
            super().__init__()
            self.down = True
            self.calls: List[int] = []

        def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
            self.calls.append(len(profiles))
            if self.down:
                return ProfileExportResult.FAILURE
            return super().export(profiles)

    exporter = Flaky()
    spool = Spool(tmp_path / "spool")
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=10, spool=spool)
    produced = [make_profile(i) for i in range(5)]
    for profile in produced:
        processor.on_end(profile)
    assert wait_for(lambda: spool.pending() == 5, 10)
    calls_while_down = len(exporter.calls)
    time.sleep(0.3)
    assert len(exporter.calls) <= calls_while_down + 1  # backing off, not hammering
    exporter.down = False
    assert wait_for(lambda: processor.resent_profiles == 5, 30)
    got = sorted(p.data for p in exporter.get_finished_profiles())
    assert got == sorted(p.data for p in produced)
    assert spool.pending() == 0 and processor.resent_profiles == 5
    processor.shutdown()
