"""Triggers: what starts and stops profiling."""

from otel_profiling.triggers.base import Trigger, TriggerTarget
from otel_profiling.triggers.code import ProfileBlock, ProfileHandle
from otel_profiling.triggers.http import HttpTrigger
from otel_profiling.triggers.interval import IntervalTrigger
from otel_profiling.triggers.signals import SignalTrigger
from otel_profiling.triggers.thresholds import CpuThresholdTrigger, MemoryThresholdTrigger

__all__ = [
    "CpuThresholdTrigger",
    "HttpTrigger",
    "IntervalTrigger",
    "MemoryThresholdTrigger",
    "ProfileBlock",
    "ProfileHandle",
    "SignalTrigger",
    "Trigger",
    "TriggerTarget",
]
