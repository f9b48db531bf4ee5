"""The command's shape: help everywhere, exit codes 0/1/2, one-line errors, the script entry."""

from __future__ import annotations

import sys

import pytest
from clitools import cli
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


def test_module_entry_point_runs_main() -> None:
    from otel_profiling.__main__ import main

    assert main(["trigger", "999999999", "--json"]) == 1
