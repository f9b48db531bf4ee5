"""The local spool: atomic entries that keep the whole profile, capped, shared safely."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import List

import pytest
from opentelemetry.sdk.resources import Resource
from support import make_profile, wait_for

from otel_profiling.exporters import FsspecProfileExporter, InMemoryProfileExporter
from otel_profiling.processors import BatchProfileProcessor
from otel_profiling.processors.spool import Spool, default_spool_root


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
    with caplog.at_level(logging.WARNING, logger="otel_profiling.processors.spool"):
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


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OTEL_SERVICE_NAME", " billing "), ("OTEL_RESOURCE_ATTRIBUTES", "service.name= billing ")],
)
def test_service_name_with_surrounding_spaces_spools_under_the_bare_name(
    _spool_in_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """The spaces a deployment left around the name do not end up in the directory name."""
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.setenv(variable, value)
    resource = Resource.create()
    # The SDK keeps OTEL_SERVICE_NAME as given and strips OTEL_RESOURCE_ATTRIBUTES values:
    # the resource is left as the SDK made it, so profiles and traces carry the same name.
    assert str(resource.attributes["service.name"]).strip() == "billing"
    from_env = Spool.from_env()
    for_agent = Spool.for_exporter(FsspecProfileExporter(f"file://{tmp_path}/out"), resource)
    assert from_env is not None and for_agent is not None
    assert from_env.directory == _spool_in_tmp / "billing"
    assert for_agent.directory.parent == _spool_in_tmp / "billing"


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


# -- whatever lies in the spool directory, reading it never fails nor blocks ------------


def _entry_parts(path: Path) -> tuple:
    raw = path.read_bytes()
    newline = raw.index(b"\n")
    return json.loads(raw[:newline]), raw[newline + 1 :]


def _with_header(**changes: object):  # type: ignore[no-untyped-def]
    def corrupt(path: Path, good: Path) -> None:
        header, payload = _entry_parts(good)
        header.update(changes)
        path.write_bytes(json.dumps(header).encode() + b"\n" + payload)

    return corrupt


def _without(key: str):  # type: ignore[no-untyped-def]
    def corrupt(path: Path, good: Path) -> None:
        header, payload = _entry_parts(good)
        del header[key]
        path.write_bytes(json.dumps(header).encode() + b"\n" + payload)

    return corrupt


def _raw(data: bytes):  # type: ignore[no-untyped-def]
    return lambda path, good: path.write_bytes(data)


def _truncated(path: Path, good: Path) -> None:
    path.write_bytes(good.read_bytes()[:-100])


def _bad_checksum(path: Path, good: Path) -> None:
    raw = bytearray(good.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def _header_list(path: Path, good: Path) -> None:
    _, payload = _entry_parts(good)
    path.write_bytes(b"[1, 2, 3]\n" + payload)


def _directory(path: Path, good: Path) -> None:
    path.mkdir()
    (path / "inside").write_bytes(b"x")


def _fifo(path: Path, good: Path) -> None:
    os.mkfifo(path)


def _symlink(path: Path, good: Path) -> None:
    os.symlink(good, path)  # even to a valid entry: links are not followed


def _socket(path: Path, good: Path) -> None:
    import socket
    import tempfile

    short = Path(tempfile.mkdtemp(dir="/tmp")) / "s"  # socket paths are limited to ~100 bytes
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(short))
    os.rename(short, path)
    short.parent.rmdir()


CORRUPTIONS = {
    "header is a JSON list": _header_list,
    "header has no kind": _without("kind"),
    "header has no sha256": _without("sha256"),
    "attributes not an object": _with_header(attributes="not an object"),
    "attribute value is an object": _with_header(attributes={"a": {"nested": 1}}),
    "resource not an object": _with_header(resource=[1, 2]),
    "start time not a date": _with_header(start_time="yesterday"),
    "start time without zone": _with_header(start_time="2026-11-24T10:00:00"),
    "unknown kind": _with_header(kind="GPU_PROFILE"),
    "scope malformed": _with_header(scope=[1]),
    "size a string": _with_header(size="12"),
    "unknown version": _with_header(v=99),
    "no header line": _raw(b"garbage without a newline"),
    "empty file": _raw(b""),
    "header not JSON": _raw(b"{not json\npayload"),
    "header not UTF-8": _raw(b"\xff\xfe\xfd\npayload"),
    "truncated payload": _truncated,
    "bad checksum": _bad_checksum,
    "a directory": _directory,
    "a FIFO": _fifo,
    "a symbolic link": _symlink,
    "a socket": _socket,
}


def _drain_in_thread(spool: Spool, send):  # type: ignore[no-untyped-def]
    """Drain on another thread, so a FIFO that blocked would fail the test, not hang it."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(spool.drain(send)), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "drain blocked"
    return result[0]


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_unreadable_entry_is_set_aside_once_and_never_sent(
    corruption: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "s")
    good_profile = make_profile(1)
    good = spool.put(good_profile)
    assert good is not None
    reference = tmp_path / "reference.profile"  # a valid entry outside the spool
    reference.write_bytes(good.read_bytes())
    bad = tmp_path / "s" / "00000000000000000001-1-0bad0bad.profile"  # sorts first
    CORRUPTIONS[corruption](bad, reference)
    sent: list = []
    with caplog.at_level(logging.ERROR, logger="otel_profiling.processors.spool"):
        assert _drain_in_thread(spool, lambda ps: sent.extend(ps) or []) == (1, 0)
        assert [p.data for p in sent] == [good_profile.data]
        assert spool.quarantined_entries == 1
        assert not os.path.lexists(bad)
        assert os.path.lexists(bad.with_name(bad.name.replace(".profile", ".damaged")))
        errors = [r.getMessage() for r in caplog.records]
        assert len(errors) == 1 and bad.name in errors[0], errors
        # later reads neither send it, nor log it again
        assert _drain_in_thread(spool, lambda ps: sent.extend(ps) or []) == (0, 0)
        assert spool.pending() == 0 and spool.profiles() == []
        assert len(caplog.records) == 1 and len(sent) == 1


def test_damaged_names_do_not_clash(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    name = tmp_path / "s" / "00000000000000000001-1-0bad0bad.profile"
    spool.put(make_profile(1))
    name.write_bytes(b"damaged")
    assert spool.drain(lambda ps: []) == (1, 0)
    name.write_bytes(b"damaged again, same name")  # set aside under a name of its own
    assert spool.drain(lambda ps: []) == (0, 0)
    damaged = sorted(n for n in os.listdir(tmp_path / "s") if n.endswith(".damaged"))
    assert len(damaged) == 2 and spool.quarantined_entries == 2


def test_worker_survives_every_damaged_entry_and_keeps_exporting(tmp_path: Path) -> None:
    """A spool full of damage left by earlier processes: re-sent what is good, the rest set
    aside, and new profiles still exported by a live worker."""
    directory = tmp_path / "spool"
    spool = Spool(directory)
    good = [make_profile(i) for i in range(2)]
    reference = spool.put(make_profile(99))
    assert reference is not None
    kept = tmp_path / "kept.profile"
    kept.write_bytes(reference.read_bytes())
    reference.unlink()
    for profile in good:
        spool.put(profile)
    for index, name in enumerate(sorted(CORRUPTIONS)):
        CORRUPTIONS[name](directory / f"{index + 1:020d}-1-0bad0bad.profile", kept)
    exporter = FsspecProfileExporter(f"file://{tmp_path}/out")
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=10, spool=Spool(directory))
    try:
        assert processor.spool is not None
        assert wait_for(lambda: processor.resent_profiles == 2, 30)
        fresh = make_profile(7)
        processor.on_end(fresh)
        assert processor.force_flush(30_000)
        assert processor.exported_profiles == 1 and processor.worker_errors == 0
        assert processor.spool.quarantined_entries == len(CORRUPTIONS)
        assert processor.spool.pending() == 0
        written = {(tmp_path / "out" / n).read_bytes() for n in os.listdir(tmp_path / "out")}
        assert written == {p.data for p in [*good, fresh]}
    finally:
        processor.shutdown()


def test_directories_are_private_all_the_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "deep" / "er" / "spool-root"
    monkeypatch.setenv("OTEL_PROFILING_SPOOL_DIR", str(root))
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    old = os.umask(0o022)
    try:
        (root / "svc").mkdir(parents=True, mode=0o755)  # as an older version left it
        os.chmod(root / "svc", 0o755)
        os.chmod(root, 0o755)  # the root is the user's: never changed
        (tmp_path / "given").mkdir(mode=0o755)
        spool = Spool.from_env(destination="s3://bucket/x")
        assert spool is not None
        path = spool.put(make_profile(1))
        given = Spool(tmp_path / "given" / "a" / "b")
        given_path = given.put(make_profile(2))
    finally:
        os.umask(old)
    assert path is not None and given_path is not None
    assert path.parent.parent == root / "svc"
    for directory in (path.parent, root / "svc", given_path.parent, given_path.parent.parent):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    assert root.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "given").stat().st_mode & 0o777 == 0o755
    for file in (path, given_path):
        assert file.stat().st_mode & 0o777 == 0o600


def test_fresh_default_root_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_PROFILING_SPOOL_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spool = Spool.from_env(service="svc", destination="file:///x")
    assert spool is not None and spool.put(make_profile(1)) is not None
    for directory in (
        tmp_path / "cache",
        tmp_path / "cache" / "otel-profiling",
        default_spool_root(),
        default_spool_root() / "svc",
        spool.directory,
    ):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


def test_spool_holds_names_that_are_not_utf8(tmp_path: Path) -> None:
    from opentelemetry.sdk.resources import Resource

    name = "caf\udce9"  # what os.environ gives for the byte 0xE9 of a Latin-1 environment
    spool = Spool.from_env(service=name, destination=f"s3://bucket/{name}")
    assert spool is not None
    profile = make_profile(1, **{"user.name": name})
    profile.resource = Resource({"service.name": name})
    assert spool.put(profile) is not None
    (back,) = spool.profiles()
    assert back.attributes["user.name"] == name
    assert back.resource.attributes["service.name"] == name


def test_unwritable_spool_loses_with_one_error_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_bytes(b"x")
    spool = Spool(tmp_path / "file" / "spool")  # ENOTDIR
    with caplog.at_level(logging.ERROR):
        assert spool.put(make_profile(1)) is None
    assert "is lost" in caplog.text and "OTEL_PROFILING_SPOOL_DIR" in caplog.text
    assert spool.pending() == 0 and spool.drain(lambda ps: []) == (0, 0)


def test_long_service_names_get_a_short_directory(tmp_path: Path) -> None:
    """A 300-character service name: the spool still works, and two such services stay apart."""
    first = Spool.from_env(service="s" * 300, destination="file:///x")
    second = Spool.from_env(service="s" * 299 + "t", destination="file:///x")
    assert first is not None and second is not None
    assert first.directory != second.directory
    for spool in (first, second):
        assert len(spool.directory.parent.name) <= 100
        assert spool.put(make_profile(1)) is not None and spool.pending() == 1


class SpoolingHandler(logging.Handler):
    """A log handler that itself spools (as one that ships log records might), from another
    thread, and waits for it: it finishes only if the spool's lock is free meanwhile."""

    def __init__(self, spool: Spool) -> None:
        super().__init__(logging.WARNING)
        self.spool = spool
        self.finished: List[bool] = []

    def emit(self, record: logging.LogRecord) -> None:
        thread = threading.Thread(target=self.spool.put, args=(make_profile(99, size=100),))
        thread.start()
        thread.join(5)  # 5 s: a put here takes milliseconds; stuck behind the lock, forever
        self.finished.append(not thread.is_alive())


@pytest.mark.parametrize("cause", ["eviction", "quarantine"])
def test_the_spool_logs_only_once_its_lock_is_released(tmp_path: Path, cause: str) -> None:
    spool = Spool(tmp_path / "s", max_bytes=5_000)
    if cause == "eviction":
        spool.put(make_profile(1, size=3000))  # the next put evicts it, with a warning
    else:
        (tmp_path / "s" / "00000000000000000001-1-dir.profile").mkdir(parents=True)
    handler = SpoolingHandler(spool)
    logger = logging.getLogger("otel_profiling.processors.spool")
    logger.addHandler(handler)
    try:
        assert spool.put(make_profile(2, size=3000)) is not None
    finally:
        logger.removeHandler(handler)
    assert handler.finished == [True]  # one line logged, and the handler's put did not wait on it
    assert spool.pending() == 2  # the second profile and the handler's one
