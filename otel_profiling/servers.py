"""Application servers whose processes use signals themselves, and the signal that is safe there.

Checked on running servers (``SigCgt`` of ``/proc/<pid>/status``) and their
sources:

- gunicorn 21-27: the master handles HUP, INT, QUIT, USR1, USR2 (binary
  upgrade), TERM, CHLD, TTIN, TTOU and WINCH; a worker resets ABRT, HUP, QUIT,
  INT, TERM, USR1, USR2, WINCH and CHLD after fork, so SIGUSR2 then ends it.
- uvicorn ``--workers``: the supervisor handles INT, TERM, HUP, QUIT, TTIN, TTOU,
  USR1, USR2 and WINCH; its workers are spawned interpreters of their own that
  handle INT and TERM.
- uWSGI: the master handles HUP, INT, QUIT, USR1, TERM, TSTP (and FPE, SEGV);
  workers HUP, INT, USR1, USR2, PIPE, TERM, TSTP, WINCH and ignore QUIT.

None of them uses real-time signals, and a handler for one survives a fork
(gunicorn resets only the signals it lists), so a process that is, or will
fork into, one of these servers listens on ``SAFE_SIGNAL_OFFSET`` above
``SIGRTMIN`` when the usual SIGUSR2 is taken.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from typing import FrozenSet, Optional

SAFE_SIGNAL_OFFSET = 4
"""The trigger signal under a server that uses SIGUSR2: ``SIGRTMIN+4``."""


@dataclass(frozen=True)
class Server:
    """An application server and the signals its master and workers use."""

    name: str
    signals: FrozenSet[int]

    def uses(self, signum: int) -> bool:
        return signum in self.signals


def _signals(names: str) -> FrozenSet[int]:
    """``"HUP INT"`` → their numbers (those this platform has)."""
    found = (getattr(signal, "SIG" + name, None) for name in names.split())
    return frozenset(int(number) for number in found if number is not None)


GUNICORN = Server("gunicorn", _signals("ABRT HUP QUIT INT TERM USR1 USR2 WINCH CHLD TTIN TTOU"))
UVICORN = Server("uvicorn", _signals("INT TERM HUP QUIT TTIN TTOU USR1 USR2 WINCH"))
UWSGI = Server("uWSGI", _signals("HUP INT QUIT USR1 USR2 TERM TSTP WINCH PIPE FPE SEGV"))


def safe_signal() -> int:
    """The real-time signal none of the servers uses (Linux; ``SIGRTMIN`` varies by libc)."""
    return int(signal.SIGRTMIN) + SAFE_SIGNAL_OFFSET


def detect() -> Optional[Server]:
    """The server this process is, or runs inside; ``None`` for anything else.

    Told from the modules a running server has loaded, else from the command
    line (``gunicorn ...``, ``python -m uvicorn ...``) as
    ``opentelemetry-instrument`` starts it, before the server has imported
    anything, else from the executable (uWSGI embeds the interpreter).
    """
    modules = sys.modules
    if "gunicorn.arbiter" in modules or "gunicorn.workers.base" in modules:
        return GUNICORN
    if "uvicorn.supervisors" in modules:
        return UVICORN
    if "uwsgi" in modules or os.path.basename(sys.executable or "").startswith("uwsgi"):
        return UWSGI
    command = _command_name()
    return {"gunicorn": GUNICORN, "uvicorn": UVICORN}.get(command or "")


def _command_name() -> Optional[str]:
    """``gunicorn`` for ``gunicorn ...`` and ``python -m gunicorn ...`` (the module's top name)."""
    argv = list(getattr(sys, "orig_argv", None) or sys.argv)
    for index, arg in enumerate(argv[:-1]):
        if arg == "-m":
            return argv[index + 1].split(".")[0]
    script = sys.argv[0] if sys.argv else ""
    name = os.path.basename(script)
    if name == "__main__.py":
        name = os.path.basename(os.path.dirname(script))
    return name or None
