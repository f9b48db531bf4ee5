"""The local spool: atomic entries that keep the whole profile, capped, shared safely."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from reliability_helpers import make_profile

from otel_profiling.exporters import FsspecProfileExporter, InMemoryProfileExporter
from otel_profiling.processors import BatchProfileProcessor
from otel_profiling.spool import Spool, default_spool_root


def test_entry_keeps_the_whole_profile(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    profile = make_profile(1, attributes_list=("a", "b"), ratio=0.5)
    path = spool.put(profile)
    assert path is not None and path.exists()
    assert path.stat().st_mode & 0o077 == 0  # profiles may hold sensitive data: owner only
    assert not [n for n in os.listdir(tmp_path / "s") if n.startswith(".tmp")]
    (back,) = spool.profiles()
    assert back.key == profile.key
    assert back.data == profile.data
    assert back.start_time == profile.start_time and back.end_time == profile.end_time
    assert back.kind is profile.kind and back.format == profile.format
    assert back.content_type == profile.content_type and back.extension == profile.extension
    assert dict(back.attributes) == dict(profile.attributes)
    assert dict(back.resource.attributes) == dict(profile.resource.attributes)
    assert back.trigger == "test"
    assert spool.spooled_profiles == 1


def test_cap_evicts_oldest_first_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "s", max_bytes=10_000)
    profiles = [make_profile(i, size=3000) for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="otel_profiling.spool"):
        for profile in profiles:
            assert spool.put(profile) is not None
    kept = spool.profiles()
    assert len(kept) >= 2  # each entry is ~3.7 kB with its header
    assert [p.data for p in kept] == [p.data for p in profiles[-len(kept) :]]
    assert spool.evicted_profiles == 5 - len(kept)
    assert sum(f.stat().st_size for f in (tmp_path / "s").iterdir()) <= 10_000
    warnings = [r for r in caplog.records if "evicted" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: one line, not one per eviction


def test_damaged_entry_is_set_aside_not_sent(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    good = make_profile(1)
    bad_path = spool.put(make_profile(2))
    spool.put(good)
    assert bad_path is not None
    raw = bad_path.read_bytes()
    bad_path.write_bytes(raw[:-10] + b"0123456789")  # payload no longer matches its SHA-256
    sent = []
    count, pending = spool.drain(lambda ps: sent.extend(ps) or [])
    assert [p.data for p in sent] == [good.data]
    assert (count, pending) == (1, 0)
    assert bad_path.with_suffix(".damaged").exists()


def test_drain_keeps_what_was_not_sent(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    profiles = [make_profile(i) for i in range(4)]
    for profile in profiles:
        spool.put(profile)
    count, pending = spool.drain(lambda ps: [p for p in ps if p.attributes["test.index"] % 2])
    assert (count, pending) == (2, 2)
    assert sorted(p.attributes["test.index"] for p in spool.profiles()) == [1, 3]


def test_locked_entry_is_left_to_its_owner(tmp_path: Path) -> None:
    """Two processes draining one spool: an entry claimed by one is skipped by the other."""
    import fcntl

    spool = Spool(tmp_path / "s")
    path = spool.put(make_profile(1))
    assert path is not None
    with open(path, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        seen = []
        assert spool.drain(lambda ps: seen.extend(ps) or []) == (0, 1)
        assert seen == []
    assert spool.drain(lambda ps: []) == (1, 0)


def test_default_directory_is_per_user_and_per_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_PROFILING_SPOOL_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout/api")
    monkeypatch.setenv("OTEL_PROFILING_SPOOL_MAX_BYTES", "12345")
    spool = Spool.from_env()
    assert spool is not None
    assert default_spool_root() == tmp_path / "xdg" / "otel-profiling" / "spool"
    assert spool.directory == tmp_path / "xdg" / "otel-profiling" / "spool" / "checkout_api"
    assert spool.max_bytes == 12345
    monkeypatch.setenv("OTEL_PROFILING_SPOOL_DIR", "none")
    assert Spool.from_env() is None
    assert BatchProfileProcessor(InMemoryProfileExporter()).spool is None


def test_spool_dir_from_env_is_used(_spool_in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    processor = BatchProfileProcessor(InMemoryProfileExporter())
    assert processor.spool is not None
    assert processor.spool.directory.parent == _spool_in_tmp / "svc"
    processor.shutdown()


def test_each_destination_has_its_own_spool(_spool_in_tmp: Path, tmp_path: Path) -> None:
    """Two processors of one service never re-send each other's profiles."""
    a = BatchProfileProcessor(FsspecProfileExporter(f"file://{tmp_path}/a"))
    b = BatchProfileProcessor(FsspecProfileExporter(f"file://{tmp_path}/b"))
    c = BatchProfileProcessor(InMemoryProfileExporter())
    dirs = {p.spool.directory for p in (a, b, c) if p.spool is not None}
    assert len(dirs) == 3
    assert all(d.parent.parent == _spool_in_tmp for d in dirs)  # root / service / destination
    for processor in (a, b, c):
        processor.shutdown()


def test_bad_spool_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Spool(tmp_path, max_bytes=0)


def test_temporary_files_of_a_killed_writer_are_swept(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    spool.put(make_profile(1))
    stale = tmp_path / "s" / ".tmp-00000000000000000001-1-dead.profile"
    fresh = tmp_path / "s" / ".tmp-99999999999999999999-2-live.profile"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    os.utime(stale, (1_000_000, 1_000_000))
    assert spool.drain(lambda ps: []) == (1, 0)
    assert not stale.exists() and fresh.exists()
