"""``otel-profiling merge`` of a fleet's profiles from S3: one process against Dask workers.

Writes N realistic CPU profiles (default 2 000: stacks drawn from one shared
pool, as containers running the same code produce) to a moto S3 server on a
loopback port, then runs interleaved rounds of:

* ``local``: ``otel-profiling merge s3://... -o merged.cpuprofile`` (streaming,
  one object at a time, in one process);
* ``workers``: the same with ``--workers W`` (a local Dask cluster of W
  processes started and stopped by the command: end to end);
* ``scheduler``: the same with ``--scheduler`` on a W-worker cluster this
  script keeps running (restarted before each round so that each worker's
  peak RSS is that round's, then made to import the library and s3fs as a
  long-running cluster would have), the cluster's start-up left out.

Reported: wall time (median of rounds, each round's too), time per object,
peak RSS of the command, and peak RSS per Dask worker. Every run's output is
compared with the local merge's, byte for byte.

    python benchmarks/fleet_merge.py [--profiles 2000] [--stacks 120] [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_profiling.formats.calltree import Frame, add_stack, new_root  # noqa: E402
from otel_profiling.formats.cpuprofile import encode_cpuprofile  # noqa: E402

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench-access-key",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> Tuple[subprocess.Popen, str]:
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
    raise SystemExit("moto did not start")


def write_profiles(endpoint: str, url: str, count: int, stacks: int, pool_size: int) -> int:
    """Profiles of one service: 400 functions in 6 modules, stacks 3 to 14 frames deep."""
    import fsspec

    rng = random.Random(1)
    modules = [f"/srv/app/{name}.py" for name in ("api", "db", "cache", "render", "auth", "queue")]
    functions = [Frame(f"func_{i}", rng.choice(modules), rng.randint(1, 400)) for i in range(400)]
    pool = [[rng.choice(functions) for _ in range(rng.randint(3, 14))] for _ in range(pool_size)]
    fs = fsspec.filesystem(
        "s3",
        endpoint_url=endpoint,
        key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    fs.mkdir(bucket)
    start = time.time() - count
    batch: Dict[str, bytes] = {}
    total = 0
    for index in range(count):
        root = new_root()
        for stack in rng.sample(pool, stacks):
            add_stack(root, [Frame("MainThread (thread 1)"), *stack], rng.randint(1, 2000) / 1e6)
        data = encode_cpuprofile(root, start_us=int((start + index) * 1e6))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + index))
        batch[f"{bucket}/{prefix}/pod-{index % 20}/CPU_PROFILE-{stamp}.000Z.cpuprofile"] = data
        total += len(data)
        if len(batch) == 100:
            fs.pipe(batch)
            batch = {}
    if batch:
        fs.pipe(batch)
    return total


def run_measured(
    args: List[str], env: Dict[str, str]
) -> Tuple[float, int, float, Dict[str, object]]:
    """Wall time, peak RSS (bytes), CPU seconds (both from ``wait4``) and ``--json`` summary."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "otel_profiling", *args, "--json"],
            env=env,
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{args[:3]} failed: {err.read().decode()[-2000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        return wall, usage.ru_maxrss * 1024, cpu, json.loads(out.read())


def warm_up() -> None:
    """Import what a merge task imports, so that rounds measure the merge, not the imports."""
    import s3fs  # noqa: F401

    import otel_profiling.cli.cluster  # noqa: F401


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def workers_cpu(client: object) -> float:
    """CPU seconds used so far by all the Dask workers together."""
    return sum(client.run(cpu_seconds).values())  # type: ignore[attr-defined]


def worker_peaks(client: object) -> List[int]:
    """Peak RSS of each Dask worker process since it started."""

    def peak() -> int:
        import resource as res

        return res.getrusage(res.RUSAGE_SELF).ru_maxrss * 1024

    return sorted(client.run(peak).values())  # type: ignore[attr-defined]


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=2000)
    parser.add_argument("--stacks", type=int, default=120, help="stacks per profile")
    parser.add_argument("--pool", type=int, default=4000, help="distinct stacks in the fleet")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    opts = parser.parse_args()

    from distributed import Client, LocalCluster

    moto, endpoint = start_moto()
    env = dict(
        os.environ,
        **CREDENTIALS,
        AWS_ENDPOINT_URL=endpoint,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
    url = "s3://fleet-bench/profiles"
    try:
        started = time.monotonic()
        size = write_profiles(endpoint, url, opts.profiles, opts.stacks, opts.pool)
        print(
            f"inputs: {opts.profiles} profiles, {size / MIB:.1f} MiB "
            f"({size / opts.profiles / 1024:.0f} KiB each), written in "
            f"{time.monotonic() - started:.0f} s to moto at {endpoint}"
        )
        with tempfile.TemporaryDirectory() as tmp:
            listing, _, _, _ = run_measured(["ls", url, "--no-metadata"], env)
            print(f"listing alone (ls --no-metadata): {listing:.2f} s")
            cluster = LocalCluster(
                n_workers=opts.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                env={**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint},
            )
            client = Client(cluster)
            results: Dict[str, List[float]] = {"local": [], "workers": [], "scheduler": []}
            rss: Dict[str, List[int]] = {"local": [], "workers": [], "scheduler": []}
            cpus: Dict[str, List[float]] = {"local": [], "scheduler": []}
            peaks: List[List[int]] = []
            idle: List[List[int]] = []
            reference = None
            for round_ in range(opts.rounds):
                line = []
                for how in ("local", "workers", "scheduler"):
                    out = Path(tmp, f"{how}.cpuprofile")
                    extra: List[str] = []
                    if how == "workers":
                        extra = ["--workers", str(opts.workers)]
                    elif how == "scheduler":
                        client.restart()
                        client.run(warm_up)
                        idle.append(worker_peaks(client))
                        extra = ["--scheduler", cluster.scheduler_address]
                        before = workers_cpu(client)
                    wall, peak, cpu, summary = run_measured(
                        ["merge", url, "--no-progress", "-o", str(out), *extra], env
                    )
                    if how == "local":
                        cpus["local"].append(cpu)
                    if how == "scheduler":
                        peaks.append(worker_peaks(client))
                        cpus["scheduler"].append(workers_cpu(client) - before)
                    assert summary["merged"] == opts.profiles, summary
                    data = out.read_bytes()
                    if reference is None:
                        reference = data
                    assert data == reference, f"{how} differs from the local merge"
                    results[how].append(wall)
                    rss[how].append(peak)
                    line.append(f"{how} {wall:.1f} s")
                print(
                    f"round {round_ + 1}: " + ", ".join(line) + f" (load {os.getloadavg()[0]:.1f})"
                )
            client.close()
            cluster.close()
        assert reference is not None
        print(f"merged output: {len(reference) / MIB:.1f} MiB (identical in every run)")
        local = statistics.median(results["local"])
        print()
        print("| run | median wall | per object | vs local | peak RSS of the command |")
        print("|---|---|---|---|---|")
        for how, label in (
            ("local", "local streaming merge"),
            ("workers", f"`--workers {opts.workers}` (cluster start included)"),
            ("scheduler", f"`--scheduler` ({opts.workers} running workers)"),
        ):
            wall = statistics.median(results[how])
            print(
                f"| {label} | {wall:.1f} s | {1000 * wall / opts.profiles:.1f} ms | "
                f"{local / wall:.2f}× | {statistics.median(rss[how]) / MIB:.0f} MiB |"
            )
        print()
        for how, label in (("local", "the command"), ("scheduler", "the Dask workers together")):
            cpu = statistics.median(cpus[how])
            print(
                f"CPU time of {label}: {cpu:.1f} s, {1000 * cpu / opts.profiles:.1f} ms per object "
                f"(median of rounds: {', '.join(f'{c:.1f}' for c in cpus[how])})"
            )
        idle_peak = statistics.median(max(p) for p in idle)
        busy_peak = statistics.median(max(p) for p in peaks)
        print(
            f"Dask worker peak RSS: {busy_peak / MIB:.0f} MiB (largest worker, median of rounds; "
            f"{idle_peak / MIB:.0f} MiB after a restart, before the merge); per round: "
            + "; ".join(", ".join(f"{p / MIB:.0f}" for p in round_) for round_ in peaks)
        )
    finally:
        moto.terminate()
        moto.wait(10)


if __name__ == "__main__":
    main()
