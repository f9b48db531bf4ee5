"""Profiling set up inside a program started by ``otel-profiling run``.

``start_from_env()`` builds the agent as ``configure()`` does (exporters,
profilers and triggers from ``OTEL_*`` variables) and, when
``OTEL_PROFILING_AT_START`` is true, adds a ``StartupTrigger``: profiling from
the program's start for ``OTEL_PROFILING_DURATION`` seconds, or until it exits.
All triggers drive the same profilers, so a signal during the startup window
ends it early instead of being refused.
"""

from __future__ import annotations

import sys
import threading
from types import FrameType
from typing import Any, List, Optional

from otel_profiling import _threads
from otel_profiling._env import env_bool
from otel_profiling.agent import ProfilingAgent
from otel_profiling.config import agent_from_env
from otel_profiling.triggers.base import Trigger, TriggerTarget
from otel_profiling.triggers.env import window_duration_from_env


class StartupTrigger(Trigger):
    """Starts its profilers with the program; stops them after ``duration`` seconds (if given).

    Installed from ``sitecustomize``, it would start while the interpreter is
    still importing site modules, and those frames would become the root of
    every stack. With ``at_main=True`` it waits, through a one-shot
    ``sys.setprofile`` hook, for the ``__main__`` module's code to begin, so
    the profile's stacks start at the program.
    """

    name = "startup"

    def __init__(self, duration: Optional[float] = None, *, at_main: bool = False) -> None:
        super().__init__()
        self.duration = duration
        self.at_main = at_main
        self._stop = threading.Event()
        self._started = False

    def install(self, target: TriggerTarget) -> None:
        super().install(target)
        if self.at_main and threading.current_thread() is threading.main_thread():
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


def start_from_env() -> Optional[ProfilingAgent]:
    """The agent ``otel-profiling run`` asks for through the environment; ``None`` if disabled."""
    if env_bool("OTEL_SDK_DISABLED", False):
        return None
    extra: List[Trigger] = []
    if env_bool("OTEL_PROFILING_AT_START", False):
        extra.append(StartupTrigger(window_duration_from_env(None), at_main=True))
    return agent_from_env(extra_triggers=extra)
