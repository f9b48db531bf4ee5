"""A process of its own for each way the CPU profiler's main-thread signal can be unavailable.

``python cpu_signal_app.py MODE``: runs short bursts of work between waits on
the main thread under ``CpuProfiler(clock="cpu")`` and prints one JSON line:
the bursts' measured CPU time, what the profile gives them, the profile's end
attributes, the warnings logged and, per mode, what became of the
application's own handler. Each mode needs a fresh process: the handler, once
installed, stays for the process's life.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from viewers import cpuprofile_inclusive_times, load_cpuprofile  # noqa: E402

from otel_profiling.profilers import CpuProfiler  # noqa: E402
from otel_profiling.profilers.main_signal import signal_number  # noqa: E402

WARNINGS: List[str] = []
THEIRS: List[int] = []


class Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            WARNINGS.append(record.getMessage())


def app_burst(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def app_wait(seconds: float) -> None:
    time.sleep(seconds)


def bursts(seconds: float) -> float:
    """3 ms of computing then 2 ms of sleep, for ``seconds``; the bursts' CPU time."""
    used = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        began = time.thread_time()
        app_burst(0.003)
        used += time.thread_time() - began
        app_wait(0.002)
    return used


def theirs(signum: int, frame: Any) -> None:
    THEIRS.append(signum)


def profile(mode: str) -> Dict[str, Any]:
    result: Dict[str, Any] = {}
    if mode == "off-main":  # made and started by another thread; the main thread computes
        made: List[CpuProfiler] = []
        starter = threading.Thread(target=lambda: made.append(CpuProfiler(clock="cpu")))
        starter.start()
        starter.join()
        profiler = made[0]
        starter = threading.Thread(target=profiler.start)
        starter.start()
        starter.join()
    else:
        profiler = CpuProfiler(clock="cpu")
        profiler.start()
    if mode == "blocked":  # the application blocks the signal on the main thread
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal_number() or 0})
        began = time.thread_time()
        while time.thread_time() - began < 1.5:  # CPU time past SILENT_INTERVALS (1 s at
            app_burst(0.01)  # 10 ms), also on a loaded machine, where wall time is more
        result["before"] = time.thread_time() - began
    truth = bursts(0.5)
    if mode == "replaced":  # the application takes the signal during the window
        signal.signal(signal_number() or 0, theirs)
        result["before"] = truth
        truth += bursts(0.5)
    data = profiler.stop()
    if mode == "blocked":  # a signal still pending is delivered now, to a handler at rest
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal_number() or 0})
        time.sleep(0.01)
    times = cpuprofile_inclusive_times(load_cpuprofile(data))
    result.update(
        truth=truth,
        burst=times.get("app_burst", 0.0) / 1e6,
        wait=times.get("app_wait", 0.0) / 1e6,
        attributes=dict(profiler.end_attributes()),
    )
    return result


EXECED = """
import json, time
began = time.thread_time()
while time.thread_time() - began < 0.5:  # 50 intervals of CPU: a timer kept would end it
    pass
print(json.dumps({"execed": True}))
"""


def main(mode: str) -> None:
    logging.getLogger().addHandler(Collect())
    if mode == "exec":  # exec with the timer armed: the new program must not get the signal
        profiler = CpuProfiler(clock="cpu")
        profiler.start()
        bursts(0.2)
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-c", EXECED])
    signum = signal_number() or 0
    if mode == "taken":
        signal.signal(signum, theirs)
    elif mode == "no-sigpending":  # timer_create needs a queued-signal slot: none allowed
        _, hard = resource.getrlimit(resource.RLIMIT_SIGPENDING)
        resource.setrlimit(resource.RLIMIT_SIGPENDING, (0, hard))
    elif mode == "not-linux":  # the platform test is all that differs elsewhere
        sys.platform = "freebsd14"
    result = profile(mode)
    if mode in ("taken", "replaced"):
        result["handler_is_theirs"] = signal.getsignal(signum) is theirs
        signal.pthread_kill(threading.get_ident(), signum)
        time.sleep(0.01)  # the handler runs at the next bytecode
        result["theirs_ran"] = len(THEIRS) > 0
    result["warnings"] = WARNINGS
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
