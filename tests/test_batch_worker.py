"""The batch processor's worker: it survives a failing round, and is started again if it dies.

The failures are injected at the boundaries the worker does not own: an
exporter whose client library ends the thread with ``SystemExit``, a spool
whose disk fails on read. Every profile still ends in one counter.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path
from typing import Any, List, Optional, Sequence

import pytest
from support import make_profile, wait_for

from otel_profiling import Profile
from otel_profiling.exporters import FsspecProfileExporter
from otel_profiling.processors import BatchProfileProcessor
from otel_profiling.processors.spool import Spool


class ExitingExporter(FsspecProfileExporter):
    """Writes to a real directory, but its first export ends the thread with ``SystemExit``."""

    exits = 1

    def export_unsent(
        self,
        profiles: Sequence[Profile],
        timeout_millis: Optional[float] = None,
        *,
        resend: bool = False,
    ) -> List[Profile]:
        if self.exits:
            self.exits -= 1
            raise SystemExit(3)
        return super().export_unsent(profiles, timeout_millis, resend=resend)


class FailingDiskSpool(Spool):
    """A spool whose first read of the directory fails with EIO."""

    failures = 1

    def drain(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EIO, "Input/output error", str(self.directory))
        return super().drain(*args, **kwargs)


def workers() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "otel-profiling-batch-processor"]


def written(directory: Path) -> set:
    return {(directory / name).read_bytes() for name in os.listdir(directory)}


def test_a_dead_worker_is_started_again_and_its_batch_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = set(workers())
    processor = BatchProfileProcessor(
        ExitingExporter(f"file://{tmp_path}/out"),
        schedule_delay_millis=10,
        spool=Spool(tmp_path / "spool"),
    )
    with caplog.at_level(logging.WARNING, logger="otel_profiling"):
        first = make_profile(1)
        processor.on_end(first)
        assert wait_for(lambda: processor.spooled_profiles == 1, 30)  # its batch is kept
        assert wait_for(lambda: not (set(workers()) - before), 30)  # and the worker is gone
        assert processor.worker_restarts == 0
        second = make_profile(2)
        processor.on_end(second)  # starts a new worker
        assert processor.force_flush(30_000)
        assert wait_for(lambda: processor.resent_profiles == 1, 30)
    try:
        assert processor.worker_restarts == 1
        assert (processor.exported_profiles, processor.spooled_profiles) == (1, 1)
        assert processor.failed_profiles == processor.dropped_profiles == 0
        assert written(tmp_path / "out") == {first.data, second.data}
        text = caplog.text
        assert "stopped (SystemExit: 3)" in text and "restarted" in text
    finally:
        processor.shutdown()


def test_a_failing_round_is_logged_counted_and_the_worker_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    left_behind = make_profile(1)
    Spool(tmp_path / "spool").put(left_behind)  # by an earlier process
    with caplog.at_level(logging.ERROR, logger="otel_profiling"):
        processor = BatchProfileProcessor(
            FsspecProfileExporter(f"file://{tmp_path}/out"),
            schedule_delay_millis=10,
            spool=FailingDiskSpool(tmp_path / "spool"),
        )
        assert wait_for(lambda: processor.worker_errors == 1, 30)
    try:
        assert "Input/output error" in caplog.text and "it goes on" in caplog.text
        fresh = make_profile(2)
        processor.on_end(fresh)
        assert processor.force_flush(30_000)
        assert wait_for(lambda: processor.resent_profiles == 1, 30)  # read again after backoff
        assert processor.exported_profiles == 1 and processor.worker_restarts == 0
        assert written(tmp_path / "out") == {left_behind.data, fresh.data}
    finally:
        processor.shutdown()


def test_on_end_refuses_what_is_not_a_profile() -> None:
    processor = BatchProfileProcessor(FsspecProfileExporter("memory://x"), spool=False)
    with pytest.raises(TypeError, match="takes a Profile"):
        processor.on_end(b"profile bytes")  # type: ignore[arg-type]
    processor.shutdown()


def test_writer_pool_never_grows_past_its_size() -> None:
    """Blocking writes that hang keep their threads; later jobs wait instead of adding more."""
    from otel_profiling.exporters.pool import WriterPool

    pool = WriterPool(3, "test-writer")
    release = threading.Event()
    done: List[int] = []
    for i in range(50):
        pool.submit(lambda i=i: (release.wait(30), done.append(i)))  # type: ignore[misc]
    assert pool.threads == 3
    assert len([t for t in threading.enumerate() if t.name == "otel-profiling-test-writer"]) == 3
    release.set()
    assert wait_for(lambda: len(done) == 50, 30)
    pool.submit(lambda: done.append(50))  # a free thread takes it: still three
    assert wait_for(lambda: len(done) == 51, 30) and pool.threads == 3
    pool.close()
    assert wait_for(lambda: pool.threads == 0, 30)


def export_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "otel-profiling-export"]


def test_a_shut_down_exporter_keeps_no_writer_thread(tmp_path: Path) -> None:
    """Ground truth: the process's threads by name. A process that makes and shuts down
    exporters one after another (a reconfigured application, a test suite) must not keep
    each one's writer threads for ever; a write in progress still ends first."""
    before = set(export_threads())  # other exporters' in this process, left alone
    exporter = FsspecProfileExporter(f"file://{tmp_path}/out")
    profiles = [make_profile(i, size=30_000) for i in range(12)]
    assert exporter.export_unsent(profiles) == []  # several files: written by the pool
    assert set(export_threads()) - before, "the writes ran on the pool's threads"
    exporter.shutdown()
    # each thread takes its end mark as soon as it is free (at once here: nothing hangs)
    assert wait_for(lambda: set(export_threads()) <= before, 10), export_threads()
    assert exporter.export_unsent(profiles[:1]) == profiles[:1]  # shut down: nothing written


class GatedExporter(FsspecProfileExporter):
    """Writes to a real directory once the test opens the gate; records each batch's size."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = threading.Event()
        self.batches: List[int] = []

    def export_unsent(
        self,
        profiles: Sequence[Profile],
        timeout_millis: Optional[float] = None,
        *,
        resend: bool = False,
    ) -> List[Profile]:
        self.batches.append(len(profiles))
        self.gate.wait(30)
        return super().export_unsent(profiles, timeout_millis, resend=resend)


def test_profiles_being_resent_share_the_byte_bound(tmp_path: Path) -> None:
    """Re-sent profiles are read into memory: they take at most half of ``max_queue_bytes``,
    and the queue makes room for them, so the processor never holds more than the bound."""
    spool = Spool(tmp_path / "spool")
    for i in range(6):
        spool.put(make_profile(i, size=2_000))  # about 2.4 kB each on disk, with its header
    exporter = GatedExporter(f"file://{tmp_path}/out")
    processor = BatchProfileProcessor(
        exporter,
        schedule_delay_millis=10,
        max_export_batch_size=8,
        max_queue_size=32,
        max_queue_bytes=12_000,
        spool=Spool(tmp_path / "spool"),
    )
    try:
        assert wait_for(lambda: exporter.batches, 30)  # the first re-send is held at the gate
        assert exporter.batches == [2]  # 6 000 bytes of budget: two entries, not eight
        assert processor.queued_bytes == 6_000  # ...reserved while they are held
        for i in range(10, 14):
            processor.on_end(make_profile(i, size=2_000))
        assert processor.queued_bytes <= 12_000
        assert (processor.queued_profiles, processor.dropped_profiles) == (3, 1)
        exporter.gate.set()
        assert processor.force_flush(30_000)
        assert wait_for(lambda: processor.resent_profiles == 6, 30)
        assert processor.queued_bytes == 0 and processor.exported_profiles == 3
    finally:
        exporter.gate.set()
        processor.shutdown()
