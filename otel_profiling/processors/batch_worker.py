"""The batch processor's worker thread: started on demand, started again if it dies.

The thread runs rounds of work (``round`` returns ``False`` to stop), then
``last`` (the batch processor shuts its exporter down there, so that the
thread shutting the processor down waits for it no longer than its deadline,
as it waits for the last export, and a hung exporter is left to this daemon
thread instead of holding up the caller or the interpreter's exit). An
exception that escapes a round (an exporter raising ``SystemExit``, say) ends
the thread after ``lost`` has settled what it held; the next profile starts
a new one, and the new thread says so once. Once the interpreter exits no
thread is started (some Pythons refuse then; the processor exports on the
calling thread instead).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

from otel_profiling import _threads
from otel_profiling._exit import exiting

_logger = logging.getLogger("otel_profiling.processors.batch")


class RestartingWorker:
    """One library thread at a time running ``round`` until it returns ``False``.

    ``lock`` is the owner's condition: ``ensure`` is called with it held,
    and the thread notifies it when it stops.
    """

    def __init__(
        self,
        name: str,
        lock: threading.Condition,
        round: Callable[[], bool],  # noqa: A002 - one round of work
        lost: Callable[[BaseException], None],
        what: str,
        last: Optional[Callable[[], None]] = None,
    ) -> None:
        self._name = name
        self._lock = lock
        self._round = round
        self._lost = lost
        self._what = what  # named in the log lines (the exporter's class)
        self._last = last  # run once the rounds end (not after an exception)
        self.thread: Optional[threading.Thread] = None
        self.died: Optional[str] = None  # why the last thread stopped unexpectedly
        self.restarts = 0

    def ensure(self, stopped: bool) -> bool:
        """A live thread, started (again) if needed; ``False`` when none can run.

        Called with the lock held. A thread that stops clears ``thread`` on its
        way out, so no liveness check is needed here.
        """
        if self.thread is not None:
            return True
        if stopped or exiting():
            return False
        restart = self.died is not None
        try:
            self.thread = _threads.start_daemon(self._run, self._name)
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            self.thread = None
            return False
        if restart:
            self.restarts += 1
        return True

    def _run(self) -> None:
        me = threading.current_thread()
        try:
            self._say_restarted()
            while self._round():
                pass
            if self._last is not None:
                self._last()
        except BaseException as exc:  # noqa: BLE001 - e.g. an exporter raised SystemExit
            died = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.died = died
            _logger.error(
                "The export worker of %s stopped (%s); the next profile starts a new one.",
                self._what,
                died,
                exc_info=exc,
            )
            self._lost(exc)
        finally:
            with self._lock:
                if self.thread is me:
                    self.thread = None
                self._lock.notify_all()

    def _say_restarted(self) -> None:
        with self._lock:
            died, self.died = self.died, None
        if died is not None:
            _logger.warning("Export worker of %s restarted (it had stopped: %s).", self._what, died)
