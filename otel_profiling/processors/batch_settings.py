"""The batch processor's settings: an argument, else ``OTEL_BPP_*``, else the default.

An argument out of range is a ``ValueError``; a variable out of range is
clamped into it with a warning (as the OpenTelemetry SDK does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from otel_profiling._env import env_int, warn_env
from otel_profiling._limits import ENV_MIN_EXPORT_TIMEOUT_MILLIS, MAX_EXPORT_TIMEOUT_MILLIS
from otel_profiling.environment_variables import (
    OTEL_BPP_EXPORT_TIMEOUT,
    OTEL_BPP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BPP_MAX_QUEUE_BYTES,
    OTEL_BPP_MAX_QUEUE_SIZE,
    OTEL_BPP_SCHEDULE_DELAY,
)

DEFAULT_SCHEDULE_DELAY_MILLIS = 1_000
DEFAULT_MAX_QUEUE_SIZE = 256
DEFAULT_MAX_EXPORT_BATCH_SIZE = 32
DEFAULT_EXPORT_TIMEOUT_MILLIS = 30_000
DEFAULT_MAX_QUEUE_BYTES = 256 * 1024 * 1024
MAX_SCHEDULE_DELAY_MILLIS = 3_600_000
ENV_MIN_SCHEDULE_DELAY_MILLIS = 100  # from the environment: a delay of 0 would spin a core
KEEP_GRACE_MILLIS = 2_000
"""How long shutdown waits past its deadline for the worker to finish writing to the
spool a batch it could not send (a local write, begun before the deadline)."""


@dataclass(frozen=True)
class BatchSettings:
    schedule_delay_millis: int
    max_queue_size: int
    max_export_batch_size: int
    export_timeout_millis: int
    max_queue_bytes: int


def batch_settings(
    schedule_delay_millis: Optional[float] = None,
    max_queue_size: Optional[int] = None,
    max_export_batch_size: Optional[int] = None,
    export_timeout_millis: Optional[float] = None,
    max_queue_bytes: Optional[int] = None,
) -> BatchSettings:
    """Each setting from its argument, its variable or its default; checked together."""
    queue_size = pick_setting(max_queue_size, OTEL_BPP_MAX_QUEUE_SIZE, DEFAULT_MAX_QUEUE_SIZE, 1)
    batch_size = pick_setting(
        max_export_batch_size, OTEL_BPP_MAX_EXPORT_BATCH_SIZE, DEFAULT_MAX_EXPORT_BATCH_SIZE, 1
    )
    if batch_size > queue_size:
        if max_export_batch_size is not None and max_queue_size is not None:
            raise ValueError(
                f"max_export_batch_size ({batch_size}) must not exceed "
                f"max_queue_size ({queue_size})."
            )
        warn_env(  # one at least came from the environment or a default
            OTEL_BPP_MAX_EXPORT_BATCH_SIZE,
            "The export batch size %d (OTEL_BPP_MAX_EXPORT_BATCH_SIZE) exceeds the queue "
            "size %d (OTEL_BPP_MAX_QUEUE_SIZE); using batches of %d.",
            batch_size,
            queue_size,
            queue_size,
        )
        batch_size = queue_size
    return BatchSettings(
        schedule_delay_millis=pick_setting(
            schedule_delay_millis,
            OTEL_BPP_SCHEDULE_DELAY,
            DEFAULT_SCHEDULE_DELAY_MILLIS,
            1,
            MAX_SCHEDULE_DELAY_MILLIS,
            ENV_MIN_SCHEDULE_DELAY_MILLIS,
            unit="ms",
        ),
        max_queue_size=queue_size,
        max_export_batch_size=batch_size,
        export_timeout_millis=pick_setting(
            export_timeout_millis,
            OTEL_BPP_EXPORT_TIMEOUT,
            DEFAULT_EXPORT_TIMEOUT_MILLIS,
            1,
            MAX_EXPORT_TIMEOUT_MILLIS,
            ENV_MIN_EXPORT_TIMEOUT_MILLIS,
            unit="ms",
        ),
        max_queue_bytes=pick_setting(
            max_queue_bytes, OTEL_BPP_MAX_QUEUE_BYTES, DEFAULT_MAX_QUEUE_BYTES, 1
        ),
    )


def pick_setting(
    value: Optional[float],
    env: str,
    default: int,
    minimum: int,
    maximum: Optional[int] = None,
    env_minimum: Optional[int] = None,
    unit: str = "",
) -> int:
    """An argument, checked (``ValueError``); else the variable, clamped into its range."""
    if value is None:
        floor = minimum if env_minimum is None else env_minimum
        return env_int(env, default, floor, maximum=maximum, unit=unit)
    high = math.inf if maximum is None else maximum
    if isinstance(value, bool) or not (minimum <= value <= high):  # also refuses nan
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{env.replace('OTEL_BPP_', '').lower()} must be {bound}, got {value}")
    return int(value)
