"""A program for `otel-profiling run`: works until the file named in argv[1] exists."""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from workload import run_workload  # noqa: E402

stop = Path(sys.argv[1])
print(f"ready {os.getpid()}", flush=True)
deadline = time.monotonic() + 120
next_check = 0.0
while time.monotonic() < deadline:
    # Look for the file ten times a second, not after every few milliseconds of work: under
    # CPython's GIL, a thread that releases it that often (a system call) keeps the waiting
    # threads, the profiler's own among them, from running for seconds.
    if time.monotonic() >= next_check:
        if stop.exists():
            break
        next_check = time.monotonic() + 0.1
    run_workload(1, 23)  # fibonacci and checksum_lines both take a fair share (30-50 %)
print("done", flush=True)
