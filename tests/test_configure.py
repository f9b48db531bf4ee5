"""``configure()`` from environment variables, the global agent, and exporter plugins."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from helpers import ManualTrigger
from instrumented import write_distribution
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from support import s3_options
from viewers import cpuprofile_function_names, load_cpuprofile

from otel_profiling import (
    ProfilingAgent,
    configure,
    get_profiling_agent,
    set_profiling_agent,
)
from otel_profiling.auto_instrumentation import link_tracer_provider, post_instrument
from otel_profiling.config import resource_from_env
from otel_profiling.exporters import ConsoleProfileExporter, FsspecProfileExporter
from otel_profiling.exporters.env import exporter_name, known_exporter_names
from otel_profiling.processors.batch import DEFAULT_SCHEDULE_DELAY_MILLIS
from otel_profiling.profilers import CpuProfiler

ENV_PREFIXES = ("OTEL_", "FSSPEC_")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No inherited OTEL_* setting and no signal trigger."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_PROFILING_SIGNAL", "none")
    yield  # conftest's _no_global_agent resets the global agent around every test


def profile_once(agent: ProfilingAgent) -> None:
    """One CPU profile of a little work, through a trigger the test drives."""
    trigger = ManualTrigger()
    agent.register(trigger, CpuProfiler())
    assert trigger.start()
    configured_workload()
    assert trigger.stop()
    assert agent.force_flush(30_000)


def configured_workload() -> int:
    """About 0.3 s of work: long enough for the sampling profiler to see it."""
    end = time.perf_counter() + 0.3
    total = 0
    while time.perf_counter() < end:
        total += sum(i * i for i in range(2000))
    return total


def processors_exporters(agent: ProfilingAgent) -> list:
    return [processor.exporter for processor in agent.processors]


def test_sdk_disabled_returns_none_and_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_PROFILING_SIGNAL", "SIGUSR2")
    before = {thread.ident for thread in threading.enumerate()}
    handler = signal.getsignal(signal.SIGUSR2)
    assert configure() is None
    assert get_profiling_agent() is None
    assert {thread.ident for thread in threading.enumerate()} == before
    assert signal.getsignal(signal.SIGUSR2) is handler


def test_configure_is_idempotent_and_sets_the_global_agent(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_PROFILES_EXPORTER", "console")
    agent = configure()
    assert isinstance(agent, ProfilingAgent)
    assert configure() is agent
    assert get_profiling_agent() is agent
    [exporter] = processors_exporters(agent)
    assert isinstance(exporter, ConsoleProfileExporter)
    other = ProfilingAgent()
    with caplog.at_level(logging.WARNING):
        assert set_profiling_agent(other) is False
    assert get_profiling_agent() is agent
    assert "not allowed" in caplog.text


def test_configure_returns_an_agent_set_beforehand() -> None:
    mine = ProfilingAgent()
    assert set_profiling_agent(mine)
    assert configure() is mine


def test_file_url_key_template_and_resource_from_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_URL", f"file://{tmp_path}/{{service.name}}")
    monkeypatch.setenv(
        "OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE",
        "{deployment.environment}-{kind}-{start_time}.{extension}",
    )
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS", '{"auto_mkdir": true}')
    agent = configure()
    assert agent is not None
    attributes = agent.resource.attributes
    assert attributes["service.name"] == "billing"
    assert attributes["deployment.environment"] == "staging"
    assert attributes["host.name"] == socket.gethostname()
    profile_once(agent)
    [name] = os.listdir(tmp_path / "billing")
    assert name.startswith("staging-CPU_PROFILE-") and name.endswith(".cpuprofile")
    names = cpuprofile_function_names(load_cpuprofile((tmp_path / "billing" / name).read_bytes()))
    assert "configured_workload" in names


def test_s3_from_storage_options_json(
    monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    options = s3_options(s3_endpoint)
    del options["config_kwargs"]  # the env path adds when_required checksums itself
    monkeypatch.setenv("OTEL_SERVICE_NAME", "search")
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_URL", f"s3://{bucket}/p/{{service.name}}")
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS", json.dumps(options))
    agent = configure()
    assert agent is not None
    [exporter] = processors_exporters(agent)
    assert isinstance(exporter, FsspecProfileExporter)
    assert options["secret"] not in repr(exporter)
    profile_once(agent)
    [obj] = boto3_client.list_objects_v2(Bucket=bucket)["Contents"]
    assert obj["Key"].startswith("p/search/CPU_PROFILE-")
    head = boto3_client.head_object(Bucket=bucket, Key=obj["Key"])
    assert head["Metadata"]["service-name"] == "search"


def test_bad_storage_options_named_never_echoed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_URL", f"file://{tmp_path}")
    monkeypatch.setenv(
        "OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS", '{"secret": "s3cr3t-VALUE", '
    )
    with caplog.at_level(logging.DEBUG):
        agent = configure()
    assert agent is not None
    named = [
        r for r in caplog.records if "OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS" in r.message
    ]
    assert len(named) == 1 and named[0].levelno == logging.WARNING
    assert "s3cr3t" not in caplog.text


def test_unknown_exporter_is_one_error_listing_known_names(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_PROFILES_EXPORTER", "nope,console")
    with caplog.at_level(logging.WARNING):
        agent = configure()
    assert agent is not None
    named = [r for r in caplog.records if "OTEL_PROFILES_EXPORTER" in r.message]
    assert len(named) == 1 and named[0].levelno == logging.ERROR
    assert "'nope'" in named[0].message
    for known in ("fsspec", "console", "none"):
        assert known in named[0].message
    assert [type(e) for e in processors_exporters(agent)] == [ConsoleProfileExporter]


def test_invalid_batch_delay_warns_and_uses_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_PROFILES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_BPP_SCHEDULE_DELAY", "abc")
    with caplog.at_level(logging.WARNING):
        agent = configure()
    assert agent is not None
    named = [r for r in caplog.records if "OTEL_BPP_SCHEDULE_DELAY" in r.message]
    assert len(named) == 1
    assert agent.processors[0].schedule_delay_millis == DEFAULT_SCHEDULE_DELAY_MILLIS


def test_invalid_key_template_warns_and_uses_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_URL", f"file://{tmp_path}")
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE", "{kind")
    with caplog.at_level(logging.WARNING):
        agent = configure()
    assert agent is not None
    named = [r for r in caplog.records if "OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE" in r.message]
    assert len(named) == 1
    [exporter] = processors_exporters(agent)
    assert exporter.key_template == "{kind}-{start_time}.{extension}"


PLUGIN = """
from otel_profiling.exporters import InMemoryProfileExporter

EXPORTER = InMemoryProfileExporter()


def make_exporter():
    return EXPORTER


def make_nothing():
    return object()
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """An installed plugin distribution declaring two ``otel_profiling_exporter`` entries."""
    where = tmp_path / "site"
    where.mkdir()
    (where / "otel_profiling_memplugin.py").write_text(PLUGIN)
    write_distribution(
        where,
        "otel-profiling-memplugin",
        {
            "otel_profiling_exporter": {
                "memory-test": "otel_profiling_memplugin:make_exporter",
                "broken-test": "otel_profiling_memplugin:make_nothing",
            }
        },
    )
    monkeypatch.syspath_prepend(str(where))
    importlib.invalidate_caches()
    module = importlib.import_module("otel_profiling_memplugin")
    yield module
    monkeypatch.delitem(__import__("sys").modules, "otel_profiling_memplugin")


def test_exporter_plugin_from_entry_point(monkeypatch: pytest.MonkeyPatch, plugin) -> None:  # type: ignore[no-untyped-def]
    assert {"memory-test", "broken-test"} <= set(known_exporter_names())
    monkeypatch.setenv("OTEL_PROFILES_EXPORTER", "memory-test")
    agent = configure()
    assert agent is not None
    profile_once(agent)
    [profile] = plugin.EXPORTER.get_finished_profiles()
    assert profile.kind.value == "CPU_PROFILE"
    assert "configured_workload" in cpuprofile_function_names(load_cpuprofile(profile.data))


def test_exporter_plugin_named_in_several_cases_is_one_exporter(
    monkeypatch: pytest.MonkeyPatch,
    plugin,  # type: ignore[no-untyped-def]
) -> None:
    """Plugin names match in any case, as built-in ones do: one name, one exporter."""
    monkeypatch.setenv(
        "OTEL_PROFILES_EXPORTER", "memory-test, MEMORY-TEST,Memory-Test,CONSOLE,console"
    )
    agent = configure()
    assert agent is not None
    assert [type(e) for e in processors_exporters(agent)] == [
        type(plugin.EXPORTER),
        ConsoleProfileExporter,
    ]
    assert processors_exporters(agent)[0] is plugin.EXPORTER
    assert exporter_name("MEMORY-TEST") == "memory-test"
    assert exporter_name("Fsspec") == "fsspec"
    assert exporter_name("Nope") == "Nope"  # unknown: named as given in the error


def test_exporter_plugin_returning_no_exporter_is_reported(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    plugin,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("OTEL_PROFILES_EXPORTER", "broken-test,memory-test")
    with caplog.at_level(logging.WARNING):
        agent = configure()
    assert agent is not None
    named = [r for r in caplog.records if "OTEL_PROFILES_EXPORTER" in r.message]
    assert len(named) == 1 and "not a ProfileExporter" in named[0].message
    assert processors_exporters(agent) == [plugin.EXPORTER]


def test_resource_is_the_tracer_providers() -> None:
    resource = Resource.create({"service.name": "traced", "team": "core"})
    provider = TracerProvider(resource=resource)
    assert resource_from_env(provider) is resource
    agent = configure(resource_from_env(provider))
    assert agent is not None and agent.resource is resource
    assert link_tracer_provider(agent, provider) is True
    assert link_tracer_provider(agent, provider) is False  # once per provider


def test_post_instrument_needs_profiling_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PROFILES_EXPORTER", "console")
    post_instrument()
    assert get_profiling_agent() is None
    monkeypatch.setenv("OTEL_PROFILING_ENABLED", "true")
    post_instrument()
    assert isinstance(get_profiling_agent(), ProfilingAgent)


def test_spool_follows_the_agents_service_not_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Profiles a configured agent could not send wait under its own service's directory.

    Truth: the resource given to ``configure`` names the service (``checkout``);
    the environment names another (``from-env``). ``start(exporter=...)`` too.
    """
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_PROFILING_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("OTEL_EXPORTER_FSSPEC_PROFILES_URL", f"file://{tmp_path}/out")
    agent = configure(resource=Resource({"service.name": "checkout"}))
    assert agent is not None
    other = ProfilingAgent(Resource({"service.name": "billing"}))
    other.start(exporter=ConsoleProfileExporter())
    try:
        for started, service in ((agent, "checkout"), (other, "billing")):
            [processor] = started.processors
            spool = processor.spool  # type: ignore[attr-defined]
            assert spool.directory.parent == tmp_path / "spool" / service, spool.directory
    finally:
        other.shutdown()
