"""A program for `otel-profiling run`: the example workload, then exit.

Arguments: tenths of a second of work (default 5), then seconds of idling (default 0).
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from workload import run_workload  # noqa: E402


def main(tenths: float, idle: float) -> None:
    deadline = time.monotonic() + tenths / 10
    while time.monotonic() < deadline:
        run_workload(1, 23)  # fibonacci and checksum_lines both take a fair share (30-50 %)
    time.sleep(idle)
    print("done", flush=True)


if __name__ == "__main__":
    main(
        float(sys.argv[1]) if len(sys.argv) > 1 else 5,
        float(sys.argv[2]) if len(sys.argv) > 2 else 0,
    )
