"""``ls`` and ``get`` against the moto S3 server and ``file://`` URLs, through the real command."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Tuple
from urllib.parse import parse_qs, urlsplit

import pytest
from clitools import cli, random_cpuprofile, utc
from support import child_env, make_profile, s3_client, s3_options

from otel_profiling import ProfileKind
from otel_profiling.exporters import FsspecProfileExporter


def s3_env(endpoint: str):  # type: ignore[no-untyped-def]
    return child_env(AWS_ENDPOINT_URL=endpoint)


@pytest.fixture
def s3_profiles(s3_endpoint: str, bucket: str):  # type: ignore[no-untyped-def]
    """Four profiles of two services and two kinds, written by the real exporter."""
    exporter = FsspecProfileExporter(
        f"s3://{bucket}/profiles/{{service.name}}", s3_options(s3_endpoint)
    )
    written = [
        make_profile(
            random_cpuprofile(1),
            start=utc(2026, 11, 24, 10, 0, 0),
            service="checkout",
            duration=timedelta(seconds=2),
        ),
        make_profile(
            b'{"head": {}}',
            kind=ProfileKind.HEAP_PROFILE,
            start=utc(2026, 11, 24, 9, 0, 0),
            service="checkout",
            duration=timedelta(milliseconds=1500),
        ),
        make_profile(
            random_cpuprofile(2),
            start=utc(2026, 11, 24, 11, 0, 0),
            service="billing",
            duration=timedelta(seconds=2),
        ),
        make_profile(
            b"not even json: ls never reads bodies",
            start=utc(2026, 11, 24, 8, 0, 0),
            service="billing",
            duration=timedelta(seconds=2),
        ),
    ]
    for profile in written:
        exporter.write(profile)
    # an unrelated object is not a profile and is not listed
    exporter.fs.pipe_file(f"{bucket}/profiles/README.txt", b"hello")
    return bucket, written


def test_ls_s3_sorted_with_metadata_and_filters(s3_endpoint: str, s3_profiles) -> None:  # type: ignore[no-untyped-def]
    bucket, _ = s3_profiles
    env = s3_env(s3_endpoint)
    result = cli("ls", f"s3://{bucket}/profiles", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["start_time"] for r in rows] == [
        "2026-11-24T08:00:00.000Z",
        "2026-11-24T09:00:00.000Z",
        "2026-11-24T10:00:00.000Z",
        "2026-11-24T11:00:00.000Z",
    ]
    assert [r["service"] for r in rows] == ["billing", "checkout", "checkout", "billing"]
    assert rows[1]["kind"] == "HEAP_PROFILE" and rows[1]["duration_ms"] == 1500
    assert rows[2]["duration_ms"] == 2000 and rows[2]["status"] == "OK"
    assert rows[2]["key"] == "checkout/CPU_PROFILE-2026-11-24T10:00:00.000Z.cpuprofile"
    assert all(r["size"] > 0 for r in rows)

    def keys(*args: str) -> list:
        out = cli("ls", f"s3://{bucket}/profiles", "--json", *args, env=env)
        assert out.returncode == 0, out.stderr
        return [r["start_time"][11:13] for r in json.loads(out.stdout)]

    assert keys("--kind", "CPU_PROFILE") == ["08", "10", "11"]
    assert keys("--kind", "heap") == ["09"]
    assert keys("--service", "checkout") == ["09", "10"]
    assert keys("--since", "2026-11-24T09:30:00Z", "--until", "2026-11-24T10:30:00Z") == ["10"]
    assert keys("--since", "100000d") == ["08", "09", "10", "11"]
    table = cli("ls", f"s3://{bucket}/profiles", env=env)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["KIND", "START"]
    assert "1.5s" in lines[2] and "checkout" in lines[2]


def test_ls_errors_are_one_line(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    env = s3_env(s3_endpoint)
    missing = cli("ls", f"s3://{bucket}-absent/x", env=env)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "does not exist" in missing.stderr
    bad_kind = cli("ls", str(tmp_path), "--kind", "GPU")
    assert bad_kind.returncode == 1 and "CPU_PROFILE" in bad_kind.stderr
    bad_time = cli("ls", str(tmp_path), "--since", "yesterday")
    assert bad_time.returncode == 1 and "30m" in bad_time.stderr


def test_view_and_convert_of_a_prefix_say_it_is_a_prefix(
    s3_endpoint: str, s3_profiles, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """An object store has no directories: a prefix that holds profiles exists, but is not
    one; the error says so rather than that it does not exist."""
    bucket, _ = s3_profiles
    env = s3_env(s3_endpoint)
    for args in (
        ("view", f"s3://{bucket}/profiles/checkout", "-o", str(tmp_path / "x.html")),
        ("convert", f"s3://{bucket}/profiles", str(tmp_path / "x.pprof")),
    ):
        result = cli(*args, env=env)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "is a prefix, not a profile" in result.stderr, result.stderr
    # an object that is really absent still says so
    absent = cli("view", f"s3://{bucket}/profiles/checkout/nope.cpuprofile", env=env)
    assert absent.returncode == 1 and "does not exist" in absent.stderr, absent.stderr


def test_profiles_under_a_key_template_without_kind_are_not_silently_missing(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """Keys without ``{kind}`` cannot be listed: ``ls`` and ``merge`` say why and what to
    do instead of "(no profiles)" or blaming the filters; the object by its URL still works."""
    exporter = FsspecProfileExporter(
        f"s3://{bucket}/nokind", s3_options(s3_endpoint), key_template="{start_time}.{extension}"
    )
    path = exporter.write(make_profile(random_cpuprofile(3), start=utc(2026, 11, 24, 10)))
    env = s3_env(s3_endpoint)
    for args in (
        ("ls", f"s3://{bucket}/nokind"),
        ("merge", f"s3://{bucket}/nokind", "-o", str(tmp_path / "m.folded")),
    ):
        result = cli(*args, env=env)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "1 object(s), none named as a profile" in result.stderr, result.stderr
        assert "{kind} and {start_time}" in result.stderr
        assert "OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE" in result.stderr
    single = cli("merge", f"s3://{path}", "-o", str(tmp_path / "m.folded"), env=env)
    assert single.returncode == 0, single.stderr


def test_presigned_url_signature_stays_out_of_names_errors_and_pages(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """A presigned URL's query is a credential: `view` and `get` name what they write after
    the object (not the query), and errors and pages never carry the signature."""
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="p/app.cpuprofile", Body=random_cpuprofile(5))
    client.put_object(Bucket=bucket, Key="p/junk.cpuprofile", Body=b"\x00 not a profile")

    def presign(key: str) -> Tuple[str, str]:
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600
        )
        (signature,) = parse_qs(urlsplit(url).query)["X-Amz-Signature"]
        return url, signature

    url, signature = presign("p/app.cpuprofile")
    view = cli("view", url, "--json", cwd=str(tmp_path))
    assert view.returncode == 0, view.stderr
    assert json.loads(view.stdout)["output"] == "app.cpuprofile.html"
    get = cli("get", url, cwd=str(tmp_path))
    assert get.returncode == 0, get.stderr
    assert (tmp_path / "app.cpuprofile").read_bytes() == random_cpuprofile(5)
    bad_url, bad_signature = presign("p/junk.cpuprofile")
    bad = cli("view", bad_url, cwd=str(tmp_path))
    assert bad.returncode == 1 and bad.stderr.startswith("otel-profiling: error: junk.cpuprofile:")
    # merge and diff take it as one object: its "?" starts the query, it is no wildcard
    merged = cli("merge", url, url, "-o", str(tmp_path / "m.folded"), "--json")
    assert merged.returncode == 0, merged.stderr
    assert json.loads(merged.stdout)["merged"] == 2
    written = "".join(p.read_text(errors="replace") for p in tmp_path.iterdir() if p.is_file())
    for result, secret in (
        (view, signature),
        (get, signature),
        (bad, bad_signature),
        (merged, signature),
    ):
        assert secret not in result.stdout + result.stderr
    assert signature not in written and not any("X-Amz" in p.name for p in tmp_path.iterdir())


def test_debug_never_prints_credentials(s3_endpoint: str, s3_profiles) -> None:  # type: ignore[no-untyped-def]
    """``--debug`` shows this package's debug logs and tracebacks, not the storage client's
    wire logs: those print each request's headers (the session token, the signature)."""
    bucket, _ = s3_profiles
    secrets = {
        "AWS_ACCESS_KEY_ID": "AKIADEBUGKEYID0001",
        "AWS_SECRET_ACCESS_KEY": "debug-secret-key-0002",
        "AWS_SESSION_TOKEN": "debug-session-token-0003",
    }
    env = child_env(AWS_ENDPOINT_URL=s3_endpoint, **secrets)
    for args in (
        ("--debug", "ls", f"s3://{bucket}/profiles"),
        ("--debug", "view", f"s3://{bucket}/profiles/nope.cpuprofile"),
    ):
        result = cli(*args, env=env)
        assert result.returncode in (0, 1), result.stderr
        for value in secrets.values():
            assert value not in result.stdout + result.stderr, (args, value)
    assert "does not exist" in result.stderr  # the error is still there


def test_get_writes_like_a_file_a_pipe_and_names_local_failures(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """The download gets the mode any new file gets (the umask), a pipe (or device) given
    as -o is written into rather than replaced, and a local write failure names the file,
    not the storage and its credentials."""
    exporter = FsspecProfileExporter(f"s3://{bucket}/p", s3_options(s3_endpoint))
    body = random_cpuprofile(9)
    url = f"s3://{exporter.write(make_profile(body, start=utc(2026, 11, 24, 10)))}"
    env = s3_env(s3_endpoint)

    result = cli("get", url, "-o", str(tmp_path / "app.cpuprofile"), env=env)
    assert result.returncode == 0, result.stderr
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "app.cpuprofile").stat().st_mode & 0o777 == 0o666 & ~mask

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    piped = cli("get", url, "-o", str(fifo), env=env)
    if piped.returncode != 0:
        with open(fifo, "wb"):  # let the reader finish
            pass
    reader.join(30)
    assert piped.returncode == 0, piped.stderr
    assert received == [body] and stat.S_ISFIFO(fifo.stat().st_mode)

    (tmp_path / "plain").write_text("a file where a directory should be")
    blocked = cli("get", url, "-o", str(tmp_path / "plain" / "x.cpuprofile"), env=env)
    assert blocked.returncode == 1 and blocked.stderr.count("\n") == 1, blocked.stderr
    assert f"cannot write {tmp_path / 'plain' / 'x.cpuprofile'}" in blocked.stderr
    assert "s3://" not in blocked.stderr


def test_ls_file_url_parses_keys(tmp_path: Path) -> None:
    exporter = FsspecProfileExporter(f"file://{tmp_path}")
    for hour in (5, 3, 4):
        exporter.write(
            make_profile(
                random_cpuprofile(hour),
                start=utc(2026, 1, 2, hour),
                service="checkout",
                duration=timedelta(seconds=2),
            )
        )
    result = cli("ls", f"file://{tmp_path}", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["start_time"][11:13] for r in rows] == ["03", "04", "05"]
    assert all(r["kind"] == "CPU_PROFILE" for r in rows)
    empty = cli("ls", str(tmp_path), "--kind", "heap")
    assert empty.returncode == 0 and "(no profiles)" in empty.stdout


def test_url_schemes_are_read_in_any_case(tmp_path: Path) -> None:
    """``FILE://`` is ``file://`` (schemes are case-insensitive), as it is for the exporter:
    ls lists, get downloads and merge reads through it."""
    exporter = FsspecProfileExporter(f"FILE://{tmp_path}/p")
    body = random_cpuprofile(3)
    key = exporter.write(make_profile(body, start=utc(2026, 1, 2, 3)))
    listed = cli("ls", f"FILE://{tmp_path}/p", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["url"] == f"file://{key}" and row["start_time"] == "2026-01-02T03:00:00.000Z"
    got = cli("get", f"FiLe://{key}", "-o", str(tmp_path / "got.cpuprofile"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "got.cpuprofile").read_bytes() == body
    merged = cli("merge", f"FILE://{tmp_path}/p", "-o", str(tmp_path / "m.folded"), "--json")
    assert merged.returncode == 0, merged.stderr
    assert json.loads(merged.stdout)["merged"] == 1


def test_upper_case_s3_scheme_lists_the_bucket(s3_endpoint: str, s3_profiles) -> None:  # type: ignore[no-untyped-def]
    bucket, written = s3_profiles
    result = cli("ls", f"S3://{bucket}/profiles", "--json", env=s3_env(s3_endpoint))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == len(written)
    assert all(r["url"].startswith(f"s3://{bucket}/profiles/") for r in rows)


@pytest.mark.parametrize("given", ["secret", "key"])
def test_a_key_or_secret_alone_is_named_with_the_fix(
    s3_endpoint: str, bucket: str, given: str
) -> None:
    """botocore refuses a secret without its key (PartialCredentialsError): the command says
    which one is missing and what to do, on one line, and never shows the value given."""
    value = "s3cr3t-VALUE-0001"
    missing = {"secret": "key", "key": "secret"}[given]
    for args in (
        ("ls", f"s3://{bucket}"),
        ("view", f"s3://{bucket}/p/x.cpuprofile"),
        ("merge", f"s3://{bucket}/p", "-o", "-", "--to", "folded"),
    ):
        result = cli(*args, "--storage-option", f"{given}={value}", env=s3_env(s3_endpoint))
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert f"give '{given}' without '{missing}'" in result.stderr, result.stderr
        assert "give key and secret together, or neither" in result.stderr
        assert "PartialCredentialsError" not in result.stderr
        assert value not in result.stdout + result.stderr


def test_ls_json_names_the_format_and_the_key(tmp_path: Path) -> None:
    """Without object metadata (a local directory) the format comes from the extension:
    ``.speedscope.json`` is the ``speedscope`` format, as the exporter's metadata says."""
    (tmp_path / "CPU_PROFILE-2026-11-24T10:00:00.000Z.speedscope.json").write_text("{}")
    (tmp_path / "HEAP_PROFILE-2026-11-24T11:00:00.000Z.pprof").write_bytes(b"")
    result = cli("ls", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert [row["format"] for row in json.loads(result.stdout)] == ["speedscope", "pprof"]
    # the URL of one object lists that object, under its name
    one = cli("ls", str(tmp_path / "HEAP_PROFILE-2026-11-24T11:00:00.000Z.pprof"), "--json")
    assert one.returncode == 0, one.stderr
    assert [row["key"] for row in json.loads(one.stdout)] == [
        "HEAP_PROFILE-2026-11-24T11:00:00.000Z.pprof"
    ]


def test_get_downloads_exact_bytes_with_progress(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    exporter = FsspecProfileExporter(f"s3://{bucket}/p", s3_options(s3_endpoint))
    big = os.urandom(3 << 20)
    profile = make_profile(
        big,
        kind=ProfileKind.HEAP_SNAPSHOT,
        start=datetime.now(timezone.utc),
        service="checkout",
        duration=timedelta(seconds=2),
    )
    path = exporter.write(profile)
    url = f"s3://{path}"
    env = s3_env(s3_endpoint)
    result = cli(
        "get", url, "-o", str(tmp_path / "snap.heapsnapshot"), "--progress", "--json", env=env
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "snap.heapsnapshot").read_bytes() == big
    assert "100.0%" in result.stderr and "3.0 MiB" in result.stderr
    assert json.loads(result.stdout)["size"] == len(big)

    # default name: the key, in the working directory; no progress bar when not a terminal
    plain = cli("get", url, env=env, cwd=str(tmp_path))
    assert plain.returncode == 0, plain.stderr
    assert (tmp_path / profile.key).read_bytes() == big
    assert plain.stderr == ""

    again = cli("get", url, env=env, cwd=str(tmp_path))
    assert again.returncode == 1 and "--force" in again.stderr
    assert cli("get", url, "--force", env=env, cwd=str(tmp_path)).returncode == 0

    absent = cli("get", url + ".nope", "-o", str(tmp_path / "x"), env=env)
    assert absent.returncode == 1 and absent.stderr.count("\n") == 1
    assert "does not exist" in absent.stderr
    assert not (tmp_path / "x").exists()
