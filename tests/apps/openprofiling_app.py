"""OpenProfiling's example as a child process: SIGUSR2 toggles a CPU profile exported by URL or S3.

Usage: openprofiling_app.py URL            (any fsspec URL)
       openprofiling_app.py s3 ENDPOINT BUCKET   (S3Exporter, OpenProfiling-style options)
Prints "ready" once the trigger is armed, works until stdin says "quit", then shuts down.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from urllib.parse import urlparse

from otel_profiling import ProfilingAgent
from otel_profiling.exporters import FsspecProfileExporter, S3Exporter
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import SignalTrigger


def app_workload_leaf(n: int) -> int:
    return sum(i * i for i in range(n))


def app_workload(stop: threading.Event) -> None:
    while not stop.is_set():
        app_workload_leaf(5000)


def main() -> None:
    if sys.argv[1] == "s3":
        endpoint = urlparse(sys.argv[2])
        exporter = S3Exporter(
            end_point=endpoint.hostname,
            port=endpoint.port,
            use_ssl=endpoint.scheme == "https",
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region="us-east-1",
            bucket=sys.argv[3],
        )
    else:
        exporter = FsspecProfileExporter(sys.argv[1])
    agent = ProfilingAgent()
    agent.register(SignalTrigger(signal.SIGUSR2), CpuProfiler())
    agent.start(exporter=exporter)
    stop = threading.Event()
    worker = threading.Thread(target=app_workload, args=(stop,), name="app-worker")
    worker.start()
    print("ready", flush=True)
    sys.stdin.readline()
    stop.set()
    worker.join()
    agent.shutdown()
    print("done", flush=True)


if __name__ == "__main__":
    main()
