"""``SignalTrigger``: each delivery of a signal toggles profiling, as OpenProfiling's SIGUSR2."""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import signal
import threading
from typing import Any, Dict, Optional, Union

from otel_profiling import _threads, servers
from otel_profiling.process_context import SIGNAL_ACTIVE_ATTRIBUTE, SIGNAL_ATTRIBUTE
from otel_profiling.signal_names import signal_name
from otel_profiling.triggers.base import Trigger, TriggerTarget
from otel_profiling.triggers.safe_signals import check_trigger_signal

_logger = logging.getLogger(__name__)
_STOP = -1
DEFAULT_SIGNAL = signal.SIGUSR2
_REALTIME = re.compile(r"^(?:SIG)?RT(MIN|MAX)(?:([+-])(\d+))?$")

SignalLike = Union[int, str, signal.Signals]


def parse_signal(value: SignalLike) -> int:
    """``SIGUSR2``, ``USR2``, ``12``, ``SIGRTMIN+4`` or ``signal.SIGUSR2`` → the signal number.

    Named signals come back as ``signal.Signals``; real-time ones (which have
    no enum member) as plain ``int``.
    """
    if isinstance(value, signal.Signals):
        return value
    text = str(value).strip().upper()
    try:
        if text.isdigit():
            return _known(int(text))
        realtime = _REALTIME.match(text)
        if realtime and hasattr(signal, "SIGRTMIN"):
            base, sign, offset = realtime.groups()
            number = int(signal.SIGRTMIN if base == "MIN" else signal.SIGRTMAX)
            number += int(offset or 0) * (-1 if sign == "-" else 1)
            if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                return number
            raise ValueError(text)
        return signal.Signals[text if text.startswith("SIG") else "SIG" + text]
    except (KeyError, ValueError):
        raise ValueError(
            f"Unknown signal {value!r}: use a name such as SIGUSR2, SIGUSR1 or SIGRTMIN+4."
        ) from None


def _known(number: int) -> int:
    try:
        return signal.Signals(number)
    except ValueError:
        if hasattr(signal, "SIGRTMIN") and signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return number
        raise


class SignalTrigger(Trigger):
    """Toggles its profilers each time ``signum`` is delivered.

    The handler only puts the signal number on a ``queue.SimpleQueue`` (which
    is safe to call from a signal handler); a daemon thread takes it from there
    and starts or stops the profilers, so encoding and export never run in the
    handler. The previous handler is restored by ``uninstall()``. Handlers can
    only be installed from the main thread; elsewhere ``install`` raises.

    Without ``signum`` the trigger listens on SIGUSR2, unless the process is
    (or will fork into) an application server that uses SIGUSR2 itself
    (gunicorn, uvicorn, uWSGI; see ``otel_profiling.servers``): then it listens
    on ``SIGRTMIN+4`` and logs so. A ``signum`` such a server uses is refused
    with a warning, and the same safe signal is used instead. The signal
    actually used is ``signum`` once installed, and is published in the
    process context for ``otel-profiling trigger``.

    A real-time signal (``SIGRTMIN+n``, as under a server) is also waited for
    by a library thread with ``sigwait``, and the main thread blocks it, as the
    threads it starts and the processes it forks then do: the signal is taken
    at once even where the main thread sits in C code (uWSGI's loop runs no
    Python between requests; a main thread blocked in a read would run a
    Python handler only at its next bytecode). The Python handler stays
    installed for any older thread that does not block it. SIGUSR1/SIGUSR2
    keep the plain handler: blocking them would also block them in programs
    this process starts.
    """

    def __init__(self, signum: Optional[SignalLike] = None) -> None:
        super().__init__()
        self.requested: Optional[int] = None if signum is None else parse_signal(signum)
        if self.requested is not None:
            check_trigger_signal(self.requested)
        self.signum: int = DEFAULT_SIGNAL if self.requested is None else self.requested
        self.name = f"signal:{signal_name(self.signum)}"
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._previous: Any = None
        self._thread: Optional[threading.Thread] = None
        self._waiter: Optional[threading.Thread] = None
        self._waiting = False  # a thread takes the signal with sigwait

    def _handler(self, signum: int, frame: Any) -> None:
        self._queue.put_nowait(signum)

    def install(self, target: TriggerTarget) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                f"SignalTrigger({signal_name(self.signum)}) must be started from the main thread "
                "(Python only installs signal handlers there)."
            )
        server = servers.detect()
        self.signum = self._choose(server)
        self.name = f"signal:{signal_name(self.signum)}"
        super().install(target)
        self._waiting = self.signum in _threads.REALTIME_SIGNALS
        self._previous = signal.signal(self.signum, self._handler)
        if self._waiting:
            signal.pthread_sigmask(signal.SIG_BLOCK, {self.signum})
        self._start_threads()

    def _start_threads(self) -> None:
        name = f"signal-{signal_name(self.signum)}"
        self._thread = _threads.start_daemon(self._run, name)
        if self._waiting:
            self._waiter = _threads.start_daemon(self._wait, name + "-wait")

    def _wait(self) -> None:
        """Take the signal as it comes, whatever the main thread is doing."""
        while self._waiting:
            signal.sigwait({self.signum})
            if self._waiting:
                self._queue.put_nowait(self.signum)

    def _choose(self, server: Optional[servers.Server]) -> int:
        """The requested (or default) signal, or the safe one when a server uses it."""
        wanted = DEFAULT_SIGNAL if self.requested is None else self.requested
        if server is None or not server.uses(wanted):
            return wanted
        safe = servers.safe_signal()
        if self.requested is None:
            _logger.info(
                "%s uses %s itself: profiling listens on %s in this process "
                "(otel-profiling trigger finds it).",
                server.name,
                signal_name(wanted),
                signal_name(safe),
            )
        else:
            _logger.warning(
                "%s is refused as the profiling signal: %s uses it itself. Listening on %s "
                "instead; set OTEL_PROFILING_SIGNAL=%s to choose it explicitly.",
                signal_name(wanted),
                server.name,
                signal_name(safe),
                signal_name(safe),
            )
        return safe

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item == _STOP:
                return
            target = self._target
            if target is None:
                continue
            try:
                target.toggle(reason=f"received {signal_name(self.signum)}")
            except Exception:  # keep listening whatever happened
                _logger.exception("Handling %s failed.", signal_name(self.signum))

    def after_fork(self) -> None:
        if self._thread is not None:  # the forking thread's signal mask is the child's
            self._queue = queue.SimpleQueue()
            self._start_threads()

    def context_attributes(self) -> Dict[str, Any]:
        """The signal, and whether the next one stops (what ``otel-profiling trigger`` reads:
        a worker forked while its master profiled has no window open, and must not be
        started by the signal that stops the others)."""
        if self._thread is None:
            return {}
        target = self._target
        active = target is not None and target.active
        return {SIGNAL_ATTRIBUTE: int(self.signum), SIGNAL_ACTIVE_ATTRIBUTE: active}

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
        waiter, self._waiter = self._waiter, None
        if waiter is not None and self._waiting:
            self._waiting = False
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pthread_kill(waiter.ident or 0, self.signum)  # ends its sigwait
            waiter.join(5)
        self._queue.put(_STOP)
        self._thread.join(5)
        self._thread = None
        super().uninstall()

    def __repr__(self) -> str:
        return f"SignalTrigger({signal_name(self.signum)})"
