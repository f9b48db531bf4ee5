"""Which signals may trigger profiling: only those nothing else in a process acts on.

A trigger signal replaces the process's handler. Taking one that ends or stops
a process (SIGTERM: a container could no longer be stopped), that reports a
fault, that the runtime or a server uses itself (SIGCHLD, SIGWINCH, SIGHUP,
gunicorn's TTIN/TTOU, timers) would break the host. Allowed: SIGUSR1, SIGUSR2
and the real-time signals SIGRTMIN..SIGRTMAX, which nothing sends by default,
except the one the CPU profiler's main-thread timer sends (``main_signal``).
"""

from __future__ import annotations

import signal
from typing import Dict, Optional, Union

from otel_profiling.profilers import main_signal
from otel_profiling.signal_names import signal_name

ALLOWED = "SIGUSR2, SIGUSR1 or a real-time signal SIGRTMIN+n"

_ENDS = "asks the process to end"
_STOPS = "stops the process (job control)"
_FAULT = "reports a fault and must end the process"
_REASONS: Dict[str, str] = {
    "SIGKILL": "cannot be caught",
    "SIGSTOP": "cannot be caught",
    "SIGTERM": f"{_ENDS}: container runtimes and process managers stop programs with it",
    "SIGINT": f"{_ENDS} (Ctrl-C, KeyboardInterrupt)",
    "SIGQUIT": f"{_ENDS}; servers use it for a graceful stop",
    "SIGHUP": f"{_ENDS} or reload its configuration (servers use it)",
    "SIGTSTP": _STOPS,
    "SIGTTIN": f"{_STOPS}; gunicorn adds a worker on it",
    "SIGTTOU": f"{_STOPS}; gunicorn removes a worker on it",
    "SIGCONT": "resumes a stopped process",
    "SIGCHLD": "reports ended child processes; servers and subprocess rely on it",
    "SIGPIPE": "reports a broken pipe (Python ignores it on purpose)",
    "SIGWINCH": "reports a terminal resize; gunicorn stops its workers on it",
    "SIGALRM": "is the timer of signal.alarm and setitimer",
    "SIGVTALRM": "is a timer signal (setitimer, sampling profilers)",
    "SIGPROF": "is a timer signal (setitimer, sampling profilers)",
    "SIGSEGV": _FAULT,
    "SIGBUS": _FAULT,
    "SIGFPE": _FAULT,
    "SIGILL": _FAULT,
    "SIGABRT": _FAULT,
    "SIGSYS": _FAULT,
    "SIGTRAP": "is used by debuggers",
    "SIGXCPU": "reports a CPU time limit reached",
    "SIGXFSZ": "reports a file size limit reached",
}


def _real_time(number: int) -> bool:
    low = getattr(signal, "SIGRTMIN", None)
    high = getattr(signal, "SIGRTMAX", None)
    return low is not None and high is not None and int(low) <= number <= int(high)


def refusal(signum: Union[int, signal.Signals]) -> Optional[str]:
    """Why a trigger may not use ``signum`` ("SIGTERM asks the process to end"), or ``None``."""
    number = int(signum)
    if number == main_signal.signal_number():
        return f"{signal_name(number)} is the CPU profiler's timer signal (its main-thread samples)"
    if number in (signal.SIGUSR1, signal.SIGUSR2) or _real_time(number):
        return None
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return f"{name} {_REASONS.get(name, 'is not meant for user commands')}"


def check_trigger_signal(signum: Union[int, signal.Signals]) -> None:
    """Raise ``ValueError``, saying why and what to use, unless a trigger may use ``signum``."""
    why = refusal(signum)
    if why is not None:
        raise ValueError(f"{why}, so it cannot trigger profiling: use {ALLOWED}.")
