"""The main thread's CPU time under ``clock="cpu"``, sampled by a timer signal on its own CPU clock.

Why: the sampling thread needs the GIL to look at another thread, and a
thread that computes keeps the GIL until it blocks (or for the interpreter's
5 ms switch interval). A short burst of work that ends in a wait is then seen
only once it waits, and its CPU time lands on the wait (3 ms bursts lose all
of it; see "Sampling accuracy" in ``benchmarks/README.md``).

For the main thread this is mended with a POSIX timer (``timer_create``) on
the main thread's CPU clock, sent to the main thread (``SIGEV_THREAD_ID``):
it fires after about every ``interval`` of the main thread's own CPU time
(each next expiry set by the handler, spread at random: see ``SPREAD``), so never
while it waits (an idle event loop is not woken, a blocked call is not
interrupted). CPython runs the Python handler on the main thread at its next
bytecode, where it computes; the handler appends (code objects innermost
first, the main thread's CPU ns since its previous run, the time, the span)
to a bounded deque: no lock, no I/O. The sampling thread drains it at each
tick (``Sampler``). Only the main thread: Python runs signal handlers there
alone. Linux only (``SIGEV_THREAD_ID``, per-thread CPU clocks).

The handler can only be installed from the main thread, so it is installed
once, when the main thread first makes or starts a profiler that uses it,
and stays for the process's life: the default action of a real-time signal
ends the process, and a signal generated just before the timer is deleted may
still be pending; with no timer armed the handler costs nothing. A timer is
armed per window and deleted at its end; timers are not inherited by a forked
child and are deleted at ``exec``.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import logging
import os
import random
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, Deque, Optional, Tuple

from otel_profiling._env import env_bool
from otel_profiling.environment_variables import OTEL_PROFILING_CPU_SIGNAL
from otel_profiling.profilers import thread_clocks
from otel_profiling.profilers.async_tasks import current_task_id
from otel_profiling.profilers.open_spans import OPEN_SPANS, SpanIds
from otel_profiling.signal_names import signal_name

_logger = logging.getLogger(__name__)

SIGNAL_OFFSET = 6
"""The timer's signal is ``SIGRTMIN+6`` (the trigger under servers uses ``SIGRTMIN+4``)."""

MAX_PENDING = 10_000
"""Signal samples held until the sampling thread drains them; beyond, a signal records nothing
and the next sample recorded takes its CPU time."""

SPREAD = 0.5
"""Each next expiry is ``interval × uniform(1 - SPREAD, 1 + SPREAD)`` of CPU time. A fixed
period would lock onto work that repeats at that period and see one phase of it only.
Wider than the sampling thread's jitter: the kernel fires CPU-clock timers at its tick
(4 ms at 250 Hz), which rounds a narrow spread back to one fixed number of ticks."""

SILENT_INTERVALS = 100
"""With no handler run after this many intervals of the main thread's CPU time, the signal is
taken not to arrive (blocked on the main thread, or an embedding interpreter that never runs
Python signal handlers, as uWSGI workers without ``--py-call-osafterfork``)."""

MODE_ATTRIBUTE = "profiling.cpu.main_thread_samples"
"""``signal`` or ``thread``: how the main thread's CPU time was sampled (``clock="cpu"``)."""

REASON_ATTRIBUTE = "profiling.cpu.main_thread_samples_reason"
"""Why the main thread was sampled by the sampling thread instead of the signal."""

Pending = Tuple[Optional[Tuple[Any, ...]], int, int, Optional[SpanIds]]
"""(code objects innermost first, or ``None``: the last stretch, up to the disarm; CPU ns;
``perf_counter_ns``; the span current on the main thread)."""

_SIGEV_THREAD_ID = 4


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Sigevent(ctypes.Structure):
    """Linux ``struct sigevent``: sigval, signo, notify, then a union whose first int is the
    thread id (padded past the kernel's 64 bytes)."""

    _fields_ = [
        ("sigev_value", ctypes.c_void_p),
        ("sigev_signo", ctypes.c_int),
        ("sigev_notify", ctypes.c_int),
        ("sigev_tid", ctypes.c_int),
        ("_pad", ctypes.c_int * 13),
    ]


def enabled_from_env() -> bool:
    """``OTEL_PROFILING_CPU_SIGNAL``: sample the main thread's CPU time with the timer signal
    (``true``, the default) or from the sampling thread like the others (``false``)."""
    return env_bool(OTEL_PROFILING_CPU_SIGNAL, True)


def signal_number() -> Optional[int]:
    """The timer's signal, ``None`` where there are no real-time signals."""
    low = getattr(signal, "SIGRTMIN", None)
    high = getattr(signal, "SIGRTMAX", None)
    if low is None or high is None or int(low) + SIGNAL_OFFSET > int(high):
        return None
    return int(low) + SIGNAL_OFFSET


class _Process:
    """The process-wide state the handler reads: one window may own the timer at a time."""

    def __init__(self) -> None:
        self.installed = False
        self.refusal = ""  # why the handler is not installed
        self.sink: Optional[Deque[Pending]] = None  # the armed window's deque
        self.main_ident = 0
        self.last_cpu = 0  # the main thread's CPU ns at the previous handler run
        self.runs = 0  # handler runs that recorded a sample, since the process began
        self.owner: Optional[MainSignal] = None
        self.timer: Optional[ctypes.c_void_p] = None  # the armed window's timer
        self.interval_ns = 0
        self.jitter = random.Random()


STATE = _Process()
_arming = threading.Lock()  # one window at a time takes the timer (renewed in a forked child)


def _handle(signum: int, frame: Optional[FrameType]) -> None:
    """Runs on the main thread: one sample of where it computes, weighed by its CPU time."""
    state = STATE
    sink = state.sink
    if sink is None:  # no window armed (a signal sent just before the timer was deleted)
        return
    _set_next_expiry(state)  # first: whatever happens below, the next signal comes
    if len(sink) >= MAX_PENDING:  # the sampling thread is late: the next sample takes the time
        return
    try:
        cpu = time.thread_time_ns()
        value = cpu - state.last_cpu
        state.last_cpu = cpu
        codes = []
        while frame is not None:
            codes.append(frame.f_code)
            frame = frame.f_back
        ids = OPEN_SPANS.current(state.main_ident, current_task_id()) if len(OPEN_SPANS) else None
        state.runs += 1
        sink.append((tuple(codes), value, time.perf_counter_ns(), ids))
    except Exception:  # raised here, it would be raised in the application's code
        return


def _set_next_expiry(state: _Process) -> None:
    """Set the timer to fire once more, after ``interval × uniform(1 ± SPREAD)`` of CPU time.

    Never raises. The timer may have been deleted by the sampling thread just
    now (``EINVAL``, ignored).
    """
    timer = state.timer
    if timer is None:
        return
    try:
        ns = int(state.interval_ns * state.jitter.uniform(1 - SPREAD, 1 + SPREAD))
        once = _Itimerspec(_Timespec(0, 0), _Timespec(ns // 1_000_000_000, ns % 1_000_000_000))
        _libc().timer_settime(timer, 0, ctypes.byref(once), None)
    except Exception:  # raised here, it would be raised in the application's code
        return


def _unsupported() -> str:
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    if signal_number() is None or not thread_clocks.SUPPORTED:
        return "no real-time signals or per-thread CPU clocks"
    if _libc() is None:
        return "timer_create not found in the C library"
    return ""


def install() -> None:
    """Install the handler if this is the main thread and the signal is free (else say why).

    Never raises: a profiler that cannot use the signal samples the main thread
    from the sampling thread, as it does every other thread.
    """
    if STATE.installed:
        return
    why = _unsupported()
    signum = signal_number()
    if why or signum is None:
        STATE.refusal = why
        return
    if threading.current_thread() is not threading.main_thread():
        if not STATE.refusal:
            STATE.refusal = (
                "the profiler was first made off the main thread, where signal handlers "
                "cannot be installed"
            )
        return
    try:
        current = signal.getsignal(signum)
        if current is not signal.SIG_DFL:
            STATE.refusal = f"{signal_name(signum)} is taken ({current!r})"
            return
        if signum in signal.pthread_sigmask(signal.SIG_BLOCK, []):
            STATE.refusal = f"{signal_name(signum)} is blocked on the main thread"
            return
        signal.signal(signum, _handle)
        signal.siginterrupt(signum, False)  # SA_RESTART: a call it interrupts is resumed
    except (OSError, ValueError, RuntimeError) as exc:
        STATE.refusal = f"installing the {signal_name(signum)} handler failed: {exc}"
        return
    STATE.installed = True
    STATE.refusal = ""


_LIBC: Any = None


def _libc() -> Any:
    """The library holding ``timer_create`` (libc from glibc 2.34, librt before), or None."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        for name in (None, ctypes.util.find_library("rt")):
            try:
                lib = ctypes.CDLL(name, use_errno=True)
                lib.timer_create  # noqa: B018 - raises AttributeError where missing
            except (OSError, AttributeError, TypeError):
                continue
            _LIBC = lib
            break
    return _LIBC or None


class MainSignal:
    """One window's timer on the main thread's CPU clock, and the samples its signals gave."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.pending: Deque[Pending] = collections.deque()
        self.ident = 0  # the main thread's ident while armed
        self.reason = ""  # why the main thread is (or came to be) sampled by the thread
        self._timer: Optional[ctypes.c_void_p] = None
        self._clock = 0
        self._pid = 0  # the process whose timer it is (a forked child has none)
        self._runs = 0  # STATE.runs when armed: once it moves, the signal is known to arrive
        self._armed_cpu = 0
        self._warned = False

    def arm(self) -> bool:
        """Create and start the timer; ``False`` (and ``reason``) where it cannot be."""
        try:
            with _arming:
                self.reason = self._arm()
        except Exception as exc:  # never let the signal stop a window from starting
            self.reason = f"arming the timer failed: {exc}"
            self._delete()
        return not self.reason

    def _arm(self) -> str:
        install()  # on the main thread, if it was not done when the profiler was made
        if not STATE.installed:
            return STATE.refusal or "the handler is not installed"
        signum = signal_number()
        if signum is None:
            return "no real-time signals"
        current = signal.getsignal(signum)
        if current is not _handle:
            return f"{signal_name(signum)} is taken ({current!r})"
        if STATE.owner is not None:
            return "another window samples the main thread with the signal"
        main = threading.main_thread()
        native = thread_clocks.native_id(main)
        clock = thread_clocks.clock_id(main.ident or 0, native)
        if clock is None or not native:
            return "the main thread's CPU clock is unknown"
        event = _Sigevent()
        event.sigev_signo = signum
        event.sigev_notify = _SIGEV_THREAD_ID
        event.sigev_tid = native
        timer = ctypes.c_void_p()
        libc = _libc()
        if libc.timer_create(clock, ctypes.byref(event), ctypes.byref(timer)) != 0:
            error = ctypes.get_errno()
            return f"timer_create failed: {os.strerror(error)} (errno {error})"
        self._timer = timer
        self._pid = os.getpid()
        self.ident = main.ident or 0
        STATE.owner = self
        STATE.main_ident = self.ident
        STATE.last_cpu = self._armed_cpu = time.clock_gettime_ns(clock)
        self._runs = STATE.runs
        STATE.sink = self.pending
        STATE.interval_ns = round(self.interval * 1e9)
        self._clock = clock
        first = _Itimerspec(_Timespec(0, 0), _Timespec(0, 0))
        first.it_value.tv_sec, first.it_value.tv_nsec = divmod(STATE.interval_ns, 1_000_000_000)
        if libc.timer_settime(timer, 0, ctypes.byref(first), None) != 0:
            error = ctypes.get_errno()
            self._delete()
            return f"timer_settime failed: {os.strerror(error)} (errno {error})"
        STATE.timer = timer  # from here on the handler sets each next expiry
        return ""

    def check(self) -> bool:
        """Whether the signal still works (at each tick, from the sampling thread).

        If not (our handler was replaced, or no signal has arrived for
        ``SILENT_INTERVALS`` intervals of the main thread's CPU time), the timer is
        deleted, one warning names the cause, and ``False`` is returned: the rest
        of the window samples the main thread from the sampling thread.
        """
        if self._timer is None:
            return True
        signum = signal_number() or 0
        current = signal.getsignal(signum)
        if current is not _handle:
            self._give_up(f"{signal_name(signum)} handler replaced while profiling ({current!r})")
            return False
        if STATE.runs == self._runs:
            try:
                used = time.clock_gettime_ns(self._clock) - self._armed_cpu
            except OSError:  # the main thread has ended
                return True
            if used > SILENT_INTERVALS * self.interval * 1e9:
                self._give_up(
                    f"no {signal_name(signum)} handled in {used / 1e9:.2f} s of the main thread's "
                    "CPU time (blocked on the main thread, or Python handlers never run)"
                )
                return False
        return True

    def _give_up(self, reason: str) -> None:
        self.reason = reason
        self.disarm()
        if not self._warned:
            self._warned = True
            _logger.warning(
                "CPU profiler: %s. The rest of this window samples the main thread from the "
                "sampling thread (short bursts of work that end in a wait are then "
                "misattributed); set OTEL_PROFILING_CPU_SIGNAL=false to always do so.",
                reason,
            )

    def disarm(self) -> None:
        """Delete the timer; the main thread's CPU since the last handler run is queued too."""
        if self._timer is None:
            return
        owned = STATE.owner is self
        self._delete()  # from here on the handler records nothing
        if owned:
            try:
                rest = time.clock_gettime_ns(self._clock) - STATE.last_cpu
            except OSError:  # the main thread has ended
                rest = 0
            self.pending.append((None, rest, time.perf_counter_ns(), None))

    def _delete(self) -> None:
        """Delete the timer (if any) and give up the handler's sink."""
        timer, self._timer = self._timer, None
        if STATE.owner is self:
            STATE.timer = None  # the handler sets no next expiry
        if timer is not None and self._pid == os.getpid():
            libc = _libc()
            if libc is not None:
                libc.timer_delete(timer)
        if STATE.owner is self:
            STATE.sink = None
            STATE.owner = None

    def forget(self) -> None:
        """In a forked child: the parent's timer does not exist here (its id may be reused)."""
        self._timer = None


def _after_fork_in_child() -> None:
    """Timers are not inherited: no window of the parent samples here."""
    global _arming
    _arming = threading.Lock()  # may have been held by another thread of the parent
    STATE.sink = None
    STATE.owner = None
    STATE.timer = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
