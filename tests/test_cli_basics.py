"""The command's shape: help everywhere, exit codes 0/1/2, one-line errors, the script entry."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from clitools import cli, random_cpuprofile
from support import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs tomli there
    import tomli as tomllib

SUBCOMMANDS = ["run", "ls", "get", "view", "convert", "merge", "trigger"]


def test_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["otel-profiling"] == "otel_profiling.__main__:main"
    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("otel-profiling ")


def test_top_level_help_lists_every_subcommand() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name: str) -> None:
    result = cli(name, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: otel-profiling {name}" in result.stdout
    assert "example" in result.stdout


def test_usage_errors_exit_2() -> None:
    assert cli().returncode == 2
    assert cli("nosuch").returncode == 2
    assert cli("ls").returncode == 2  # URL missing
    bad = cli("convert", "a", "b", "--to", "png")
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr


def test_failures_exit_1_with_one_line_saying_what_to_do(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = cli("view", str(tmp_path / "nope.cpuprofile"))
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1
    assert missing.stderr.startswith("otel-profiling: error: ")
    assert "does not exist" in missing.stderr

    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01 not a profile at all")
    result = cli("view", str(garbage))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "--from" in result.stderr
    assert result.stderr.count("speedscope") == 1, result.stderr  # the formats listed once

    empty = tmp_path / "empty.cpuprofile"
    empty.write_bytes(b"")
    result = cli("view", str(empty))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "empty" in result.stderr and "--from" not in result.stderr, result.stderr

    scheme = cli("ls", "nosuchscheme://bucket/x")
    assert scheme.returncode == 1
    assert scheme.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ("ls", "s4://bucket/x"),
        ("view", "s4://bucket/x.cpuprofile"),
        ("merge", "s4://bucket/x", "-o", "merged.pprof"),
        ("diff", "s4://bucket/a", "s4://bucket/b", "--json"),
    ],
)
def test_unknown_url_scheme_names_the_schemes_to_use(args, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A typo in the scheme is fixed in the URL, not by installing something."""
    result = cli(*args, cwd=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "Unknown URL scheme 's4://'" in result.stderr
    assert "check the URL: use s3://" in result.stderr


def test_a_storage_option_the_backend_refuses_is_named(
    s3_endpoint: str, bucket: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "ls",
        f"s3://{bucket}/",
        "--endpoint-url",
        s3_endpoint,
        "--storage-option",
        "bogus_option=1",
        cwd=str(tmp_path),
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "check the --storage-option names (bogus_option, endpoint_url)" in result.stderr
    # found from what the backend's signature takes, before any request: the one refused
    assert "the storage backend for s3:// does not take bogus_option" in result.stderr


def test_accepted_storage_options_pass_the_check(s3_endpoint: str, bucket: str) -> None:
    """Options s3fs takes itself, or hands to fsspec or aiobotocore, are not refused."""
    result = cli(
        "ls",
        f"s3://{bucket}-absent/",
        "--endpoint-url",
        s3_endpoint,
        "--storage-option",
        "use_ssl=false",
        "--storage-option",
        "use_listings_cache=false",
        "--storage-option",
        "profile=null",
    )
    assert result.returncode == 1 and "does not exist" in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["view", "convert", "merge", "diff", "get"])
def test_output_into_missing_directories_creates_them(command: str, tmp_path: Path) -> None:
    """``-o new/dir/FILE`` creates new/dir; a path that cannot be a directory is named, with
    the reason, on one line."""
    source = tmp_path / "in.cpuprofile"
    source.write_bytes(random_cpuprofile(4))
    given = {
        "view": ["view", str(source), "-o"],
        "convert": ["convert", str(source)],
        "merge": ["merge", str(source), "-o"],
        "diff": ["diff", str(source), str(source), "-o"],
        "get": ["get", f"file://{source}", "-o"],
    }[command]
    target = tmp_path / "new" / "deeper" / "out.folded"
    result = cli(*given, str(target))
    assert result.returncode == 0, result.stderr
    assert target.is_file() and target.stat().st_size > 0
    if command == "get":
        assert target.read_bytes() == source.read_bytes()

    (tmp_path / "plain").write_text("a file where a directory should be")
    below = tmp_path / "plain" / "sub" / "out.folded"
    blocked = cli(*given, str(below))
    assert blocked.returncode == 1 and blocked.stderr.count("\n") == 1, blocked.stderr
    assert f"cannot write {below}: Not a directory" in blocked.stderr
    inside = tmp_path / "plain" / "out.folded"
    beside = cli(*given, str(inside))
    assert beside.returncode == 1 and beside.stderr.count("\n") == 1, beside.stderr
    assert f"cannot write {inside}: {tmp_path / 'plain'} is not a directory" in beside.stderr


def test_module_entry_point_runs_main() -> None:
    from otel_profiling.__main__ import main

    assert main(["trigger", "999999999", "--json"]) == 1
