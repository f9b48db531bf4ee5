"""A capped set of daemon threads for blocking writes (local disks, synchronous filesystems).

Writing many files one after the other waits for each ``fsync`` in turn;
eight at a time wrote 200 × 50 KB profiles 3.8 to 6.4 times faster here (see
``benchmarks/README.md``). A blocking call cannot be cancelled, so one still
running at a deadline keeps its thread until it returns: the pool never has
more than ``size`` threads, whatever the number of exports, and a job whose
deadline passed while it waited is not started by the exporter. The threads
are daemons (a hung disk never holds up the interpreter's exit) and the
library's own (left out of profiles). ``close()`` ends them (the exporter's
``shutdown()`` calls it): a process that makes and shuts down exporters one
after another keeps no thread of theirs.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

from otel_profiling import _threads
from otel_profiling._fork import renew_after_fork

_logger = logging.getLogger(__name__)


class WriterPool:
    """Runs jobs on at most ``size`` daemon threads, started as needed and kept."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._renew()
        renew_after_fork(self, WriterPool._renew)

    def _renew(self) -> None:
        """A forked child has none of the parent's threads: start from none."""
        self._jobs: queue.SimpleQueue[Optional[Callable[[], None]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``; a thread is started if none is free and the cap allows.

        ``RuntimeError`` if a thread was needed and could not be started (the
        interpreter is exiting), or the pool is closed: the job is then not queued.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.name} writer pool is closed")
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = self._threads < self.size
                if start:
                    self._threads += 1
        if start:
            try:
                _threads.start_daemon(self._work, self.name)
            except RuntimeError:
                with self._lock:
                    self._threads -= 1
                raise
        self._jobs.put(job)

    def close(self) -> None:
        """End the threads without waiting: an idle one at once, a busy one after its job
        (a blocking call cannot be cancelled). Later ``submit`` calls raise ``RuntimeError``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)  # one end mark per thread: each takes one and returns

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                with self._lock:
                    self._threads -= 1
                return
            try:
                job()
            except Exception:  # noqa: BLE001 - a job reports its own failures; this is a bug
                _logger.exception("A write job failed.")
            with self._lock:
                self._idle += 1
