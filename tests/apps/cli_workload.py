"""A program for `otel-profiling run`: the example workload, then exit. Arg: seconds of work."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from workload import run_workload  # noqa: E402


def main(seconds: float) -> None:
    deadline = time.monotonic() + seconds / 10
    while time.monotonic() < deadline:
        run_workload(2, 16)
    print("done", flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 5)
