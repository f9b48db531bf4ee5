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
while not stop.exists() and time.monotonic() < deadline:
    run_workload(1, 15)
print("done", flush=True)
