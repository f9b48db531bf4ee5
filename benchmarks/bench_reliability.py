"""Reliability benchmarks: enqueue latency, batch throughput to S3 and to local files,
memory with the backend down.

Run from the repository root (moto[server], boto3 and s3fs installed)::

    python benchmarks/bench_reliability.py [latency|throughput|local|memory|all]

Each part prints its numbers next to the baseline measured in the same run
(medians of interleaved rounds).
"""

from __future__ import annotations

import gc
import itertools
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, List, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_profiling import Profile, ProfileKind  # noqa: E402
from otel_profiling.exporters import (  # noqa: E402
    InMemoryProfileExporter,
    ProfileExportResult,
    S3Exporter,
)
from otel_profiling.formats import default_format  # noqa: E402
from otel_profiling.processors import BatchProfileProcessor  # noqa: E402
from otel_profiling.processors.spool import Spool  # noqa: E402

KEY, SECRET = "bench-access-key", "bench-secret-key"
CHECKSUMS = {
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}


_START = datetime(2026, 11, 24, tzinfo=timezone.utc)
_counter = itertools.count()


def profile(payload: bytes) -> Profile:
    """A profile with a start time of its own (a distinct key, as in a real service)."""
    start = _START + timedelta(milliseconds=next(_counter))
    p = Profile(ProfileKind.CPU_PROFILE, default_format(ProfileKind.CPU_PROFILE), start_time=start)
    p.end(payload)
    return p


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto did not start")


# -- on_end latency ------------------------------------------------------------------
class Blocked(InMemoryProfileExporter):
    """The exporter is stuck: the application thread must not notice."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        self.gate.wait()
        return ProfileExportResult.SUCCESS


def bench_latency(n: int = 20_000) -> None:
    exporter = Blocked()
    with tempfile.TemporaryDirectory() as tmp:
        processor = BatchProfileProcessor(
            exporter, max_queue_size=1024, max_export_batch_size=64, spool=Spool(tmp)
        )
        profiles = [profile(b"x" * 1024) for _ in range(n)]
        samples: List[float] = []
        clock = time.perf_counter_ns
        gc.disable()
        for p in profiles:
            t0 = clock()
            processor.on_end(p)
            samples.append((clock() - t0) / 1000)
        gc.enable()
        baseline: List[float] = []
        d: List[Profile] = []
        for p in profiles:  # baseline: a bare deque-like append under a lock
            t0 = clock()
            with threading.Lock():
                d.append(p)
            baseline.append((clock() - t0) / 1000)
        exporter.gate.set()
        processor.shutdown(5_000)
    q = statistics.quantiles(samples, n=100)
    b = statistics.quantiles(baseline, n=100)
    print(f"on_end latency, exporter blocked, {n} calls (queue full, dropping oldest):")
    print(f"  p50 {q[49]:.2f} us  p99 {q[98]:.2f} us  max {max(samples):.1f} us")
    print(f"  baseline list.append under a lock: p50 {b[49]:.2f} us  p99 {b[98]:.2f} us")
    print(f"  dropped {processor.dropped_profiles}")


# -- throughput -----------------------------------------------------------------------
def bench_throughput(count: int = 200, size: int = 50 * 1024, rounds: int = 5) -> None:
    import boto3
    import fsspec
    from botocore.config import Config

    proc, endpoint = moto()
    try:
        payloads = [os.urandom(size) for _ in range(count)]
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            config=Config(**CHECKSUMS),
        )
        results: Dict[str, List[float]] = {"boto3": [], "fs.pipe": [], "processor": []}
        for _ in range(rounds):
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            client.create_bucket(Bucket=bucket)
            t0 = time.perf_counter()
            for i, data in enumerate(payloads):
                client.put_object(Bucket=bucket, Key=f"boto3/{i}", Body=data)
            results["boto3"].append(time.perf_counter() - t0)

            fs = fsspec.filesystem(
                "s3",
                endpoint_url=endpoint,
                key=KEY,
                secret=SECRET,
                config_kwargs=CHECKSUMS,
                skip_instance_cache=True,
            )
            fs.ls(bucket)  # connected, like the exporter below
            batch = {f"{bucket}/pipe/{i}": data for i, data in enumerate(payloads)}
            t0 = time.perf_counter()
            fs.pipe(batch)
            results["fs.pipe"].append(time.perf_counter() - t0)

            with tempfile.TemporaryDirectory() as tmp:
                exporter = S3Exporter(
                    bucket=bucket,
                    end_point=endpoint,
                    use_ssl=False,
                    access_key=KEY,
                    secret_key=SECRET,
                    prefix="processor",
                )
                exporter.export([profile(b"warm-up")])  # a running service: connected, bucket known
                processor = BatchProfileProcessor(
                    exporter, max_export_batch_size=count, spool=Spool(tmp)
                )
                profiles = [profile(data) for data in payloads]
                t0 = time.perf_counter()
                for p in profiles:
                    processor.on_end(p)
                assert processor.force_flush(120_000)
                results["processor"].append(time.perf_counter() - t0)
                assert processor.exported_profiles == count, processor.exported_profiles
                assert processor.spooled_profiles == 0
                processor.shutdown()
        median = {name: statistics.median(times) for name, times in results.items()}
        print(f"throughput, {count} profiles x {size // 1024} KB to moto (another process):")
        print(f"  medians of {rounds} interleaved rounds")
        for name, seconds in median.items():
            print(f"  {name:10s} {seconds:6.2f} s  ({count / seconds:6.1f} profiles/s)")
        print(f"  processor vs sequential boto3: {median['boto3'] / median['processor']:.2f}x")
        print(f"  processor vs bare fs.pipe:     {median['fs.pipe'] / median['processor']:.2f}x")
    finally:
        proc.terminate()
        proc.wait()


# -- local files ----------------------------------------------------------------------------
def bench_local(count: int = 200, size: int = 50 * 1024, rounds: int = 7) -> None:
    """One export of ``count`` profiles to a local directory: eight writers against one."""
    from otel_profiling.exporters import FsspecProfileExporter

    payloads = [os.urandom(size) for _ in range(count)]
    results: Dict[str, List[float]] = {"one at a time": [], "8 writers": []}
    for _ in range(rounds):
        for name, concurrency in (("one at a time", 1), ("8 writers", 8)):
            with tempfile.TemporaryDirectory(dir=ROOT) as tmp:  # the disk the project is on
                exporter = FsspecProfileExporter(f"file://{tmp}/out", max_concurrency=concurrency)
                exporter.export([profile(b"warm-up")])  # directory made, writer started
                profiles = [profile(data) for data in payloads]
                t0 = time.perf_counter()
                assert exporter.export_unsent(profiles) == []
                results[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(times) for name, times in results.items()}
    print(f"local files, {count} profiles x {size // 1024} KB, each written and fsync'ed:")
    print(f"  medians of {rounds} interleaved rounds")
    for name, seconds in median.items():
        print(f"  {name:14s} {seconds:6.3f} s  ({count / seconds:7.1f} profiles/s)")
    print(f"  8 writers vs one: {median['one at a time'] / median['8 writers']:.2f}x")


# -- memory with the backend down ----------------------------------------------------------
def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_memory(total_mb: int = 1024, size_mb: int = 1, queue_mb: int = 64) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        exporter = S3Exporter(
            bucket="down",
            end_point=dead,
            use_ssl=False,
            access_key=KEY,
            secret_key=SECRET,
            timeout_millis=2_000,
        )
        processor = BatchProfileProcessor(
            exporter,
            schedule_delay_millis=50,
            max_queue_bytes=queue_mb * 2**20,
            spool=Spool(Path(tmp) / "spool", max_bytes=256 * 2**20),
        )
        processor.on_end(profile(b"warm-up"))  # load botocore, make the client: fixed costs
        processor.force_flush(10_000)
        gc.collect()
        before = rss_mb()
        peak = before
        chunk = os.urandom(size_mb * 2**20)
        for i in range(total_mb // size_mb):
            processor.on_end(profile(chunk[:-8] + i.to_bytes(8, "big")))
            if i % 16 == 0:
                peak = max(peak, rss_mb())
                time.sleep(0.01)
        peak = max(peak, rss_mb())
        processor.shutdown(10_000)
        spool = processor.spool
        assert spool is not None
        print(f"memory, backend down, {total_mb} MB of {size_mb} MB profiles produced:")
        print(f"  RSS before {before:.0f} MB, peak {peak:.0f} MB: grew {peak - before:.0f} MB")
        print(f"  bound: queue {queue_mb} MB + 50 MB = {queue_mb + 50} MB")
        print(
            f"  spooled {processor.spooled_profiles}, evicted from spool {spool.evicted_profiles}, "
            f"dropped from queue {processor.dropped_profiles}"
        )


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("latency", "all"):
        bench_latency()
    if which in ("throughput", "all"):
        bench_throughput()
    if which in ("local", "all"):
        bench_local()
    if which in ("memory", "all"):
        bench_memory()
