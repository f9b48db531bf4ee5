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

SIGTERM left at its default kills the interpreter before either hook runs.
Servers make that the usual end: uvicorn shuts down gracefully on SIGTERM,
then restores the handler it found and raises the signal again. Where the
application asks for it (``flush_on_sigterm``) and SIGTERM is at its default,
a handler runs the flush on a thread of its own, waits for it no longer than
its timeout, then restores the default and raises the signal again: the
process still ends by SIGTERM, as it would have.

It is never installed unasked. Python runs a signal's handler only when the
main thread next runs Python code: a SIGTERM that arrives just before the
main thread blocks (in a lock, a semaphore, a ``join``) waits until that
call returns, which may be never. At its default the kernel ends the process
at once; with any Python handler, ``multiprocessing``'s ``Pool.terminate()``
hung in about one run in twenty, waiting for a worker that never ended.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import weakref
from typing import Callable, List, Optional, Tuple

from otel_profiling import servers

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


_on_sigterm: List[Tuple[weakref.WeakMethod[Callable[[], None]], float]] = []


def register_sigterm_flush(method: Callable[[], None], timeout_s: float) -> None:
    """Call the bound ``method`` when SIGTERM arrives, once ``flush_on_sigterm`` asked."""
    _on_sigterm[:] = [(ref, timeout) for ref, timeout in _on_sigterm if ref() is not None]
    _on_sigterm.append((weakref.WeakMethod(method), timeout_s))  # type: ignore[arg-type]


def flush_on_sigterm() -> bool:
    """Install the SIGTERM flush where SIGTERM is at its default; whether it is installed.

    Opt-in (see the module's docstring for why; ``OTEL_PROFILING_FLUSH_ON_SIGTERM``
    asks for it when the agent is built from the environment): call it on the main
    thread of a process whose main thread never blocks for long (an event loop, a
    server's worker), before or after the agent starts, and again where something
    set SIGTERM back to its default afterwards (gunicorn's uvicorn worker class does,
    in each worker: from gunicorn's ``post_worker_init`` hook).
    """
    if sigterm_flush_refusal() is not None:
        return False
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, sigterm_flush_handler)
    return True


def sigterm_flush_refusal() -> Optional[str]:
    """Why the SIGTERM flush cannot be installed here and now (``None``: it can, or is)."""
    if threading.current_thread() is not threading.main_thread():
        return "Python installs signal handlers only from the main thread; configure from it"
    if servers.detect() is servers.UWSGI:
        return "uWSGI handles SIGTERM itself, where Python does not see it"
    current = signal.getsignal(signal.SIGTERM)
    if current is signal.SIG_DFL or current == sigterm_flush_handler:
        return None
    return "SIGTERM already has a handler (the application's or its server's), left alone"


def sigterm_flush_handler(signum: int, frame: object) -> None:
    """Flush on a thread (the main thread may hold a lock the flush needs), within the
    longest flush timeout, then end the process by SIGTERM. A second SIGTERM meanwhile
    ends it at once."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    calls = [(ref(), timeout) for ref, timeout in _on_sigterm]
    live = [(bound, timeout) for bound, timeout in calls if bound is not None]

    def flush() -> None:
        for bound, _ in live:
            with contextlib.suppress(Exception):  # each logs its own failures
                bound()

    flusher = threading.Thread(target=flush, name="otel-profiling-sigterm", daemon=True)
    flusher.start()
    flusher.join(max((timeout for _, timeout in live), default=0.0) + 1.0)
    signal.raise_signal(signal.SIGTERM)
