"""Programs that time their own hot code, for the sampling engine's ground-truth tests.

Each function adds the wall time it really ran (``time.perf_counter``) to
``MEASURED``, so a test compares what the profile says with what the program
knows about itself.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Dict

MEASURED: Dict[str, float] = collections.defaultdict(float)


def spin(seconds: float) -> int:
    """Keep the CPU busy for ``seconds`` of wall time."""
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        count += 1
    return count


def spin_cpu(seconds: float) -> int:
    """Keep the CPU busy until this thread has used ``seconds`` of CPU time."""
    end = time.thread_time() + seconds
    count = 0
    while time.thread_time() < end:
        for _ in range(200):
            count += 1
    return count


def timed(name: str, seconds: float) -> None:
    began = time.perf_counter()
    spin(seconds)
    MEASURED[name] += time.perf_counter() - began


# -- the program: only shared(True) reaches slow_leaf ---------------------------


def cheap_leaf() -> int:
    return sum(range(20))


def slow_leaf() -> None:
    began = time.perf_counter()
    spin(0.002)
    MEASURED["slow_leaf"] += time.perf_counter() - began


def shared(slow: bool) -> object:
    return slow_leaf() if slow else cheap_leaf()


def handler_a() -> None:
    for _ in range(50):
        shared(False)


def handler_b() -> None:
    shared(True)


def serve(seconds: float) -> None:
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        handler_a()
        handler_b()
    MEASURED["serve"] += time.perf_counter() - began


# -- phases, in order ----------------------------------------------------------------------


def parse_phase() -> None:
    timed("parse_phase", 0.6)


def compute_phase() -> None:
    timed("compute_phase", 0.8)


def two_phases() -> None:
    parse_phase()
    compute_phase()


# -- asyncio: waiting and computing in coroutines ----------------------------------------


async def waiter(seconds: float) -> None:
    began = time.perf_counter()
    await asyncio.sleep(seconds)
    MEASURED["waiter"] += time.perf_counter() - began


async def computer(seconds: float) -> None:
    began = time.perf_counter()
    spin(seconds)
    MEASURED["computer"] += time.perf_counter() - began


async def async_handler() -> None:
    await waiter(1.0)
    await computer(0.5)


class Worker:
    """A method running in a thread: its frames are named ``Worker.run``."""

    def __init__(self, cpu_seconds: float) -> None:
        self.cpu_seconds = cpu_seconds
        self.used = 0.0
        self.done = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        began = time.thread_time()
        spin_cpu(self.cpu_seconds)
        self.used = time.thread_time() - began
        self.done.set()
        self.release.wait(60)  # stay alive until the profile has stopped
