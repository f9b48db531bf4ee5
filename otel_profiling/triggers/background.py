"""Triggers that watch from a daemon thread of their own (schedules and pollers)."""

from __future__ import annotations

import abc
import threading
from typing import Optional

from otel_profiling import _threads
from otel_profiling.triggers.base import Trigger, TriggerTarget

JOIN_TIMEOUT = 10.0


class BackgroundTrigger(Trigger):
    """Runs ``_run`` on a daemon thread from ``install`` until ``uninstall``.

    ``_run`` returns once ``self._stop`` is set. A forked child gets a thread
    of its own (threads do not survive fork); ``uninstall`` waits for the
    thread at most ``JOIN_TIMEOUT`` seconds, so shutdown stays bounded.
    """

    def __init__(self) -> None:
        super().__init__()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def thread_name(self) -> str:
        """The thread's name after the library's prefix."""
        return type(self).__name__

    def install(self, target: TriggerTarget) -> None:
        super().install(target)
        self._spawn()

    def _spawn(self) -> None:
        self._stop = threading.Event()
        self._thread = _threads.start_daemon(self._run, self.thread_name)

    @abc.abstractmethod
    def _run(self) -> None:
        """The thread's work, until ``self._stop`` is set."""

    def after_fork(self) -> None:
        if self._thread is not None:
            self._spawn()

    def uninstall(self) -> None:
        """Stop the thread; a window in progress ends now and is exported."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT)
        self._thread = None
        super().uninstall()
