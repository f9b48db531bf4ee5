"""BatchProfileProcessor: batching, flush, shutdown bounds, drops, failing exporters."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
from helpers import (
    HangingExporter,
    HangingShutdownExporter,
    InterruptedExporter,
    RecordingExporter,
)
from support import make_profile, settled, wait_for

from otel_profiling import _exit
from otel_profiling.exporters.base import ProfileExporter, ProfileExportResult
from otel_profiling.processors import BatchProfileProcessor, SimpleProfileProcessor
from otel_profiling.processors.batch_queue import ProfileQueue
from otel_profiling.processors.batch_settings import KEEP_GRACE_MILLIS
from otel_profiling.processors.spool import Spool
from otel_profiling.profile import Profile


def test_batches_by_size_before_the_delay() -> None:
    exporter = RecordingExporter()
    processor = BatchProfileProcessor(
        exporter, schedule_delay_millis=60_000, max_export_batch_size=3, max_queue_size=10
    )
    for _ in range(7):
        processor.on_end(make_profile())
    # two full batches go out long before the 60 s delay; the 7th waits
    assert wait_for(lambda: len(exporter.exported) == 6, timeout=10)
    assert [len(b) for b in exporter.batches] == [3, 3]
    processor.shutdown()
    assert [len(b) for b in exporter.batches] == [3, 3, 1]


def test_exports_after_the_schedule_delay() -> None:
    exporter = RecordingExporter()
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=100, max_export_batch_size=10)
    processor.on_end(make_profile())
    assert wait_for(lambda: len(exporter.exported) == 1, timeout=5)
    processor.shutdown()


def test_force_flush_exports_everything_queued() -> None:
    exporter = RecordingExporter()
    processor = BatchProfileProcessor(
        exporter, schedule_delay_millis=60_000, max_export_batch_size=50
    )
    profiles = [make_profile() for _ in range(5)]
    for profile in profiles:
        processor.on_end(profile)
    assert exporter.exported == []
    assert processor.force_flush(5_000) is True
    assert exporter.exported == profiles
    processor.shutdown()


def test_shutdown_flushes_and_shuts_the_exporter_down() -> None:
    exporter = RecordingExporter()
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=60_000)
    processor.on_end(make_profile())
    processor.shutdown()
    assert len(exporter.exported) == 1
    assert exporter.shut_down
    processor.on_end(make_profile())  # after shutdown: counted as dropped, not exported
    assert processor.dropped_profiles == 1


def test_full_queue_drops_oldest_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    exporter = HangingExporter()
    processor = BatchProfileProcessor(
        exporter, schedule_delay_millis=10, max_queue_size=2, max_export_batch_size=1
    )
    processor.on_end(make_profile(b"first"))
    assert exporter.entered.wait(5)  # the worker is stuck exporting "first"
    kept = [make_profile(f"p{i}".encode()) for i in range(5)]
    with caplog.at_level(logging.WARNING):
        for profile in kept:
            processor.on_end(profile)
        assert processor.dropped_profiles == 3
        assert processor.queued_profiles == 2
        exporter.release.set()
        assert processor.force_flush(5_000)
    assert any("Dropped 3 profile(s)" in r.getMessage() for r in caplog.records)
    processor.shutdown()


def test_queue_is_bounded_by_bytes() -> None:
    exporter = HangingExporter()
    processor = BatchProfileProcessor(
        exporter, schedule_delay_millis=10, max_queue_bytes=1000, max_export_batch_size=1
    )
    processor.on_end(make_profile(b"z"))
    assert exporter.entered.wait(5)
    for _ in range(5):
        processor.on_end(make_profile(b"a" * 400))
    assert processor.queued_bytes <= 1000
    assert processor.queued_profiles == 2
    assert processor.dropped_profiles == 3
    # a profile larger than the bound still gets in when it is alone
    processor.on_end(make_profile(b"b" * 5000))
    assert processor.queued_profiles == 1
    exporter.release.set()
    processor.shutdown()


def test_an_exporter_that_raises_does_not_kill_the_worker() -> None:
    exporter = RecordingExporter(raise_times=1, fail_times=1)
    processor = BatchProfileProcessor(
        exporter, schedule_delay_millis=10, max_export_batch_size=1, spool=False
    )  # without a spool, failed profiles are counted as failed (with one, they are re-sent)
    for _ in range(3):
        processor.on_end(make_profile())
    assert processor.force_flush(5_000)
    assert len(exporter.exported) == 1
    assert processor.failed_profiles == 2
    processor.on_end(make_profile())
    assert processor.force_flush(5_000)
    assert len(exporter.exported) == 2
    processor.shutdown()


def test_shutdown_returns_within_its_bound_when_the_exporter_hangs() -> None:
    exporter = HangingExporter()
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=10)
    processor.on_end(make_profile())
    assert exporter.entered.wait(5)
    started = time.monotonic()
    processor.shutdown(timeout_millis=500)
    # 0.5 s bound, generous for a busy machine: bounded is what is checked (the hang is 60 s)
    assert time.monotonic() - started < 5.0
    assert processor.force_flush(100) is False
    exporter.release.set()


def test_force_flush_honours_its_timeout() -> None:
    exporter = HangingExporter()
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=10, max_export_batch_size=1)
    processor.on_end(make_profile())
    processor.on_end(make_profile())
    assert exporter.entered.wait(5)
    started = time.monotonic()
    assert processor.force_flush(300) is False
    # 0.3 s bound, generous for a busy machine: bounded is what is checked (the hang is 60 s)
    assert time.monotonic() - started < 5.0
    exporter.release.set()
    processor.shutdown()


def test_env_configures_the_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BPP_SCHEDULE_DELAY", "250")
    monkeypatch.setenv("OTEL_BPP_MAX_QUEUE_SIZE", "40")
    monkeypatch.setenv("OTEL_BPP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_BPP_EXPORT_TIMEOUT", "1234")
    monkeypatch.setenv("OTEL_BPP_MAX_QUEUE_BYTES", "99999")
    processor = BatchProfileProcessor(RecordingExporter())
    assert (
        processor.schedule_delay_millis,
        processor.max_queue_size,
        processor.max_export_batch_size,
        processor.export_timeout_millis,
        processor.max_queue_bytes,
    ) == (250, 40, 4, 1234, 99999)
    # explicit arguments win over the environment
    assert BatchProfileProcessor(RecordingExporter(), max_queue_size=7).max_queue_size == 7


def test_settings_counters_and_spool_are_read_only() -> None:
    processor = BatchProfileProcessor(RecordingExporter(), max_queue_size=7, spool=False)
    names = [
        "schedule_delay_millis",
        "max_queue_size",
        "max_export_batch_size",
        "export_timeout_millis",
        "max_queue_bytes",
        "exported_profiles",
        "spooled_profiles",
        "failed_profiles",
        "dropped_profiles",
        "error_profiles",
        "resent_profiles",
        "worker_errors",
        "worker_restarts",
        "queued_profiles",
        "queued_bytes",
        "spool",
        "exporter",
    ]
    for name in names:
        with pytest.raises(AttributeError):
            setattr(processor, name, 1)
    assert processor.max_queue_size == 7 and processor.spool is None
    processor.shutdown()


def test_invalid_env_value_warns_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_BPP_SCHEDULE_DELAY", "abc")
    with caplog.at_level(logging.WARNING):
        processor = BatchProfileProcessor(RecordingExporter())
    assert processor.schedule_delay_millis == 1000
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "OTEL_BPP_SCHEDULE_DELAY" in m]) == 1


def test_batch_larger_than_queue_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_export_batch_size"):
        BatchProfileProcessor(RecordingExporter(), max_queue_size=2, max_export_batch_size=5)


def test_simple_processor_exports_on_end() -> None:
    exporter = RecordingExporter()
    processor = SimpleProfileProcessor(exporter)
    profile = make_profile()
    processor.on_end(profile)
    assert exporter.exported == [profile]
    processor.shutdown()
    assert exporter.shut_down


def test_shutdown_is_bounded_when_the_exporter_hangs_on_the_last_batch() -> None:
    # the worker is idle (a long delay), so the queue is still full at shutdown:
    # exporting it must not hold shutdown past its bound either
    exporter = HangingExporter()
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=60_000)
    profiles = [make_profile() for _ in range(3)]
    for profile in profiles:
        processor.on_end(profile)
    started = time.monotonic()
    processor.shutdown(timeout_millis=500)
    elapsed = time.monotonic() - started
    exporter.release.set()
    assert elapsed < 5.0  # 0.5 s bound, generous for a busy machine (the hang is 60 s)
    assert exporter.entered.is_set()  # it was tried before the deadline
    # each profile in exactly one counter: the hung export is kept in the spool
    assert processor.spooled_profiles == 3
    assert processor.exported_profiles + processor.failed_profiles == 0


def test_a_processor_shut_down_before_a_fork_stays_shut_down_in_the_child() -> None:
    exporter = RecordingExporter()
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=10, spool=False)
    processor.shutdown()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its counters through the pipe
        code = 1
        try:
            processor.on_end(make_profile())
            flushed = processor.force_flush(1_000)
            report = (
                f"{processor.dropped_profiles} {processor.queued_profiles} "
                f"{len(exporter.exported)} {flushed}"
            )
            os.write(write_end, report.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    # the child's profile is dropped (as after shutdown), never queued nor exported
    assert report.split() == ["1", "0", "0", "False"]


class TimeoutRecordingExporter(RecordingExporter):
    """Records the time each export is given (an exporter that honours it gives up then)."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: List[Optional[float]] = []

    def export_unsent(
        self,
        profiles: Sequence[Profile],
        timeout_millis: Optional[float] = None,
        *,
        resend: bool = False,
    ) -> List[Profile]:
        self.timeouts.append(timeout_millis)
        return super().export_unsent(profiles, timeout_millis, resend=resend)


def test_the_last_batches_get_no_more_time_than_shutdown_has_left() -> None:
    exporter = TimeoutRecordingExporter()
    processor = BatchProfileProcessor(
        exporter, schedule_delay_millis=60_000, export_timeout_millis=30_000, spool=False
    )
    processor.on_end(make_profile())
    processor.shutdown(timeout_millis=2_000)
    assert processor.exported_profiles == 1
    (timeout,) = exporter.timeouts
    assert timeout is not None and 0 < timeout <= 2_000  # not the 30 s export timeout


def test_drops_within_the_last_minute_are_reported_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = HangingExporter()
    processor = BatchProfileProcessor(
        exporter, schedule_delay_millis=10, max_queue_size=1, max_export_batch_size=1
    )
    processor.on_end(make_profile(b"first"))
    assert exporter.entered.wait(5)  # the worker is stuck exporting "first"
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # each pushes out the one before: 2 dropped
            processor.on_end(make_profile())
        exporter.release.set()
        assert processor.force_flush(5_000)  # the worker warns of the 2
        exporter.release.clear()
        exporter.entered.clear()
        processor.on_end(make_profile(b"second"))
        assert exporter.entered.wait(5)  # stuck again
        for _ in range(4):  # 3 more dropped, within the minute the warning waits
            processor.on_end(make_profile())
        exporter.release.set()
        processor.shutdown(timeout_millis=5_000)
    assert processor.dropped_profiles == 5
    drops = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Dropped")]
    assert [m.split(" profile(s)")[0] for m in drops] == ["Dropped 2", "Dropped 3"]


HOOKLESS_FORK_APP = """
import ctypes, os, sys, time
sys.path.insert(0, sys.argv[1])
from helpers import RecordingExporter
from support import make_profile
from otel_profiling.processors import BatchProfileProcessor

exporter = RecordingExporter()
processor = BatchProfileProcessor(exporter, schedule_delay_millis=60_000, spool=False)
processor.on_end(make_profile(b"the parent's"))
time.sleep(1.0)  # the worker waits on its condition: no thread is mid-way when forked
pid = ctypes.PyDLL(None).fork()  # libc's fork: Python's at-fork hooks do not run
if pid == 0:
    code = 1
    try:
        started = time.monotonic()
        processor.shutdown(timeout_millis=5_000)
        elapsed = time.monotonic() - started
        counted = processor.failed_profiles + processor.dropped_profiles
        print("child", len(exporter.exported), counted, round(elapsed, 3), flush=True)
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
processor.shutdown()
print("parent", [p.data.decode() for p in exporter.exported], os.WEXITSTATUS(status), flush=True)
"""


def test_a_child_forked_without_the_at_fork_hooks_leaves_the_parents_queue_alone() -> None:
    # Some servers (uWSGI by default) fork from C without running Python's at-fork
    # hooks; libc's fork() through ctypes does the same (PyDLL keeps the GIL). In a
    # process of its own, so that no other thread is caught mid-way by the fork.
    result = subprocess.run(
        [sys.executable, "-c", HOOKLESS_FORK_APP, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    child, parent = result.stdout.splitlines()
    _, exported, counted, elapsed = child.split()
    assert (exported, counted) == ("0", "0")  # the parent's profile is the parent's to export
    assert float(elapsed) < 4.0  # no wait for the parent's worker, which the child lacks
    assert parent == 'parent ["the parent\'s"] 0'


class _NamelessSpool(Spool):
    """A custom spool that keeps profiles in memory but cannot say where: its
    ``directory`` raises (the processor names it in its warnings)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.kept: List[Profile] = []

    @property  # type: ignore[override]
    def directory(self) -> Path:
        raise RuntimeError("this spool has no directory")

    @directory.setter
    def directory(self, value: Path) -> None:
        pass

    def put(self, profile: Profile) -> Optional[Path]:
        self.kept.append(profile)
        return Path("memory") / str(len(self.kept))

    def pending(self) -> int:
        return 0


def test_a_spool_that_raises_after_the_count_still_settles_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The exporter fails, the spool keeps all four profiles, then naming its
    # directory in the warning raises: the batch must still be released (its
    # bytes no longer held), the error said once, and the worker not disturbed.
    spool = _NamelessSpool(tmp_path)
    processor = BatchProfileProcessor(
        RecordingExporter(fail_times=100), schedule_delay_millis=60_000, spool=spool
    )
    with caplog.at_level(logging.WARNING):
        for _ in range(4):
            processor.on_end(make_profile())
        assert processor.force_flush(10_000) is True
    assert processor.spooled_profiles == 4 and len(spool.kept) == 4
    assert processor.failed_profiles == processor.exported_profiles == 0
    assert processor.queued_bytes == 0  # nothing held once settled
    assert processor.worker_errors == 0
    fixes = [r for r in caplog.records if "a custom Spool must not raise" in r.getMessage()]
    assert len(fixes) == 1
    processor.shutdown(timeout_millis=5_000)


class _Stop(SystemExit):
    """Not an ``Exception``: nothing on the way catches it by accident."""


class _SpoolStoppingOnSecond(Spool):
    """A custom spool whose second write raises something unexpected."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes = 0

    def put(self, profile: Profile) -> Optional[Path]:
        self.writes += 1
        if self.writes == 2:
            raise _Stop("the spool gave up")
        return super().put(profile)


def test_each_profile_is_counted_when_the_spool_raises_mid_batch(tmp_path: Path) -> None:
    spool = _SpoolStoppingOnSecond(tmp_path / "spool")
    processor = BatchProfileProcessor(
        RecordingExporter(fail_times=100),
        schedule_delay_millis=60_000,
        max_export_batch_size=10,
        spool=spool,
    )
    for _ in range(4):
        processor.on_end(make_profile())
    assert processor.force_flush(10_000) is True  # every profile reached a counter
    # the first was kept; the second raised and the two after it never got to the spool
    assert processor.spooled_profiles == 1
    assert processor.failed_profiles == 3
    assert processor.queued_bytes == 0
    processor.on_end(make_profile())  # the worker stopped on the exit; a new one starts
    processor.shutdown(timeout_millis=10_000)
    assert processor.worker_restarts == 1
    assert processor.spooled_profiles + processor.failed_profiles == 5


class _TimedExporter(ProfileExporter):
    """Records when each profile was exported; holds its first export until ``release``."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.exported_at: Dict[bytes, float] = {}

    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        self.entered.set()
        self.release.wait(60)
        for profile in profiles:
            self.exported_at[profile.data] = time.monotonic()
        return ProfileExportResult.SUCCESS


def test_a_profile_left_after_a_partial_batch_waits_its_own_delay() -> None:
    # A and then, 3 s later, B and C are queued while the worker is busy; it
    # then takes a full batch (A, B) and leaves C, which came 3 s after A. C
    # must wait the 5 s delay from its own arrival, not from A's (which would
    # send it about 2 s after it came). Waits only make it later, never earlier.
    exporter = _TimedExporter()
    processor = BatchProfileProcessor(
        exporter, schedule_delay_millis=5_000, max_export_batch_size=2, spool=False
    )
    processor.on_end(make_profile(b"first"))
    processor.on_end(make_profile(b"second"))  # a full batch: the worker takes it and waits
    assert exporter.entered.wait(10)
    processor.on_end(make_profile(b"A"))
    time.sleep(3.0)
    processor.on_end(make_profile(b"B"))
    c_queued = time.monotonic()
    processor.on_end(make_profile(b"C"))
    exporter.release.set()
    assert wait_for(lambda: b"C" in exporter.exported_at, timeout=30)
    assert exporter.exported_at[b"C"] - c_queued >= 4.0  # its 5 s delay, 1 s of slack
    assert exporter.exported_at[b"B"] < exporter.exported_at[b"C"]
    processor.shutdown(timeout_millis=5_000)
    assert processor.exported_profiles == 5


def test_the_queue_ages_by_the_oldest_profile_it_still_holds() -> None:
    queue = ProfileQueue(max_size=2, max_bytes=1 << 20)
    queue.put(make_profile(b"old"))
    time.sleep(0.05)  # the next profile comes strictly later
    second_came = time.monotonic()
    queue.put(make_profile(b"second"))
    queue.put(make_profile(b"third"))  # full: "old" is dropped
    assert queue.dropped == 1
    oldest = queue.oldest_at
    assert oldest is not None and oldest >= second_came
    queue.take(1)  # "second" leaves; "third" came after it
    oldest = queue.oldest_at
    assert oldest is not None and oldest >= second_came
    queue.take(1)
    assert queue.oldest_at is None


HOOKLESS_FORK_THREADS_APP = """
import ctypes, os, sys, threading, time
sys.path.insert(0, sys.argv[1])
from helpers import RecordingExporter
from support import make_profile
from otel_profiling.processors import BatchProfileProcessor

THREADS, CHILDREN = 16, 10
exporter = RecordingExporter()
processor = BatchProfileProcessor(exporter, schedule_delay_millis=60_000, spool=False)
processor.on_end(make_profile(b"the parent's"))
time.sleep(1.0)  # the worker waits on its condition: no thread is mid-way when forked
for _ in range(CHILDREN):
    pid = ctypes.PyDLL(None).fork()  # libc's fork: Python's at-fork hooks do not run
    if pid == 0:
        code = 1
        try:
            sys.setswitchinterval(1e-6)  # threads interleave as much as they can
            go = threading.Event()
            ready = []
            profiles = [make_profile(b"child %d" % i) for i in range(THREADS)]

            def end(i):
                ready.append(i)
                while not go.is_set():  # spin: every thread is running when it goes
                    pass
                processor.on_end(profiles[i])

            threads = [threading.Thread(target=end, args=(i,)) for i in range(THREADS)]
            for thread in threads:
                thread.start()
            while len(ready) < THREADS:
                time.sleep(0.001)
            go.set()
            for thread in threads:
                thread.join()
            processor.shutdown(timeout_millis=10_000)
            counted = (
                processor.exported_profiles + processor.failed_profiles
                + processor.dropped_profiles + processor.spooled_profiles
            )
            print("child", len(exporter.exported), counted, flush=True)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
processor.shutdown()
print("parent", len(exporter.exported), flush=True)
"""


def test_threads_of_a_hookless_child_renew_the_processor_once() -> None:
    # Sixteen threads of a child forked without the at-fork hooks end a profile
    # at the same time: the processor is renewed once, and none of the sixteen
    # is thrown away with a second renewal. Ten children, so a race shows.
    result = subprocess.run(
        [sys.executable, "-c", HOOKLESS_FORK_THREADS_APP, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    *children, parent = result.stdout.splitlines()
    assert children == ["child 16 16"] * 10
    assert parent == "parent 1"


def abandoned_shutdown_warnings(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "shutdown() did not return" in r.getMessage()
    ]


def test_shutdown_is_bounded_when_the_exporters_own_shutdown_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = HangingShutdownExporter()
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=60_000, spool=False)
    processor.on_end(make_profile())
    try:
        with caplog.at_level(logging.WARNING, logger="otel_profiling"):
            started = time.monotonic()
            processor.shutdown(timeout_millis=500)
            elapsed = time.monotonic() - started
        # 0.5 s bound, generous for a busy machine (the exporter's shutdown hangs 60 s)
        assert elapsed < 5.0
        assert exporter.shutting_down.is_set()  # it was called before the deadline
        assert processor.exported_profiles == 1  # the queue was exported first
        assert abandoned_shutdown_warnings(caplog) == [
            "HangingShutdownExporter.shutdown() did not return within 0.5 s; "
            "left running on a daemon thread."
        ]
        # left to a daemon thread: it holds up neither this thread nor the interpreter's exit
        left = [t for t in threading.enumerate() if t.name == "otel-profiling-batch-processor"]
        assert left and all(t.daemon for t in left)
    finally:
        exporter.release.set()


def test_simple_processor_shutdown_is_bounded_when_the_exporters_shutdown_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = HangingShutdownExporter()
    processor = SimpleProfileProcessor(exporter)
    processor.on_end(make_profile())
    try:
        with caplog.at_level(logging.WARNING, logger="otel_profiling"):
            started = time.monotonic()
            processor.shutdown(timeout_millis=500)
            elapsed = time.monotonic() - started
        assert elapsed < 5.0  # 0.5 s bound, generous for a busy machine (the hang is 60 s)
        assert exporter.shutting_down.is_set()
        assert len(abandoned_shutdown_warnings(caplog)) == 1
        assert "HangingShutdownExporter" in abandoned_shutdown_warnings(caplog)[0]
    finally:
        exporter.release.set()


def test_an_exporter_shut_down_in_time_is_waited_for_and_not_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = HangingShutdownExporter()
    exporter.release.set()  # returns at once
    batch = BatchProfileProcessor(exporter, schedule_delay_millis=60_000, spool=False)
    simple_exporter = RecordingExporter()
    simple = SimpleProfileProcessor(simple_exporter)
    with caplog.at_level(logging.WARNING, logger="otel_profiling"):
        batch.shutdown(timeout_millis=5_000)
        simple.shutdown(timeout_millis=5_000)
    assert exporter.shut_down and simple_exporter.shut_down  # done when shutdown returns
    assert abandoned_shutdown_warnings(caplog) == []


def test_ctrl_c_in_the_last_export_at_shutdown_leaves_every_profile_counted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # at exit no thread may start: the calling thread exports, and Ctrl-C lands there
    monkeypatch.setattr(_exit, "_exiting", True)
    processor = BatchProfileProcessor(
        InterruptedExporter(),
        schedule_delay_millis=60_000,
        max_export_batch_size=2,
        spool=Spool(tmp_path / "spool"),
    )
    for i in range(5):
        processor.on_end(make_profile(i))
    with pytest.raises(KeyboardInterrupt):  # not swallowed
        processor.shutdown(timeout_millis=5_000)
    # the interrupted batch (2) and the 3 still queued are kept for the next process
    assert processor.spooled_profiles == 5 and settled(processor) == 5
    assert processor.queued_profiles == 0 and processor.queued_bytes == 0
    assert len(Spool(tmp_path / "spool").profiles()) == 5
    # and the processor is shut down
    processor.on_end(make_profile())
    assert processor.dropped_profiles == 1 and processor.force_flush(100) is False


def test_ctrl_c_in_an_export_on_the_flushing_thread_leaves_every_profile_counted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_exit, "_exiting", True)
    exporter = InterruptedExporter()
    processor = BatchProfileProcessor(
        exporter,
        schedule_delay_millis=60_000,
        max_export_batch_size=2,
        spool=Spool(tmp_path / "spool"),
    )
    for i in range(5):
        processor.on_end(make_profile(i))
    with pytest.raises(KeyboardInterrupt):
        processor.force_flush(5_000)
    # the interrupted batch is kept; the rest waits in the queue, counted nowhere yet
    assert processor.spooled_profiles == 2 and settled(processor) == 2
    assert processor.queued_profiles == 3
    processor.shutdown(timeout_millis=5_000)
    assert processor.exported_profiles == 3 and settled(processor) == 5
    assert len(exporter.exported) == 3


def test_ctrl_c_in_a_simple_processors_export_counts_the_profile_failed() -> None:
    exporter = InterruptedExporter()
    processor = SimpleProfileProcessor(exporter)
    with pytest.raises(KeyboardInterrupt):
        processor.on_end(make_profile())
    processor.on_end(make_profile())
    assert (processor.failed_profiles, processor.exported_profiles) == (1, 1)
    processor.shutdown()


def test_ctrl_c_while_shutdown_waits_for_the_worker_leaves_every_profile_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = HangingExporter()
    processor = BatchProfileProcessor(
        exporter,
        schedule_delay_millis=10,
        max_export_batch_size=1,
        spool=Spool(tmp_path / "spool"),
    )
    for i in range(3):
        processor.on_end(make_profile(i))
    assert exporter.entered.wait(5)  # the worker holds one, two wait in the queue
    # a real SIGINT, as Ctrl-C sends: the main thread gets it while it waits for the worker
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    try:
        with caplog.at_level(logging.WARNING, logger="otel_profiling"):
            timer.start()
            with pytest.raises(KeyboardInterrupt):
                processor.shutdown(timeout_millis=30_000)
        assert processor.spooled_profiles == 3 and settled(processor) == 3
        assert processor.queued_profiles == 0
        assert "Shutdown was interrupted while HangingExporter was exporting 1" in caplog.text
    finally:
        timer.cancel()
        exporter.release.set()


class _SlowSpool(Spool):
    """A spool on a slow disk: each write takes ``seconds``; ``writing`` is set when one begins."""

    def __init__(self, path: Path, seconds: float) -> None:
        super().__init__(path)
        self.seconds = seconds
        self.writing = threading.Event()

    def put(self, profile: Profile) -> Optional[Path]:
        self.writing.set()
        time.sleep(self.seconds)
        return super().put(profile)


@pytest.mark.parametrize("write_s", [0.5, KEEP_GRACE_MILLIS / 1000 + 1.0])
def test_shutdown_waits_for_the_worker_to_finish_spooling_what_it_could_not_send(
    tmp_path: Path, write_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    # The worker's export fails and it begins writing the batch to the spool
    # before shutdown is called with a 50 ms timeout. Shutdown must not return
    # in the middle of that write (a process exiting right after would lose the
    # profile, uncounted): it waits up to KEEP_GRACE_MILLIS past its deadline,
    # and says so when the write takes longer still.
    spool = _SlowSpool(tmp_path / "spool", write_s)
    processor = BatchProfileProcessor(
        RecordingExporter(fail_times=100), schedule_delay_millis=60_000, spool=spool
    )
    processor.on_end(make_profile())
    processor.force_flush(0)  # the worker exports now, fails, and starts spooling
    assert spool.writing.wait(10)
    grace = KEEP_GRACE_MILLIS / 1000
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="otel_profiling.processors.batch"):
        processor.shutdown(timeout_millis=50)
    elapsed = time.monotonic() - began
    still_writing = [r for r in caplog.records if "still writing 1 batch" in r.getMessage()]
    if write_s < grace:
        assert processor.spooled_profiles == 1 and len(spool.profiles()) == 1
        assert not still_writing
    else:  # bounded: it waited the grace, then said what may be lost
        assert grace <= elapsed < grace + 1.5, elapsed
        assert settled(processor) == 0 and len(still_writing) == 1
        assert wait_for(lambda: processor.spooled_profiles == 1, timeout=10)
