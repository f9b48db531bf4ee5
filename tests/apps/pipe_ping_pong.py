"""Two threads ping-pong over a ``multiprocessing`` pipe while back-to-back CPU profiling
windows sample them every millisecond; prints "<windows> <pongs>" after argv[1] seconds."""

import sys
import threading
import time
from multiprocessing import Pipe

from otel_profiling.profilers import CpuProfiler

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
near, far = Pipe()
pongs = 0


def pong() -> None:
    global pongs
    while True:
        far.recv()
        far.send(True)  # pickled into a BytesIO, sent from its exported buffer
        pongs += 1


def ping() -> None:
    while True:
        near.send(b"ping")
        near.recv()
        time.sleep(0.0005)


threading.Thread(target=pong, daemon=True).start()
threading.Thread(target=ping, daemon=True).start()
windows = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    profiler = CpuProfiler(interval=0.001)
    profiler.start()
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        sum(range(1000))
    profiler.stop()
    windows += 1
print(windows, pongs, flush=True)
