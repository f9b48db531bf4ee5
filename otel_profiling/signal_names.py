"""How signals are named in messages: ``SIGUSR2``, real-time ones as ``SIGRTMIN+n``."""

from __future__ import annotations

import signal


def signal_name(signum: int) -> str:
    """``SIGUSR2``; real-time signals (no ``signal.Signals`` member) as ``SIGRTMIN+n``."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIGRTMIN+{signum - int(signal.SIGRTMIN)}"
