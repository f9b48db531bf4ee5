"""Running the agent's exit flush before Python stops its thread pools, without new threads.

``atexit`` handlers run after ``concurrent.futures`` has refused new work, and
async storage clients (s3fs, gcsfs, adlfs) need an executor to send a request:
a profile flushed from ``atexit`` would be lost. Python runs the callbacks of
``threading._register_atexit`` first, in reverse order of registration, so one
registered after ``concurrent.futures`` was imported runs while the pools work.
``atexit`` stays as the fallback; the shutdown it calls is idempotent.

Some Pythons (3.12.0 and 3.12.1) refuse to start any thread from either hook.
So once an exit hook runs, ``exiting()`` is true and the library does its
remaining work without a new thread: the processor's worker, if one is
running, or else the calling thread exports what is queued, and the exporter
runs its requests on an event loop of its own on that thread instead of
fsspec's I/O thread.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Callable

_exiting = False


def exiting() -> bool:
    """Whether an exit hook of the library has started: no thread may be started now."""
    return _exiting


def mark_exiting() -> None:
    """Called first by every exit hook."""
    global _exiting
    _exiting = True


def before_thread_pools_stop(method: Callable[[], None]) -> None:
    """Call the bound ``method`` at exit while executors still accept work (if still alive)."""
    import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered first

    register = getattr(threading, "_register_atexit", None)
    if register is None:
        return
    ref = weakref.WeakMethod(method)  # type: ignore[arg-type]

    def call() -> None:
        bound = ref()
        if bound is not None:
            mark_exiting()
            bound()

    with contextlib.suppress(RuntimeError):  # already shutting down: atexit will do
        register(call)
