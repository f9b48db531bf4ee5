"""An application serving Go's pprof paths, configured by environment variables only.

Its main thread alternates ``hot`` and ``warm`` work, timing both, until a
line arrives on stdin; then it prints what it measured as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import otel_profiling


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def hot() -> None:
    spin(0.03)


def warm() -> None:
    spin(0.01)


def main() -> None:
    agent = otel_profiling.configure()
    assert agent is not None
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    measured = {"hot": 0.0, "warm": 0.0}
    began = time.perf_counter()
    print("ready", flush=True)
    while not stop.is_set():
        for name, work in (("hot", hot), ("warm", warm)):
            t0 = time.perf_counter()
            work()
            measured[name] += time.perf_counter() - t0
    measured["duration"] = time.perf_counter() - began
    print(json.dumps(measured), flush=True)


if __name__ == "__main__":
    main()
