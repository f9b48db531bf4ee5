"""``SignalTrigger``: each delivery of a signal toggles profiling (the seed's SIGUSR2)."""

from __future__ import annotations

import logging
import queue
import signal
import threading
from typing import Any, Optional, Union

from otel_profiling import _threads
from otel_profiling.triggers.base import Trigger, TriggerTarget
from otel_profiling.triggers.safe_signals import check_trigger_signal

_logger = logging.getLogger(__name__)
_STOP = -1


def parse_signal(value: Union[int, str, signal.Signals]) -> signal.Signals:
    """``SIGUSR2``, ``USR2``, ``12`` or ``signal.SIGUSR2`` → ``signal.SIGUSR2``."""
    if isinstance(value, signal.Signals):
        return value
    text = str(value).strip().upper()
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        return signal.Signals[text if text.startswith("SIG") else "SIG" + text]
    except (KeyError, ValueError):
        raise ValueError(
            f"Unknown signal {value!r}: use a name such as SIGUSR2 or SIGUSR1."
        ) from None


class SignalTrigger(Trigger):
    """Toggles its profilers each time ``signum`` is delivered.

    The handler only puts the signal number on a ``queue.SimpleQueue`` (which
    is safe to call from a signal handler); a daemon thread takes it from there
    and starts or stops the profilers, so encoding and export never run in the
    handler. The previous handler is restored by ``uninstall()``. Handlers can
    only be installed from the main thread; elsewhere ``install`` raises.
    """

    def __init__(self, signum: Union[int, str, signal.Signals] = signal.SIGUSR2) -> None:
        super().__init__()
        self.signum = parse_signal(signum)
        check_trigger_signal(self.signum)
        self.name = f"signal:{self.signum.name}"
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._previous: Any = None
        self._thread: Optional[threading.Thread] = None

    def _handler(self, signum: int, frame: Any) -> None:
        self._queue.put_nowait(signum)

    def install(self, target: TriggerTarget) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                f"SignalTrigger({self.signum.name}) must be started from the main thread "
                "(Python only installs signal handlers there)."
            )
        super().install(target)
        self._thread = _threads.start_daemon(self._run, f"signal-{self.signum.name}")
        self._previous = signal.signal(self.signum, self._handler)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item == _STOP:
                return
            target = self._target
            if target is None:
                continue
            try:
                target.toggle(reason=f"received {self.signum.name}")
            except Exception:  # keep listening whatever happened
                _logger.exception("Handling %s failed.", self.signum.name)

    def after_fork(self) -> None:
        if self._thread is not None:
            self._queue = queue.SimpleQueue()
            self._thread = _threads.start_daemon(self._run, f"signal-{self.signum.name}")

    def uninstall(self) -> None:
        if self._thread is None:
            return
        try:
            if signal.getsignal(self.signum) == self._handler:
                signal.signal(
                    self.signum, self._previous if self._previous is not None else signal.SIG_DFL
                )
        except ValueError:  # not in the main thread: leave the handler, it is harmless
            pass
        self._queue.put(_STOP)
        self._thread.join(5)
        self._thread = None
        super().uninstall()

    def __repr__(self) -> str:
        return f"SignalTrigger({self.signum.name})"
