"""``opentelemetry-instrument`` with only environment variables: no change to the application."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, Sequence, Tuple

from instrumented import instrument_command, instrumented_env, write_distribution
from support import APPS, child_env, signal_child
from viewers import cpuprofile_function_names, load_cpuprofile

CONFIGURATOR = "span_file_configurator:SpanFileConfigurator"
KEY = re.compile(r"^CPU_PROFILE-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\.cpuprofile$")


def run_instrumented(
    tmp_path: Path,
    env: Dict[str, str],
    signals: int = 2,
    app: str = "plain_app.py",
    options: Sequence[str] = (),
) -> Tuple[str, str]:
    """Run ``app`` under opentelemetry-instrument, send SIGUSR2 ``signals`` times, quit."""
    full_env = instrumented_env(child_env(**env), tmp_path, extra_dist=tmp_path / "extra")
    command = instrument_command(APPS / app, options=options)
    return signal_child(command, full_env, signals, cwd=tmp_path)


def test_file_url_named_and_attributed_by_env(tmp_path: Path) -> None:
    target = tmp_path / "profiles"
    out, err = run_instrumented(
        tmp_path,
        {
            "OTEL_PROFILING_ENABLED": "true",
            "OTEL_SERVICE_NAME": "checkout",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging",
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{target}/{{service.name}}",
            "OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE": (
                "{deployment.environment}/{kind}-{start_time}.{extension}"
            ),
        },
    )
    files = os.listdir(target / "checkout" / "staging")
    assert len(files) == 1 and KEY.match(files[0]), files
    profile = load_cpuprofile((target / "checkout" / "staging" / files[0]).read_bytes())
    assert {"plain_workload", "plain_workload_leaf"} <= cpuprofile_function_names(profile)
    assert "otel-profiling-" in out  # the agent's threads ran in the child
    assert "Traceback" not in err


def test_s3_named_and_attributed_by_env(
    tmp_path: Path, s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    options = {"endpoint_url": s3_endpoint}
    run_instrumented(
        tmp_path,
        {
            "OTEL_PROFILING_ENABLED": "true",
            "OTEL_SERVICE_NAME": "payments",
            "OTEL_RESOURCE_ATTRIBUTES": "service.version=1.2.3",
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"s3://{bucket}/fleet/{{service.name}}",
            "OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS": json.dumps(options),
            "AWS_REGION": "us-east-1",
        },
    )
    keys = [obj["Key"] for obj in boto3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 1, keys
    prefix, _, name = keys[0].rpartition("/")
    assert prefix == "fleet/payments" and KEY.match(name), keys
    obj = boto3_client.get_object(Bucket=bucket, Key=keys[0])
    meta = obj["Metadata"]
    assert meta["service-name"] == "payments"
    assert meta["profile-kind"] == "CPU_PROFILE"
    assert meta["attr-profiling.trigger"].startswith("signal")
    assert meta["attr-profiling.profile.url"] == f"s3://{bucket}/{keys[0]}"
    names = cpuprofile_function_names(load_cpuprofile(obj["Body"].read()))
    assert "plain_workload_leaf" in names


def test_variables_are_also_instrument_options(tmp_path: Path) -> None:
    target = tmp_path / "profiles"
    out, _ = run_instrumented(
        tmp_path,
        {},
        options=[
            "--profiling_enabled",
            "true",
            "--profiles_exporter",
            "fsspec,console",
            "--exporter_fsspec_profiles_url",
            f"file://{target}",
        ],
    )
    [name] = os.listdir(target)
    assert KEY.match(name)
    summaries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [s["key"] for s in summaries] == [name]


def test_not_enabled_means_untouched(tmp_path: Path) -> None:
    target = tmp_path / "profiles"
    out, _ = run_instrumented(
        tmp_path, {"OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{target}"}, signals=0
    )
    assert "otel-profiling-" not in out
    assert not target.exists()


def test_sdk_disabled_exports_nothing_and_starts_no_thread(tmp_path: Path) -> None:
    target = tmp_path / "profiles"
    out, err = run_instrumented(
        tmp_path,
        {
            "OTEL_PROFILING_ENABLED": "true",
            "OTEL_SDK_DISABLED": "true",
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{target}",
        },
        signals=0,
    )
    threads = next(line for line in out.splitlines() if line.startswith("threads:"))
    assert threads == "threads:MainThread,plain-worker"
    assert not target.exists()
    assert err.strip() == ""


def test_invalid_values_give_one_message_per_variable(tmp_path: Path) -> None:
    out, err = run_instrumented(
        tmp_path,
        {
            "OTEL_PROFILING_ENABLED": "true",
            "OTEL_PROFILES_EXPORTER": "console,nope",
            "OTEL_BPP_SCHEDULE_DELAY": "abc",
        },
    )
    lines = err.splitlines()
    exporter_lines = [line for line in lines if "OTEL_PROFILES_EXPORTER" in line]
    assert len(exporter_lines) == 1, err
    assert "'nope'" in exporter_lines[0] and "fsspec" in exporter_lines[0]
    delay_lines = [line for line in lines if "OTEL_BPP_SCHEDULE_DELAY" in line]
    assert len(delay_lines) == 1 and "'abc'" in delay_lines[0], err
    # the console exporter still worked, with the default delay
    summaries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [s["kind"] for s in summaries] == ["CPU_PROFILE"]


def test_agent_shares_the_configurators_resource_and_links_spans(tmp_path: Path) -> None:
    """A user's own configurator sets the tracer provider; the hook joins it, not replaces it."""
    spans_file = tmp_path / "spans.jsonl"
    target = tmp_path / "profiles"
    write_distribution(
        tmp_path / "extra",
        "span-file-configurator",
        {"opentelemetry_configurator": {"span_file": CONFIGURATOR}},
    )
    out, err = run_instrumented(
        tmp_path,
        {
            "OTEL_PROFILING_ENABLED": "true",
            "SPANS_FILE": str(spans_file),
            "OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{target}/{{configurator.id}}",
        },
        signals=0,
        app="traced_app.py",
    )
    files = os.listdir(target / "from-configurator")
    assert len(files) == 1 and KEY.match(files[0]), files
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    request = next(s for s in spans if s["name"] == "GET /report")
    url = request["attributes"]["profiling.profile.url"]
    assert url == f"file://{target}/from-configurator/{files[0]}"
    assert request["resource"]["configurator.id"] == "from-configurator"
    trace_id = next(line for line in out.splitlines() if line.startswith("trace_id:"))
    assert trace_id == "trace_id:" + request["trace_id"]
