"""Profiling leaves the application's objects to die when the application drops them.

A profiler that reads other threads' stacks (``sys._current_frames()``) holds
their frame objects for a moment. If it ever keeps one past that moment, or
in a reference cycle, a function that returns meanwhile hands its local
variables to the frame object, and they live on until the profiler lets go,
or, in a cycle, until the next garbage collection. On CPython 3.12,
collecting such cycles crashed processes that use ``multiprocessing``'s pipes
(``SystemError: deallocated BytesIO object has exported buffers``, then a
segmentation fault), as uvicorn's workers do.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import weakref
from typing import Callable, Iterator

import pytest
from support import APPS, child_env

from otel_profiling._gcpause import gc_paused
from otel_profiling.profilers import CpuProfiler, HeapSnapshotProfiler


class Payload:
    """An object only one function's local variable refers to."""


def run_window(profiler_kind: str) -> None:
    if profiler_kind == "heap-snapshot":
        snapshot = HeapSnapshotProfiler(collect=False)
        snapshot.start()
        snapshot.stop()
        return
    profiler = CpuProfiler(engine=profiler_kind, interval=0.005)
    profiler.start()
    time.sleep(0.2)  # about forty samples of the waiting thread
    profiler.stop()


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Only reference counting frees objects: a cycle would keep them."""
    gc.collect()
    with gc_paused():
        yield


@pytest.mark.parametrize("profiler_kind", ["sampling", "yappi", "heap-snapshot"])
def test_a_returned_functions_locals_are_freed_at_once(no_gc: None, profiler_kind: str) -> None:
    release = threading.Event()
    seen: list = []

    def handler() -> None:
        payload = Payload()
        seen.append(weakref.ref(payload))
        release.wait(30)  # profiled while it waits here, ``payload`` in its locals

    thread = threading.Thread(target=handler)
    thread.start()
    assert wait_until(lambda: bool(seen))
    run_window(profiler_kind)
    release.set()
    thread.join(30)
    assert not thread.is_alive()
    assert seen[0]() is None, "the profiler kept the returned function's locals alive"


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_sampling_beside_multiprocessing_pipes_never_breaks_the_process() -> None:
    """Ping-pong over a ``multiprocessing`` pipe (pickles through ``BytesIO.getbuffer``),
    profiled in back-to-back windows at 1 ms: crashed within a second on CPython 3.12."""
    result = subprocess.run(
        [sys.executable, str(APPS / "pipe_ping_pong.py"), "4"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SystemError" not in result.stderr, result.stderr[-2000:]
    windows, pongs = (int(n) for n in result.stdout.split())
    assert windows >= 4 and pongs > 100, result.stdout  # it really profiled a busy pipe
