"""A new user's environment, in real processes: each mistake is one clear message, never a crash.

Each test starts a real Python with a real environment and reads what the user
would see: the application's stderr and the profiles written to a directory.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from support import run_child

# configure(), a little work, then an exit that exports what was profiled
APP = """
import time
import otel_profiling
agent = otel_profiling.configure()
start = time.perf_counter()
while time.perf_counter() - start < 0.2:
    sum(i * i for i in range(1000))
agent.shutdown()
print("done")
"""


CLI = [sys.executable, "-m", "otel_profiling"]


def run_app(tmp_path: Path, env: Dict[str, str], code: str = APP) -> Tuple[str, str]:
    """Run ``code`` with ``env`` (no spool left behind); return its stdout and stderr."""
    settings = {"OTEL_PROFILING_SPOOL_DIR": "none", **env}
    done = run_child([sys.executable, "-c", code], settings, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout.splitlines()[-1:] == ["done"], done.stdout
    return done.stdout, done.stderr


def lines_naming(stderr: str, variable: str) -> List[str]:
    return [line for line in stderr.splitlines() if re.search(rf"\b{variable}\b", line)]


def console_summaries(stdout: str) -> List[Dict[str, Any]]:
    """The profiles the ``console`` exporter printed, one JSON object a line."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_exporter_names_in_any_case(tmp_path: Path) -> None:
    """``FSSPEC`` or ``Console`` is what the user meant (the other values are read in any
    case, as the OpenTelemetry specification says of such values): before, each was
    refused and no profile was exported at all."""
    out, err = run_app(
        tmp_path,
        {
            "OTEL_PROFILES_EXPORTER": "FSSPEC, Console, fsspec",
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": (tmp_path / "profiles").as_uri(),
            "OTEL_PROFILING_AT_START": "true",
        },
    )
    assert "OTEL_PROFILES_EXPORTER" not in err, err
    # one fsspec exporter (the two spellings are one name), one console exporter
    assert len(list((tmp_path / "profiles").glob("CPU_PROFILE-*.cpuprofile"))) == 1
    summaries = console_summaries(out)
    assert [summary["kind"] for summary in summaries] == ["CPU_PROFILE"]


def test_each_bad_value_is_one_warning_with_two_exporters(tmp_path: Path) -> None:
    """Each exporter has its batch processor and spool, which read the same variables:
    before, every bad value among them was warned about once per exporter."""
    _, err = run_app(
        tmp_path,
        {
            "OTEL_PROFILES_EXPORTER": "fsspec,console",
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": (tmp_path / "profiles").as_uri(),
            "OTEL_PROFILING_SPOOL_DIR": str(tmp_path / "spool"),
            "OTEL_BPP_SCHEDULE_DELAY": "xyz",
            "OTEL_BPP_MAX_QUEUE_SIZE": "4",  # below the default batch size of 32
            "OTEL_PROFILING_SPOOL_MAX_BYTES": "lots",
            "OTEL_PROFILING_AT_START": "maybe",  # read for the interval and for the start
        },
    )
    for variable, value in (
        ("OTEL_BPP_SCHEDULE_DELAY", "'xyz'"),
        ("OTEL_BPP_MAX_EXPORT_BATCH_SIZE", "queue size 4"),
        ("OTEL_PROFILING_SPOOL_MAX_BYTES", "'lots'"),
        ("OTEL_PROFILING_AT_START", "'maybe'"),
    ):
        named = lines_naming(err, variable)
        assert len(named) == 1 and value in named[0], (variable, err)


def test_window_duration_read_twice_is_one_warning(tmp_path: Path) -> None:
    """With an interval and the start profiled, the duration serves both windows."""
    _, err = run_app(
        tmp_path,
        {
            "OTEL_PROFILES_EXPORTER": "none",
            "OTEL_PROFILING_INTERVAL": "60",
            "OTEL_PROFILING_AT_START": "true",
            "OTEL_PROFILING_DURATION": "abc",
        },
    )
    named = lines_naming(err, "OTEL_PROFILING_DURATION")
    assert len(named) == 1 and "'abc'" in named[0], err


def test_a_bad_generic_otlp_endpoint_is_named_as_set(tmp_path: Path) -> None:
    """The warning names the variable the user set and shows its value, not the URL
    made from it (before: OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT and
    'collector:4318/v1development/profiles', with an "expected OTLP endpoint ..."
    that was no expectation)."""
    _, err = run_app(
        tmp_path,
        {"OTEL_PROFILES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
    )
    assert lines_naming(err, "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT") == [], err
    [line] = lines_naming(err, "OTEL_EXPORTER_OTLP_ENDPOINT")
    assert "'collector:4318'" in line and "/v1development/profiles'" in line, line
    assert "expected an http:// or https:// URL such as http://collector:4318;" in line


def test_a_malformed_grpc_endpoint_is_a_warning_naming_the_variable(tmp_path: Path) -> None:
    """Before: the otlp exporter was left out with only "(Invalid IPv6 URL)"."""
    _, err = run_app(
        tmp_path,
        {
            "OTEL_PROFILES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT": "http://[::1",
        },
    )
    assert "not loaded" not in err, err
    [line] = lines_naming(err, "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT")
    assert "'http://[::1'" in line and "http://localhost:4317" in line, line


def test_bad_headers_message_reads_once(tmp_path: Path) -> None:
    _, err = run_app(
        tmp_path,
        {
            "OTEL_PROFILES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROFILES_HEADERS": "authorization=Bearer s3cr3t-token,oops",
        },
    )
    [line] = lines_naming(err, "OTEL_EXPORTER_OTLP_PROFILES_HEADERS")
    assert "expected key=value pairs" in line and "expected expected" not in line, line
    assert "s3cr3t" not in err


def test_credentials_in_an_endpoint_url_option_never_logged(tmp_path: Path) -> None:
    """``endpoint_url`` is shown (it is no secret) but may carry ``user:password@``:
    before, the exporter's repr (logged at debug level) showed the password."""
    code = "import logging; logging.basicConfig(level=logging.DEBUG)\n" + APP
    options = {
        "endpoint_url": "http://minio:s3cr3t-password@127.0.0.1:9",
        "client_kwargs": {"endpoint_url": "http://minio:s3cr3t-nested@127.0.0.1:9"},
    }
    _, err = run_app(
        tmp_path,
        {
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": "s3://bucket/profiles",
            "OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS": json.dumps(options),
        },
        code=code,
    )
    assert "FsspecProfileExporter(url='s3://bucket/profiles'" in err, err
    assert "http://***@127.0.0.1:9" in err
    assert "s3cr3t" not in err


def test_run_refuses_an_interval_or_duration_that_is_not_finite(tmp_path: Path) -> None:
    """argparse's ``float`` takes ``nan`` and ``inf``; before, they reached the program
    as variables, and the program warned about a variable the user never set."""
    for option, value in (("--interval", "nan"), ("--duration", "inf")):
        done = run_child(
            [*CLI, "run", option, value, "--", sys.executable, "-c", "print('ran')"],
            {"OTEL_PROFILING_SPOOL_DIR": "none"},
            cwd=tmp_path,
        )
        assert done.returncode != 0 and "ran" not in done.stdout, done
        assert f"{option} must be a positive number of seconds, not {value}" in done.stderr
        assert "Traceback" not in done.stderr


def test_sampling_interval_read_as_every_number(tmp_path: Path) -> None:
    """``OTEL_PROFILING_CPU_INTERVAL`` follows the README's rules for numbers: out of
    range, the nearest bound (before: the default); digits other than ASCII, refused
    (before: ``float()`` read Arabic-Indic digits). The interval used is the one the
    exported profile records."""
    for value, used, instead in (
        ("120", "60.0", "using 60.0, the nearest bound"),
        ("0.0001", "0.001", "using 0.001, the nearest bound"),
        ("٠.٠٥", "0.01", "using the default 0.01"),
    ):
        out, err = run_app(
            tmp_path,
            {
                "OTEL_PROFILES_EXPORTER": "console",
                "OTEL_PROFILING_AT_START": "true",
                "OTEL_PROFILING_CPU_INTERVAL": value,
            },
        )
        [line] = lines_naming(err, "OTEL_PROFILING_CPU_INTERVAL")
        assert repr(value) in line and instead in line, line
        [summary] = console_summaries(out)
        assert summary["attributes"]["profiling.cpu.interval"] == used, summary


def test_a_bad_clock_is_shown_as_written(tmp_path: Path) -> None:
    """Before, the warning showed the value lower-cased: not what the user wrote."""
    _, err = run_app(
        tmp_path, {"OTEL_PROFILES_EXPORTER": "none", "OTEL_PROFILING_CPU_CLOCK": "WallTime"}
    )
    [line] = lines_naming(err, "OTEL_PROFILING_CPU_CLOCK")
    assert "'WallTime'" in line and "expected wall or cpu" in line, line


def test_dask_scheduler_address_blank_is_unset_and_a_bad_one_is_named(tmp_path: Path) -> None:
    """Before: a blank ``DASK_SCHEDULER_ADDRESS`` was taken for an address, and one
    without a port ended in "ValueError: missing port number" naming no variable."""
    profiles = tmp_path / "profiles"
    run_app(
        tmp_path,
        {
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": profiles.as_uri(),
            "OTEL_PROFILING_AT_START": "true",
        },
    )
    merge = [*CLI, "merge", profiles.as_uri()]
    merge += ["-o", str(tmp_path / "merged.cpuprofile")]
    for address, code, message in (
        (" ", 0, "1 profiles merged"),
        (
            "scheduler",
            1,
            "$DASK_SCHEDULER_ADDRESS (from the environment): 'scheduler' is not a Dask "
            "scheduler address",
        ),
    ):
        done = run_child(merge, {"DASK_SCHEDULER_ADDRESS": address}, timeout=120)
        assert (done.returncode, "Traceback" in done.stderr) == (code, False), done
        assert message in done.stdout + done.stderr, done


def test_a_profiler_named_twice_is_one_profiler(tmp_path: Path) -> None:
    """Before: ``cpu,CPU`` exported every window twice; ``heap,heap`` logged at each
    window that a heap profile was already running."""
    for names, kind in (("cpu,CPU", "CPU_PROFILE"), ("heap, heap", "HEAP_PROFILE")):
        out, err = run_app(
            tmp_path,
            {
                "OTEL_PROFILES_EXPORTER": "console",
                "OTEL_PROFILING_AT_START": "true",
                "OTEL_PROFILING_PROFILERS": names,
            },
        )
        summaries = console_summaries(out)
        assert [summary["kind"] for summary in summaries] == [kind], out
        assert "already running" not in err, err


def test_a_secret_in_the_url_query_never_names_the_spool(tmp_path: Path) -> None:
    """Before: the spool directory, and the log line naming it, held the signature."""
    spool = tmp_path / "spool"
    _, err = run_app(
        tmp_path,
        {
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": "s3://bucket/p?X-Amz-Signature=s3cr3t-sig",
            "OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS": json.dumps(
                {"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s3cr3t-key"}
            ),
            "OTEL_EXPORTER_FSSPEC_PROFILES_TIMEOUT": "1000",
            "OTEL_PROFILING_AT_START": "true",
            "OTEL_PROFILING_SPOOL_DIR": str(spool),
        },
    )
    assert "kept in" in err, err  # nothing listens on port 9: the profile was spooled
    kept = [path.relative_to(spool).as_posix() for path in spool.rglob("*")]
    assert len([name for name in kept if name.endswith(".profile")]) == 1, kept
    assert not [name for name in kept if "s3cr3t" in name], kept
    assert "s3cr3t" not in err, err


def test_a_url_scheme_in_upper_case(tmp_path: Path) -> None:
    """Schemes are case-insensitive (RFC 3986). Before: 'No fsspec backend for
    'FILE://' URLs ... install the fsspec implementation', and nothing exported."""
    target = tmp_path / "profiles"
    _, err = run_app(
        tmp_path,
        {
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": "FILE://" + str(target),
            "OTEL_PROFILING_AT_START": "true",
        },
    )
    assert "OTEL_EXPORTER_FSSPEC_PROFILES_URL" not in err, err
    assert len(list(target.glob("CPU_PROFILE-*.cpuprofile"))) == 1
