"""``merge`` and ``diff`` on Dask: a real ``LocalCluster`` of worker processes and moto's S3.

The cluster's workers get the store's endpoint and credentials in their
environment; the command that drives them gets none, so everything that
touches the store (listing included) must run on the workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from clitools import cli, random_cpuprofile, utc
from support import APPS, child_env, make_profile
from viewers import cpuprofile_self_times, load_cpuprofile

from otel_profiling.exporters import FsspecProfileExporter

pytest.importorskip("distributed", reason="the `dask` extra is not installed")

PROFILES = 24
GOOD_IN_BROKEN = 10


def _store_env(endpoint: str) -> Dict[str, str]:
    if os.environ.get("AWS_ENDPOINT_URL"):  # a real server: its credentials are in the env
        return {"AWS_ENDPOINT_URL": endpoint}
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing-access-key",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _without_store(**extra: str) -> Dict[str, str]:
    """The command's environment with no way to reach the store by itself."""
    env = {k: v for k, v in child_env().items() if not k.startswith("AWS_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def store(s3_endpoint: str) -> Iterator[Tuple[str, Dict[str, str], List[bytes]]]:
    """CPU profiles of three pods under ``fleet/``; ten good and one corrupt under ``broken/``."""
    env = _store_env(s3_endpoint)
    options: Dict[str, Any] = {"endpoint_url": s3_endpoint}
    if "AWS_ACCESS_KEY_ID" in env:
        options.update(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"])
    options["config_kwargs"] = {
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    bucket = f"dask-{os.getpid()}"
    start = utc(2026, 11, 24, 10, 0, 0)
    fleet = FsspecProfileExporter(f"s3://{bucket}/fleet/{{service.name}}", options)
    inputs = []
    for i in range(PROFILES):
        data = random_cpuprofile(500 + i, stacks=120, start_us=int((start.timestamp() + i) * 1e6))
        inputs.append(data)
        fleet.write(
            make_profile(
                data,
                start=start + timedelta(seconds=i),
                service=f"pod-{i % 3}",
                duration=timedelta(seconds=2),
            )
        )
    broken = FsspecProfileExporter(f"s3://{bucket}/broken", options)
    for i in range(GOOD_IN_BROKEN):
        broken.write(
            make_profile(
                inputs[i],
                start=start + timedelta(seconds=i),
                service="checkout",
                duration=timedelta(seconds=2),
            )
        )
    broken.write(
        make_profile(
            b'{"nodes": [{"id"',
            start=start + timedelta(minutes=5),
            service="checkout",
            duration=timedelta(seconds=2),
        )
    )
    yield bucket, env, inputs


class Cluster:
    """``apps/dask_cluster.py``: a LocalCluster of two worker processes in its own process."""

    def __init__(self, env: Dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(APPS / "dask_cluster.py"), "2"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self.proc.stdout is not None
        self.scheduler_address = self.proc.stdout.readline().strip()
        assert self.scheduler_address.startswith("tcp://127.0.0.1:"), self.scheduler_address

    def task_prefixes(self) -> List[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("prefixes\n")
        self.proc.stdin.flush()
        return list(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        try:
            self.proc.communicate(timeout=60)  # end of input closes the cluster
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def cluster(store) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    """Two worker processes that can reach the store through their environment."""
    _, env, _ = store
    running = Cluster(child_env(**env))
    try:
        yield running
    finally:
        running.close()


def merge(*args: str, env: Dict[str, str]) -> Tuple[int, Dict[str, Any], str]:
    result = cli("merge", *args, "--json", env=env, timeout=300)
    summary = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.returncode, summary, result.stderr


def stack_times(data: bytes) -> Dict[Tuple[str, ...], float]:
    """µs per stack of function names, read as DevTools reads the file."""
    profile = load_cpuprofile(data)
    by_id = {node["id"]: node for node in profile["nodes"]}
    parent = {child: node["id"] for node in profile["nodes"] for child in node.get("children", [])}
    out: Dict[Tuple[str, ...], float] = {}
    stamps, now = [], profile["startTime"]
    for delta in profile["timeDeltas"]:
        now += delta
        stamps.append(now)
    stamps.append(profile["endTime"])
    for index, sample in enumerate(profile["samples"]):
        path, node = [], sample
        while node in parent:
            path.append(by_id[node]["callFrame"]["functionName"])
            node = parent[node]
        key = tuple(reversed(path))
        out[key] = out.get(key, 0.0) + stamps[index + 1] - stamps[index]
    return out


def test_merge_on_a_scheduler_is_exactly_the_local_merge(store, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket, env, inputs = store
    here = tmp_path / "local.cpuprofile"
    code, local, err = merge(f"s3://{bucket}/fleet", "-o", str(here), env=child_env(**env))
    assert code == 0, err
    there = tmp_path / "dask.cpuprofile"
    code, remote, err = merge(
        f"s3://{bucket}/fleet",
        "--scheduler",
        cluster.scheduler_address,
        "-o",
        str(there),
        env=_without_store(),
    )
    assert code == 0, err
    assert remote["inputs"] == remote["merged"] == PROFILES and remote["failed"] == []
    for key in ("total", "samples", "unit", "size"):
        assert remote[key] == local[key], key
    assert there.read_bytes() == here.read_bytes()
    # the same stacks and times, and they are the inputs' sums (DevTools' reading, µs)
    merged = stack_times(there.read_bytes())
    assert merged == stack_times(here.read_bytes())
    expected: Dict[str, float] = {}
    for data in inputs:
        for name, us in cpuprofile_self_times(load_cpuprofile(data)).items():
            expected[name] = expected.get(name, 0.0) + us
    got = cpuprofile_self_times(load_cpuprofile(there.read_bytes()))
    assert set(got) == set(expected)
    for name, us in expected.items():
        assert got[name] == pytest.approx(us, abs=len(inputs))  # µs rounding per input node
    assert "merge_chunk" in cluster.task_prefixes()  # it ran as Dask tasks


def test_scheduler_from_the_environment_and_filters(store, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket, env, inputs = store
    out = tmp_path / "pod1.cpuprofile"
    code, summary, err = merge(
        f"s3://{bucket}/fleet",
        "--service",
        "pod-1",
        "--until",
        "2026-11-24T10:00:15Z",
        "--progress",
        "-o",
        str(out),
        env=_without_store(DASK_SCHEDULER_ADDRESS=cluster.scheduler_address),
    )
    assert code == 0, err
    assert "100% Completed" in err  # Dask's progress bar, on stderr: stdout stays JSON
    chosen = [d for i, d in enumerate(inputs) if i % 3 == 1 and i <= 15]
    assert summary["merged"] == len(chosen)
    expected = sum(sum(cpuprofile_self_times(load_cpuprofile(d)).values()) for d in chosen)
    assert summary["total"] * 1e6 == pytest.approx(expected, abs=len(chosen))


def test_local_cluster_of_two_workers_with_storage_options(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket, env, _ = store
    here = tmp_path / "local.pprof"
    code, local, err = merge(f"s3://{bucket}/fleet", "-o", str(here), env=child_env(**env))
    assert code == 0, err
    there = tmp_path / "workers.pprof"
    credentials = []
    if "AWS_ACCESS_KEY_ID" in env:
        credentials = [
            "--storage-option",
            f"key={env['AWS_ACCESS_KEY_ID']}",
            "--storage-option",
            f"secret={env['AWS_SECRET_ACCESS_KEY']}",
        ]
    code, remote, err = merge(
        f"s3://{bucket}/fleet",
        "--workers",
        "2",
        "--endpoint-url",
        env["AWS_ENDPOINT_URL"],
        *credentials,
        "-o",
        str(there),
        env=_without_store(),
    )
    assert code == 0, err
    assert there.read_bytes() == here.read_bytes()
    assert remote["total"] == local["total"] and remote["merged"] == PROFILES
    for secret in credentials[1::2]:
        assert secret.split("=", 1)[1] not in err


def test_a_corrupt_object_is_named_and_the_rest_merged(store, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket, env, inputs = store
    outputs = {}
    for how, extra, run_env in (
        ("local", [], child_env(**env)),
        ("dask", ["--scheduler", cluster.scheduler_address], _without_store()),
    ):
        out = tmp_path / f"{how}.cpuprofile"
        code, summary, err = merge(f"s3://{bucket}/broken", *extra, "-o", str(out), env=run_env)
        assert code == 3, (how, err)  # partial: some inputs left out
        assert summary["inputs"] == GOOD_IN_BROKEN + 1
        assert summary["merged"] == GOOD_IN_BROKEN
        (failure,) = summary["failed"]
        assert failure["url"].startswith(f"s3://{bucket}/broken/CPU_PROFILE-2026-11-24T10:05:00")
        assert "not a readable profile" in failure["error"]
        assert f"skipped {failure['url']}" in err
        outputs[how] = out.read_bytes()
        expected = sum(
            sum(cpuprofile_self_times(load_cpuprofile(d)).values()) for d in inputs[:GOOD_IN_BROKEN]
        )
        assert summary["total"] * 1e6 == pytest.approx(expected, abs=GOOD_IN_BROKEN)
    assert outputs["dask"] == outputs["local"]


def test_diff_on_a_scheduler_is_the_local_diff(store, cluster) -> None:  # type: ignore[no-untyped-def]
    bucket, env, _ = store
    sides = [f"s3://{bucket}/fleet/pod-0", f"s3://{bucket}/fleet/pod-1"]
    local = cli("diff", *sides, "--json", env=child_env(**env))
    assert local.returncode == 0, local.stderr
    remote = cli(
        "diff", *sides, "--json", "--scheduler", cluster.scheduler_address, env=_without_store()
    )
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout) == json.loads(local.stdout)


def test_without_dask_the_options_name_the_extra(tmp_path: Path) -> None:
    # an installation without the extra: `import distributed` fails as it would
    shadow = tmp_path / "no_dask"
    shadow.mkdir()
    (shadow / "distributed.py").write_text("raise ImportError(\"No module named 'distributed'\")\n")
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), env["PYTHONPATH"]])
    profile = tmp_path / "one.cpuprofile"
    profile.write_bytes(random_cpuprofile(1))
    for args in (
        ["merge", str(profile), "-o", str(tmp_path / "out.cpuprofile"), "--workers", "2"],
        ["diff", str(profile), str(profile), "--scheduler", "tcp://127.0.0.1:1"],
    ):
        result = cli(*args, env=env)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "needs Dask: pip install 'otel-profiling-agent[dask]'" in result.stderr
    assert not (tmp_path / "out.cpuprofile").exists()


def test_relative_local_paths_on_local_workers(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    for i in range(5):
        (folder / f"CPU_PROFILE-2026-11-24T10:00:0{i}.000Z.cpuprofile").write_bytes(
            random_cpuprofile(900 + i)
        )
    (tmp_path / "extra.cpuprofile").write_bytes(random_cpuprofile(999))
    outputs = []
    for extra in ([], ["--workers", "2"]):
        result = cli(
            "merge",
            "profiles",
            "extra.cpuprofile",
            "-o",
            "out.cpuprofile",
            *extra,
            cwd=str(tmp_path),
        )
        assert result.returncode == 0, result.stderr
        outputs.append((tmp_path / "out.cpuprofile").read_bytes())
    assert outputs[0] == outputs[1]
    assert len(stack_times(outputs[0])) > 100


def test_a_refusal_on_local_workers_is_one_line(tmp_path: Path) -> None:
    """A user error found on a worker (what to list, what adds up) reaches the user as the
    local command's one line, not after Dask's "Compute Failed" block with a traceback."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    cpu = folder / "CPU_PROFILE-2026-11-24T10:00:00.000Z.cpuprofile"
    cpu.write_bytes(random_cpuprofile(7))
    heap = folder / "HEAP_PROFILE-2026-11-24T10:00:01.000Z.heapprofile"
    heap.write_text(
        json.dumps(
            {
                "head": {
                    "callFrame": {"functionName": "(root)", "url": "", "lineNumber": -1},
                    "selfSize": 0,
                    "id": 1,
                    "children": [
                        {
                            "callFrame": {"functionName": "load", "url": "/app/a.py"},
                            "selfSize": 4096,
                            "id": 2,
                            "children": [],
                        }
                    ],
                }
            }
        )
    )
    out = tmp_path / "out.pprof"
    for sources, wanted in (
        ([str(folder)], "the sources hold several kinds"),  # refused while listing
        ([str(cpu), str(heap)], "holds memory but earlier inputs hold time"),  # while adding
    ):
        result = cli("merge", *sources, "-o", str(out), "--workers", "1")
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("otel-profiling: error: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert wanted in result.stderr
    assert not out.exists()
