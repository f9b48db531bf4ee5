"""``StartupTrigger``: profiling from the program's start (``OTEL_PROFILING_AT_START``).

It profiles for ``duration`` seconds, or until the program exits. All
triggers of an agent drive the same profilers, so a signal during the
startup window ends it early instead of being refused.
"""

from __future__ import annotations

import sys
import threading
from types import FrameType
from typing import Any, Optional

from otel_profiling import _threads
from otel_profiling.triggers.base import Trigger, TriggerTarget


def main_is_running() -> bool:
    """Whether the ``__main__`` module's code is on this thread's stack (it has begun)."""
    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            return True
        frame = frame.f_back
    return False


class StartupTrigger(Trigger):
    """Starts its profilers with the program; stops them after ``duration`` seconds (if given).

    Installed from ``sitecustomize`` (``otel-profiling run``,
    ``opentelemetry-instrument``), it would start while the interpreter is
    still importing site modules, and those frames would become the root of
    every stack. With ``at_main=True`` it waits, through a one-shot
    ``sys.setprofile`` hook, for the ``__main__`` module's code to begin, so
    the profile's stacks start at the program. ``at_main=None`` waits only
    when the program has not begun yet.
    """

    name = "startup"

    def __init__(self, duration: Optional[float] = None, *, at_main: Optional[bool] = None) -> None:
        super().__init__()
        self.duration = duration
        self.at_main = at_main
        self._stop = threading.Event()
        self._started = False

    def install(self, target: TriggerTarget) -> None:
        super().install(target)
        wait = self.at_main if self.at_main is not None else not main_is_running()
        if wait and threading.current_thread() is threading.main_thread():
            sys.setprofile(self._on_call)
        else:
            self._begin()

    def _on_call(self, frame: FrameType, event: str, arg: Any) -> None:
        if (
            event == "call"
            and frame.f_code.co_name == "<module>"
            and frame.f_globals.get("__name__") == "__main__"
        ):
            sys.setprofile(None)
            self._begin()

    def _begin(self) -> None:
        target = self.target
        if target is None or self._started:
            return
        self._started = True
        target.start("program start")
        if self.duration:
            _threads.start_daemon(self._wait, "startup-window")

    def _wait(self) -> None:
        if not self._stop.wait(self.duration):
            target = self.target
            if target is not None:
                target.stop(f"{self.duration:g} s elapsed")

    def uninstall(self) -> None:
        if sys.getprofile() == self._on_call:
            sys.setprofile(None)
        self._stop.set()
        super().uninstall()
