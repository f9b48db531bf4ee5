"""``convert`` between formats and ``merge`` of many profiles, through the real command."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Tuple

import pytest
from clitools import cli, random_cpuprofile, speedscope_totals, utc
from support import child_env, make_profile, s3_options
from viewers import build_pprof, cpuprofile_self_times, load_cpuprofile, parse_pprof

from otel_profiling import ProfileKind
from otel_profiling.exporters import FsspecProfileExporter
from otel_profiling.formats import read_profile
from otel_profiling.formats.calltree import Frame
from otel_profiling.profilers import CpuProfiler, HeapProfiler


def devtools_total_us(data: bytes) -> float:
    return sum(cpuprofile_self_times(load_cpuprofile(data)).values())


def test_convert_cpuprofile_to_speedscope_and_back(tmp_path: Path) -> None:
    source = tmp_path / "in.cpuprofile"
    source.write_bytes(random_cpuprofile(7, start_us=1_000_000))
    expected = cpuprofile_self_times(load_cpuprofile(source.read_bytes()))

    result = cli("convert", str(source), str(tmp_path / "out.speedscope.json"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["format"] == "speedscope"
    weights = speedscope_totals((tmp_path / "out.speedscope.json").read_bytes())
    for name, micros in expected.items():
        if name != "(root)":
            assert weights[name] * 1e6 == pytest.approx(micros)

    back = cli(
        "convert",
        str(tmp_path / "out.speedscope.json"),
        str(tmp_path / "back.x"),
        "--to",
        "cpuprofile",
    )
    assert back.returncode == 0, back.stderr
    again = cpuprofile_self_times(load_cpuprofile((tmp_path / "back.x").read_bytes()))
    assert sum(again.values()) == pytest.approx(sum(expected.values()), abs=len(expected))


def test_convert_pprof_to_cpuprofile(tmp_path: Path) -> None:
    source = tmp_path / "p.pprof"
    source.write_bytes(
        build_pprof(
            [
                ([("main", "a.py", 1), ("work", "a.py", 4)], 2, 20_000_000),
                ([("main", "a.py", 1)], 1, 5_000_000),
            ]
        )
    )
    result = cli("convert", str(source), str(tmp_path / "p.cpuprofile"))
    assert result.returncode == 0, result.stderr
    times = cpuprofile_self_times(load_cpuprofile((tmp_path / "p.cpuprofile").read_bytes()))
    assert times["work"] == pytest.approx(20_000, abs=1) and times["main"] == pytest.approx(
        5_000, abs=1
    )


def test_convert_refuses_what_cannot_be_expressed(tmp_path: Path) -> None:
    heap = tmp_path / "h.pprof"
    heap.write_bytes(
        build_pprof(
            [([("alloc", "a.py", 1)], 1, 4096)],
            sample_types=(("samples", "count"), ("space", "bytes")),
        )
    )
    result = cli("convert", str(heap), str(tmp_path / "h.cpuprofile"))
    assert result.returncode == 1 and "holds bytes" in result.stderr
    unknown = cli("convert", str(heap), str(tmp_path / "h.png"))
    assert unknown.returncode == 1 and "--to" in unknown.stderr


def test_convert_to_pprof(tmp_path: Path) -> None:
    pytest.importorskip("otel_profiling.formats.pprof")
    source = tmp_path / "in.cpuprofile"
    source.write_bytes(random_cpuprofile(11))
    expected = cpuprofile_self_times(load_cpuprofile(source.read_bytes()))
    result = cli("convert", str(source), str(tmp_path / "out.pprof"), "--to", "pprof")
    assert result.returncode == 0, result.stderr
    parsed = parse_pprof((tmp_path / "out.pprof").read_bytes())
    assert parsed["types"][-1][1] == "nanoseconds"
    assert parsed["totals"][-1] == pytest.approx(
        sum(expected.values()) * 1000, rel=1e-6, abs=len(expected)
    )


KEPT_IN_WINDOW: list = [None]  # its slot exists: storing into it allocates nothing


def keep_two_megabytes() -> None:
    KEPT_IN_WINDOW[0] = bytearray(2 * 1024 * 1024)


@pytest.mark.parametrize("source_format", ["heapprofile", "pprof"])
def test_convert_heap_to_pprof_writes_only_the_counts_the_source_holds(
    tmp_path: Path, source_format: str
) -> None:
    """Truth: one bytearray kept, ``sys.getsizeof`` bytes in two tracemalloc blocks
    (the object and its buffer). A ``.heapprofile`` keeps no object counts, so
    its pprof has ``inuse_space`` alone; the heap profiler's own pprof keeps both.
    The function runs once before the window: from 3.12, once a profile or trace
    hook has been set in the process, a first run allocates the code's monitoring
    data (72 bytes), the interpreter's and not the function's."""
    keep_two_megabytes()
    KEPT_IN_WINDOW[0] = None
    profiler = HeapProfiler(format=source_format)
    profiler.start()
    keep_two_megabytes()
    source = tmp_path / f"in.{source_format}"
    source.write_bytes(profiler.stop())
    result = cli("convert", str(source), str(tmp_path / "out.pprof"), "--to", "pprof")
    assert result.returncode == 0, result.stderr
    parsed = parse_pprof((tmp_path / "out.pprof").read_bytes())
    counted = source_format == "pprof"
    assert [t for t, _ in parsed["types"]] == (["inuse_objects"] if counted else []) + [
        "inuse_space"
    ]
    assert parsed["self"]["keep_two_megabytes"] == sys.getsizeof(KEPT_IN_WINDOW[0])
    if counted:
        assert parsed["totals"][0] >= 2
    KEPT_IN_WINDOW[0] = None


def test_convert_json_counts_samples_only_where_the_source_kept_them(tmp_path: Path) -> None:
    """Truth: the .cpuprofile holds its list of samples; folded lines hold values only."""
    source = tmp_path / "in.cpuprofile"
    source.write_bytes(random_cpuprofile(13))
    taken = len(load_cpuprofile(source.read_bytes())["samples"])
    result = cli("convert", str(source), str(tmp_path / "out.folded"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["samples"] == taken
    again = cli("convert", str(tmp_path / "out.folded"), str(tmp_path / "out.pprof"), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["samples"] is None


def test_convert_to_folded(tmp_path: Path) -> None:
    pytest.importorskip("otel_profiling.formats.folded")
    source = tmp_path / "in.cpuprofile"
    source.write_bytes(random_cpuprofile(12))
    profile = load_cpuprofile(source.read_bytes())
    expected = sum(cpuprofile_self_times(profile).values())
    result = cli("convert", str(source), str(tmp_path / "out.folded"))
    assert result.returncode == 0, result.stderr
    total = 0.0
    for line in (tmp_path / "out.folded").read_text().splitlines():
        total += float(line.rsplit(" ", 1)[1])
    assert total == pytest.approx(expected, abs=len(profile["nodes"]))  # µs, rounded per stack


@pytest.fixture
def fleet(s3_endpoint: str, bucket: str):  # type: ignore[no-untyped-def]
    """30 CPU profiles from three containers plus one heap profile, in S3."""
    exporter = FsspecProfileExporter(
        f"s3://{bucket}/fleet/{{service.name}}", s3_options(s3_endpoint)
    )
    start = utc(2026, 11, 24, 10, 0, 0)
    inputs = []
    for i in range(30):
        data = random_cpuprofile(100 + i, stacks=80, start_us=int((start.timestamp() + i) * 1e6))
        inputs.append(data)
        exporter.write(
            make_profile(
                data,
                start=start + timedelta(seconds=i),
                service=f"pod-{i % 3}",
                duration=timedelta(seconds=2),
            )
        )
    exporter.write(
        make_profile(
            b'{"head": {}}',
            kind=ProfileKind.HEAP_PROFILE,
            start=start,
            service="pod-0",
            duration=timedelta(seconds=2),
        )
    )
    return bucket, inputs


def test_merge_totals_equal_the_sum_of_inputs(s3_endpoint: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket, inputs = fleet
    env = child_env(AWS_ENDPOINT_URL=s3_endpoint)
    out = tmp_path / "merged.cpuprofile"
    result = cli(
        "merge",
        f"s3://{bucket}/fleet",
        "--kind",
        "CPU_PROFILE",
        "-o",
        str(out),
        "--json",
        "--progress",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["inputs"] == 30
    expected_us = sum(devtools_total_us(data) for data in inputs)
    merged = load_cpuprofile(out.read_bytes())  # a valid DevTools profile
    assert sum(cpuprofile_self_times(merged).values()) == pytest.approx(expected_us, abs=1)
    assert summary["total"] * 1e6 == pytest.approx(expected_us, abs=1)
    # per function too
    per_input: dict = {}
    for data in inputs:
        for name, us in cpuprofile_self_times(load_cpuprofile(data)).items():
            per_input[name] = per_input.get(name, 0) + us
    for name, us in cpuprofile_self_times(merged).items():
        assert us == pytest.approx(per_input[name], abs=2)
    assert "30/30" in result.stderr  # progress

    # only one container's profiles, to speedscope
    pod = cli(
        "merge",
        f"s3://{bucket}/fleet",
        "--kind",
        "cpu",
        "--service",
        "pod-1",
        "-o",
        str(tmp_path / "pod1.speedscope.json"),
        "--json",
        env=env,
    )
    assert pod.returncode == 0, pod.stderr
    assert json.loads(pod.stdout)["inputs"] == 10
    expected_pod = sum(devtools_total_us(d) for i, d in enumerate(inputs) if i % 3 == 1)
    weights = speedscope_totals((tmp_path / "pod1.speedscope.json").read_bytes())
    assert sum(weights.values()) * 1e6 == pytest.approx(expected_pod, abs=1)


def test_merge_to_pprof_keeps_sample_counts(s3_endpoint: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("otel_profiling.formats.pprof")
    bucket, inputs = fleet
    env = child_env(AWS_ENDPOINT_URL=s3_endpoint)
    out = tmp_path / "merged.pprof"
    result = cli(
        "merge",
        f"s3://{bucket}/fleet",
        "--kind",
        "CPU_PROFILE",
        "--since",
        "2026-11-24T10:00:00Z",
        "-o",
        str(out),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    parsed = parse_pprof(out.read_bytes())
    samples = sum(len(load_cpuprofile(d)["samples"]) for d in inputs)
    assert parsed["totals"][0] == samples
    expected_ns = sum(devtools_total_us(d) for d in inputs) * 1000
    assert parsed["totals"][-1] == pytest.approx(expected_ns, abs=len(inputs) * 100)


def test_merge_refuses_mixed_kinds_and_empty_selection(
    s3_endpoint: str, fleet, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    bucket, _ = fleet
    env = child_env(AWS_ENDPOINT_URL=s3_endpoint)
    mixed = cli("merge", f"s3://{bucket}/fleet", "-o", str(tmp_path / "m.speedscope.json"), env=env)
    assert mixed.returncode == 1 and "--kind" in mixed.stderr
    none = cli(
        "merge",
        f"s3://{bucket}/fleet",
        "--kind",
        "cpu",
        "--until",
        "2020-01-01T00:00:00Z",
        "-o",
        str(tmp_path / "m.speedscope.json"),
        env=env,
    )
    assert none.returncode == 1 and "no profile matched" in none.stderr
    assert not (tmp_path / "m.speedscope.json").exists()


def test_merge_local_files(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        path = tmp_path / f"p{i}.cpuprofile"
        path.write_bytes(random_cpuprofile(i))
        files.append(path)
    out = tmp_path / "all.cpuprofile"
    result = cli("merge", *map(str, files), "-o", str(out))
    assert result.returncode == 0, result.stderr
    expected = sum(devtools_total_us(p.read_bytes()) for p in files)
    assert devtools_total_us(out.read_bytes()) == pytest.approx(expected, abs=1)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _profile_spinning_thread(fmt: str, seconds: float) -> Tuple[bytes, int]:
    """A CPU profile (sampling engine) of a thread named ``spinner`` that spins for
    ``seconds``, and that thread's ident."""
    profiler = CpuProfiler(format=fmt)  # type: ignore[arg-type]
    profiler.start()
    try:
        thread = threading.Thread(target=_spin, args=(seconds,), name="spinner")
        thread.start()
        thread.join()
    finally:
        data = profiler.stop()
    assert thread.ident is not None
    return data, thread.ident


def test_merge_pprof_with_cpuprofile_adds_up_the_same_thread(tmp_path: Path) -> None:
    """The sampling engine's pprof keeps the thread as labels, the ``.cpuprofile`` as a frame;
    read back, both hang the thread's stacks from ``spinner (thread …)``, so they add up."""
    seconds = 0.4
    for fmt in ("cpuprofile", "pprof"):
        data, ident = _profile_spinning_thread(fmt, seconds)
        (tmp_path / f"spin.{fmt}").write_bytes(data)
        tree = read_profile(data, f"spin.{fmt}")
        spinner = tree.root.children.get(Frame(f"spinner (thread {ident})"))
        assert spinner is not None, [frame.function for frame in tree.root.children]
        # wall clock: the thread ran `seconds` by perf_counter; sampling at 10 ms misses at
        # most a few intervals at each end, and a loaded machine stretches it: 50 % to 300 %.
        assert 0.5 * seconds <= spinner.total_value() <= 3 * seconds

    result = cli(
        "merge",
        str(tmp_path / "spin.cpuprofile"),
        str(tmp_path / "spin.pprof"),
        "-o",
        str(tmp_path / "merged.folded"),
    )
    assert result.returncode == 0, result.stderr
    roots = {line.split(";")[0] for line in (tmp_path / "merged.folded").read_text().splitlines()}
    # one `spinner` subtree for both inputs (idents differ per process, names do not)
    assert "spinner" in roots and not any(root.startswith("_spin") for root in roots), roots


def test_merge_of_one_kind_in_two_units_names_a_fix_that_works(tmp_path: Path) -> None:
    """A folded CPU profile (no unit: counts) among .cpuprofile ones is a CPU_PROFILE too:
    ``--kind`` cannot separate them, so the error must offer what can (a glob, names)."""
    fleet = tmp_path / "fleet"
    (fleet / "a").mkdir(parents=True)
    (fleet / "b").mkdir()
    (fleet / "a" / "CPU_PROFILE-2026-11-24T10:00:00.000Z.cpuprofile").write_bytes(
        random_cpuprofile(1)
    )
    (fleet / "b" / "CPU_PROFILE-2026-11-24T11:00:00.000Z.folded").write_text("main;work 10\n")
    mixed = cli("merge", str(fleet), "--kind", "cpu", "-o", str(tmp_path / "m.pprof"))
    assert mixed.returncode == 1 and mixed.stderr.count("\n") == 1, mixed.stderr
    assert "holds sample counts but earlier inputs hold time" in mixed.stderr
    assert "a glob" in mixed.stderr and "CPU time" not in mixed.stderr  # the profile is wall time
    # the fix the message gives works
    picked = cli(
        "merge", str(fleet / "*" / "CPU_PROFILE-*.cpuprofile"), "-o", str(tmp_path / "m.pprof")
    )
    assert picked.returncode == 0, picked.stderr


def test_a_profile_on_stdout_is_not_mixed_with_json(tmp_path: Path) -> None:
    """``-o -`` puts the profile's bytes on stdout, so ``--json`` would be appended to them:
    refused before any work, as ``diff`` refuses it, and stdout is left empty."""
    profile = tmp_path / "one.cpuprofile"
    profile.write_bytes(random_cpuprofile(3))
    for args in (
        ["merge", str(profile), "-o", "-", "--to", "cpuprofile", "--json"],
        ["convert", str(profile), "-", "--to", "folded", "--json"],
        ["get", profile.as_uri(), "-o", "-", "--json"],
    ):
        result = cli(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stdout == "", args
        assert "-o - and --json would both print on stdout" in result.stderr, result.stderr
    alone = cli("merge", str(profile), "-o", "-", "--to", "cpuprofile")  # each alone is fine
    assert alone.returncode == 0, alone.stderr
    merged = read_profile(alone.stdout.encode(), "merged.cpuprofile")
    assert merged.total == pytest.approx(read_profile(profile.read_bytes(), "one").total)
