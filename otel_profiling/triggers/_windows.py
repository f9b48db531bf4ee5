"""One profiling window, shared by the timed triggers (interval, thresholds, HTTP).

A window starts the given profilers, waits, and ends exactly the profiles it
started. A heap snapshot has no duration: it is taken as soon as it starts.
"""

from __future__ import annotations

import threading
from typing import List, Mapping, Optional, Sequence

from opentelemetry.util.types import AttributeValue

from otel_profiling.profile import Profile, ProfileKind
from otel_profiling.profilers.base import Profiler
from otel_profiling.triggers.base import TriggerTarget

STOP_ELAPSED = "window elapsed"
STOP_SHUTDOWN = "agent shutdown"
STOP_SNAPSHOT = "snapshot taken"


def start_all(
    target: TriggerTarget,
    profilers: Sequence[Profiler],
    reason: str,
    attributes: Optional[Mapping[str, AttributeValue]] = None,
) -> List[Profile]:
    """Start each profiler; a refused or failed start is skipped (the agent logs and counts it)."""
    started: List[Profile] = []
    for profiler in profilers:
        try:
            started.append(target.start_profiler(profiler, reason, attributes))
        except Exception:  # refused (counted) or failed (logged) by the agent
            continue
    return started


def end_snapshots(target: TriggerTarget, profiles: Sequence[Profile]) -> List[Profile]:
    """End the snapshots among ``profiles`` at once; return the others, still running."""
    running = []
    for profile in profiles:
        if profile.kind is ProfileKind.HEAP_SNAPSHOT:
            target.stop_profile(profile, STOP_SNAPSHOT)
        else:
            running.append(profile)
    return running


def run_window(
    target: TriggerTarget,
    profilers: Sequence[Profiler],
    duration: float,
    stop: threading.Event,
    reason: str,
    attributes: Optional[Mapping[str, AttributeValue]] = None,
) -> List[Profile]:
    """Profile for ``duration`` seconds (less if ``stop`` is set); return what was started."""
    started = start_all(target, profilers, reason, attributes)
    running = end_snapshots(target, started)
    if running:
        interrupted = stop.wait(duration)
        why = STOP_SHUTDOWN if interrupted else STOP_ELAPSED
        for profile in running:
            target.stop_profile(profile, why)
    return started
