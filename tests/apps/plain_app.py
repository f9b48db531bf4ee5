"""An application that knows nothing of profiling: works until stdin says "quit".

Prints "ready" when it starts working, and at the end the names of its
threads (so a test can see whether anything was started behind its back).
"""

from __future__ import annotations

import sys
import threading


def plain_workload_leaf(n: int) -> int:
    return sum(i * i for i in range(n))


def plain_workload(stop: threading.Event) -> None:
    while not stop.is_set():
        plain_workload_leaf(5000)


def main() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=plain_workload, args=(stop,), name="plain-worker")
    worker.start()
    print("ready", flush=True)
    sys.stdin.readline()
    names = sorted(thread.name for thread in threading.enumerate())
    stop.set()
    worker.join()
    print("threads:" + ",".join(names), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
