"""The README's Python examples run as written and do what the text around them says.

Each ```python block of README.md is taken from the file itself and run in a child
Python with a bounded timeout. A fragment that names things "your setup" provides
(``agent``, ``provider``, ``run_import``) gets them from a prelude here; the only
changes made to a snippet's text are the ones listed in its case: the S3 endpoint
and bucket (moto's server on a free loopback port instead of MinIO on 9000), a
fixed HTTP port replaced by a free one, and the comment standing for "the
application runs" replaced by two SIGUSR2 deliveries around some work. After the
snippet, the case's checks assert what the README promises next to it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple
from urllib.parse import urlsplit

import pytest
from support import ROOT, child_env, free_port

README = ROOT / "README.md"
TIMEOUT = 120  # seconds per snippet: each takes about 2-5 s alone; a loaded machine is slower
KEY = r"CPU_PROFILE-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\.cpuprofile"  # Object naming


def python_snippets() -> List[Tuple[int, str]]:
    """(line number, code) of every ```python block in the README."""
    lines = README.read_text().splitlines()
    snippets: List[Tuple[int, str]] = []
    start = None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```python":
            start = number
        elif start is not None and line.startswith("```"):
            assert line.strip() == "```", f"README.md:{number}: text after a closing fence"
            snippets.append((start, "\n".join(lines[start : number - 1])))
            start = None
    assert start is None, f"README.md:{start}: code block never closed"
    return snippets


TOGGLE = """
import os as _os, signal as _signal, time as _time

def _toggle_twice():
    \"\"\"SIGUSR2 starts the profile, work runs, SIGUSR2 stops it (as `kill -USR2` would).\"\"\"
    _os.kill(_os.getpid(), _signal.SIGUSR2)
    _deadline = _time.monotonic() + 30
    while not agent.active_profiles and _time.monotonic() < _deadline:
        _time.sleep(0.01)
    _end = _time.monotonic() + 0.3
    while _time.monotonic() < _end:
        sum(i * i for i in range(1000))
    _os.kill(_os.getpid(), _signal.SIGUSR2)
    while agent.active_profiles and _time.monotonic() < _deadline:
        _time.sleep(0.01)
"""

S3_CHECK = """
import boto3 as _boto3, re as _re
_s3 = _boto3.client("s3", endpoint_url={endpoint!r}, region_name="us-east-1")
_keys = [o["Key"] for o in _s3.list_objects_v2(Bucket={bucket!r}).get("Contents", [])]
assert len(_keys) == 1 and _re.fullmatch({pattern!r}, _keys[0]), _keys
_meta = _s3.head_object(Bucket={bucket!r}, Key=_keys[0])["Metadata"]
assert _meta["profile-kind"] == "CPU_PROFILE" and _meta["profile-trigger"] == "signal:SIGUSR2"
assert _meta["attr-profiling.cpu.clock"] == {clock!r}, _meta
print("checked", _keys[0])
"""


@dataclass
class Case:
    """How one snippet is run: what it needs first, what is swapped, what is checked."""

    marker: str  # a line only this snippet has
    prelude: str = ""
    swaps: Dict[str, str] = field(default_factory=dict)
    checks: str = ""
    env: Dict[str, str] = field(default_factory=dict)
    top_level_await: bool = False
    returncode: int = 0


def s3_cases(endpoint: str, bucket: str, first: str) -> List[Case]:
    url = urlsplit(endpoint)
    credentials = {
        'access_key="accessKey"': f"access_key={os.environ['AWS_ACCESS_KEY_ID']!r}",
        'secret_key="secretKey"': f"secret_key={os.environ['AWS_SECRET_ACCESS_KEY']!r}",
    }
    imports = "\n".join(line for line in first.splitlines() if line.startswith(("import", "from")))
    return [
        Case(  # the S3Exporter example: `kill -USR2` twice uploads s3://test/CPU_PROFILE-....cpuprofile
            marker="agent.start(exporter=S3Exporter(",
            prelude=TOGGLE,
            swaps={
                'end_point="127.0.0.1", port=9000': f"end_point={url.hostname!r}, port={url.port}",
                'bucket="test"': f"bucket={bucket!r}",
                "# ... the application runs": "_toggle_twice()  # the application runs",
                **credentials,
            },
            checks=S3_CHECK.format(endpoint=endpoint, bucket=bucket, pattern=KEY, clock="wall"),
        ),
        Case(  # the same with an fsspec URL: placeholders filled from the resource
            marker='FsspecProfileExporter("s3://test/profiles/{service.name}/{host.name}",',
            prelude=imports + "\n" + TOGGLE,
            swaps={
                "s3://test/": f"s3://{bucket}/",
                "http://127.0.0.1:9000": endpoint,
            },
            checks="_toggle_twice()\nagent.shutdown()\n"
            + S3_CHECK.format(
                endpoint=endpoint,
                bucket=bucket,
                pattern=rf"profiles/readme-svc/[^/]+/{KEY}",
                clock="cpu",
            ),
            env={"OTEL_SERVICE_NAME": "readme-svc", "AWS_ENDPOINT_URL": endpoint},
        ),
    ]


def local_cases(tmp_path: Path) -> List[Case]:
    profiles = tmp_path / "profiles"
    port = free_port()
    return [
        Case(  # a storage backend is registered by protocol, as fsspec registers filesystems
            marker='@register_backend("hdfs", extra=None)',
            checks=textwrap.dedent(
                """
                from otel_profiling.exporters.backends import backend_class
                assert backend_class("hdfs") is HdfsBackend
                """
            ),
        ),
        Case(  # every trigger kind registered at once; the HTTP one answers
            marker="agent.register(IntervalTrigger(every=60, duration=10), cpu)",
            prelude=textwrap.dedent(
                f"""
                from otel_profiling import ProfilingAgent
                from otel_profiling.exporters import FsspecProfileExporter
                agent = ProfilingAgent()
                agent.add_profile_processor(
                    __import__("otel_profiling.processors", fromlist=["x"]).SimpleProfileProcessor(
                        FsspecProfileExporter("file://{profiles}")))
                """
            ),
            swaps={"HttpTrigger(port=6060)": f"HttpTrigger(port={port})"},
            checks=textwrap.dedent(
                f"""
                import json, urllib.request
                base = "http://127.0.0.1:{port}/debug/profile"
                listing = json.load(urllib.request.urlopen(base + "/"))
                available = {{e["path"] for e in listing["endpoints"] if e["available"]}}
                assert {{"/debug/profile/cpu", "/debug/profile/snapshot"}} <= available, listing
                answer = urllib.request.urlopen(base + "/cpu?seconds=0.2")
                assert answer.status == 200
                assert 'filename="CPU_PROFILE-' in answer.headers["Content-Disposition"]
                agent.shutdown()
                import pathlib
                names = sorted(p.name for p in pathlib.Path({str(profiles)!r}).iterdir())
                assert any(n.startswith("CPU_PROFILE-") for n in names), names
                """
            ),
        ),
        Case(  # agent.profile as a block, a decorator, on async functions and in a coroutine
            marker='with agent.profile(CpuProfiler(), name="nightly-import"',
            prelude=textwrap.dedent(
                """
                import asyncio
                from otel_profiling import ProfilingAgent
                from otel_profiling.exporters import InMemoryProfileExporter
                from otel_profiling.processors import SimpleProfileProcessor
                from otel_profiling.profilers import CpuProfiler
                finished = InMemoryProfileExporter()
                agent = ProfilingAgent()
                agent.add_profile_processor(SimpleProfileProcessor(finished))
                agent.start()
                def run_import():
                    sum(i * i for i in range(100_000))
                async def handle_batch():
                    await asyncio.sleep(0.05)
                """
            ),
            checks=textwrap.dedent(
                """
                profile = handle.profile
                assert profile.name == "nightly-import" and profile.attributes["job.id"] == 42
                assert profile.attributes["profiling.reason"] == "agent.profile(nightly-import)"
                rebuild_index()
                await fetch_all()
                names = [p.name for p in finished.get_finished_profiles()]
                assert names == ["nightly-import", "batch", "rebuild-index", "fetch_all"], names
                agent.shutdown()
                """
            ),
            top_level_await=True,
        ),
        Case(  # three lines next to the user's tracer provider: profiles and traces linked
            marker="provider.add_span_processor(ProfilingSpanProcessor())",
            prelude=textwrap.dedent(
                """
                from opentelemetry import trace
                from opentelemetry.sdk.resources import Resource
                from opentelemetry.sdk.trace import TracerProvider
                from opentelemetry.sdk.trace.export import BatchSpanProcessor
                # the application's own span exporter; any SpanExporter does here
                from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                    InMemorySpanExporter as OTLPSpanExporter,
                )
                provider = TracerProvider(resource=Resource.create({"service.name": "traced"}))
                trace.set_tracer_provider(provider)
                """
            ),
            checks=textwrap.dedent(
                """
                import pathlib
                from otel_profiling import get_profiling_agent
                from otel_profiling.profilers import CpuProfiler
                agent = get_profiling_agent()
                assert agent is configure()  # idempotent
                assert agent.resource.attributes["service.name"] == "traced"
                with agent.profile(CpuProfiler()) as handle:
                    with trace.get_tracer("readme").start_as_current_span("request") as span:
                        sum(i * i for i in range(100_000))
                url = span.attributes["profiling.profile.url"]
                trace_id = trace.format_trace_id(span.get_span_context().trace_id)
                assert handle.profile.attributes["profiling.trace_ids"] == (trace_id,)
                agent.shutdown()
                assert pathlib.Path(url.removeprefix("file://")).is_file(), url
                """
            ),
            env={"OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{profiles}"},
        ),
        Case(  # gunicorn.conf.py: the hook makes SIGTERM export the open window, then end
            marker="def post_worker_init(worker):",
            prelude="import os, signal, time\n",
            checks=textwrap.dedent(
                """
                from otel_profiling import configure
                agent = configure()  # OTEL_PROFILING_AT_START: a window is open
                post_worker_init(None)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(60)  # the handler ends the process by SIGTERM before this returns
                """
            ),
            env={
                "OTEL_EXPORTER_FSSPEC_PROFILES_URL": f"file://{profiles}",
                "OTEL_PROFILING_AT_START": "true",
                "OTEL_PROFILING_SIGNAL": "none",
            },
            returncode=-15,  # still ended by SIGTERM, as a parent expects
        ),
    ]


RUNNER = """
import ast, asyncio, sys
source = open(sys.argv[1]).read()
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


def run_case(case: Case, snippet: str, tmp_path: Path) -> subprocess.CompletedProcess:
    for old, new in case.swaps.items():
        assert old in snippet, f"the README snippet no longer has {old!r}"
        snippet = snippet.replace(old, new)
    script = tmp_path / f"snippet_{uuid.uuid4().hex[:8]}.py"
    script.write_text("\n".join([case.prelude, snippet, case.checks]))
    command = [sys.executable, str(script)]
    if case.top_level_await:
        command = [sys.executable, "-c", RUNNER, str(script)]
    return subprocess.run(
        command,
        env=child_env(**case.env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_every_python_snippet_has_a_case(tmp_path: Path) -> None:
    snippets = python_snippets()
    first = snippets[0][1]
    cases = s3_cases("http://127.0.0.1:1", "b", first) + local_cases(tmp_path)
    for line, snippet in snippets:
        matching = [c for c in cases if c.marker in snippet]
        assert len(matching) == 1, f"README.md:{line}: give this snippet one case here"


@pytest.mark.parametrize(
    "index", range(5), ids=["backend", "triggers", "agent-profile", "otel-setup", "gunicorn-conf"]
)
def test_local_snippet(index: int, tmp_path: Path) -> None:
    case = local_cases(tmp_path)[index]
    (snippet,) = [code for _, code in python_snippets() if case.marker in code]
    result = run_case(case, snippet, tmp_path)
    assert result.returncode == case.returncode, result.stderr
    if case.marker == "def post_worker_init(worker):":
        (profile,) = (tmp_path / "profiles").iterdir()
        assert re.fullmatch(KEY, profile.name), profile.name


@pytest.mark.parametrize("index", range(2), ids=["S3Exporter", "fsspec-url"])
def test_s3_snippet(index: int, s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    snippets = python_snippets()
    case = s3_cases(s3_endpoint, bucket, snippets[0][1])[index]
    (snippet,) = [code for _, code in snippets if case.marker in code]
    result = run_case(case, snippet, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "checked" in result.stdout
