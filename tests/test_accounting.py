"""Every profile ends in exactly one counter, on every path, and no object is stored twice.

N profiles go through a real ``BatchProfileProcessor`` and S3 exporter, with a
real proxy in front of moto's server switched between working, 503 SlowDown,
403 AccessDenied and dripping answers, a spool that cannot be written, a full
queue, profiler failures and a shutdown that times out. Afterwards the
counters sum to N, the log never says "lost" of a profile it kept, and once a
new process has re-sent the spool the bucket holds each exported or spooled
profile exactly once, and nothing else.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import List

import pytest
from faults import FaultProxy
from reliability_helpers import bucket_objects, sha
from support import make_profile, settled, wait_for

from otel_profiling import Profile, ProfileKind
from otel_profiling.exporters import InMemoryProfileExporter, S3Exporter
from otel_profiling.formats import default_format
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor
from otel_profiling.processors.spool import Spool

WAIT_S = 60.0  # generous: backoff between re-sends grows to several seconds
TIMEOUT_MS = 5_000  # of one export: the first one also sets up the S3 client


def failed_profile(reason: str = "the encoder failed") -> Profile:
    profile = Profile(ProfileKind.CPU_PROFILE, default_format(ProfileKind.CPU_PROFILE))
    profile.end(error=RuntimeError(reason))
    return profile


def messages(caplog: pytest.LogCaptureFixture) -> List[str]:
    """What an operator sees: the library's warnings and errors."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("otel_profiling") and r.levelno >= logging.WARNING
    ]


def test_every_profile_ends_in_exactly_one_counter(
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
    boto3_client,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    proxy = FaultProxy(s3_endpoint, drip_interval=1.0).start()
    spool_dir = tmp_path / "spool"

    def exporter() -> S3Exporter:
        return S3Exporter(
            bucket=bucket, end_point=proxy.endpoint, use_ssl=False, timeout_millis=TIMEOUT_MS
        )

    processor = BatchProfileProcessor(
        exporter(),
        schedule_delay_millis=50,
        max_queue_size=4,
        max_export_batch_size=2,
        export_timeout_millis=TIMEOUT_MS,
        spool=Spool(spool_dir),
    )
    produced: List[Profile] = []
    numbers = itertools.count()

    def push(count: int) -> None:
        for _ in range(count):
            profile = make_profile(next(numbers), size=4_000)
            processor.on_end(profile)
            produced.append(profile)

    def recover() -> None:
        """The backend works again: wait until the worker has re-sent the whole spool."""
        proxy.set_mode("forward")
        spool = processor.spool
        assert wait_for(lambda: spool is not None and not spool.pending(), WAIT_S)
        assert wait_for(lambda: processor.resent_profiles == processor.spooled_profiles, WAIT_S)

    caplog.set_level(logging.DEBUG, logger="otel_profiling")
    try:
        # success
        push(4)
        assert processor.force_flush(30_000)
        assert processor.exported_profiles == 4

        # profilers that failed: counted and logged, never uploaded as empty objects
        for _ in range(2):
            failed = failed_profile()
            processor.on_end(failed)
            produced.append(failed)
        assert processor.force_flush(30_000)
        assert processor.error_profiles == 2

        # transient failure: kept in the spool, said once, never called lost
        caplog.clear()
        proxy.set_mode("slowdown")
        push(3)
        assert processor.force_flush(30_000)
        assert processor.spooled_profiles == 3
        said = messages(caplog)
        assert len([m for m in said if "kept in" in m]) == 1, said
        assert not [m for m in said if "lost" in m], said
        recover()

        # permanent failure: one error naming the fix, not retried; the profiles are kept
        caplog.clear()
        puts_before = proxy.count("PUT")
        proxy.set_mode("deny")
        push(2)
        assert processor.force_flush(30_000)
        assert processor.spooled_profiles == 5
        assert proxy.count("PUT") - puts_before == 2  # one try per profile
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "Fix:" in errors[0], errors

        # the spool cannot be written (its directory is now a file): lost, and said so
        caplog.clear()
        aside = tmp_path / "spool-aside"
        os.rename(spool_dir, aside)
        spool_dir.write_bytes(b"in the way")
        push(2)
        assert processor.force_flush(30_000)
        assert processor.failed_profiles == 2
        said = messages(caplog)
        assert len([m for m in said if "is lost" in m]) == 2, said
        assert not [m for m in said if "kept in" in m], said
        spool_dir.unlink()
        os.rename(aside, spool_dir)
        recover()

        # queue full while an upload drips: the oldest queued profiles are dropped
        proxy.set_mode("drip")
        push(2)  # a full batch: taken at once, its answers drip
        assert wait_for(lambda: proxy.dripping >= 1, 30)
        push(8)  # the queue holds 4
        assert processor.dropped_profiles == 4
        assert processor.force_flush(30_000)
        recover()
        assert wait_for(lambda: proxy.dripping == 0, 30)

        # shutdown times out with a batch in flight and more queued: each kept once
        proxy.set_mode("drip")
        push(2)
        assert wait_for(lambda: proxy.dripping >= 1, 30)
        push(3)
        spooled_before = processor.spooled_profiles
        processor.shutdown(timeout_millis=500)
        assert processor.spooled_profiles - spooled_before == 5
        counters = settled(processor)
        # the worker's own export of that batch ends at its deadline (its requests are
        # cancelled, so nothing drips any more)...
        assert wait_for(lambda: proxy.dripping == 0, 30)
        time.sleep(0.5)
        assert settled(processor) == counters  # ...and is not counted a second time
    finally:
        proxy.set_mode("forward")
        processor.shutdown(5_000)

    assert settled(processor) == len(produced)
    assert processor.queued_profiles == 0 and processor.queued_bytes == 0
    assert processor.worker_errors == 0

    # the next process of the service sends what was kept, once
    second = BatchProfileProcessor(exporter(), schedule_delay_millis=50, spool=Spool(spool_dir))
    try:
        assert wait_for(lambda: second.spool is not None and not second.spool.pending(), WAIT_S)
        assert wait_for(
            lambda: (
                processor.resent_profiles + second.resent_profiles == processor.spooled_profiles
            ),
            WAIT_S,
        )
    finally:
        second.shutdown(5_000)
        proxy.stop()
    objects = bucket_objects(boto3_client, bucket)
    payloads = {sha(p.data) for p in produced if p.data}
    stored = [sha(v) for v in objects.values()]
    assert len(stored) == len(set(stored)), sorted(objects)  # no profile stored twice
    assert set(stored) <= payloads
    assert len(stored) == processor.exported_profiles + processor.spooled_profiles
    missing = len(payloads) - len(stored)
    assert missing == processor.dropped_profiles + processor.failed_profiles


def test_simple_processor_counts_every_profile(tmp_path: Path) -> None:
    class Failing(InMemoryProfileExporter):
        def export(self, profiles):  # type: ignore[no-untyped-def]
            from otel_profiling.exporters import ProfileExportResult

            return ProfileExportResult.FAILURE

    working = SimpleProfileProcessor(InMemoryProfileExporter())
    failing = SimpleProfileProcessor(Failing())
    for processor in (working, failing):
        processor.on_end(make_profile(1))
        processor.on_end(failed_profile())
        processor.shutdown()
        processor.on_end(make_profile(2))
    for processor, outcome in ((working, "exported_profiles"), (failing, "failed_profiles")):
        assert getattr(processor, outcome) == 1
        assert processor.error_profiles == processor.dropped_profiles == 1
    assert working.failed_profiles == failing.exported_profiles == 0
