"""Triggers: what starts and stops profiling."""

from otel_profiling.triggers.base import Trigger, TriggerTarget
from otel_profiling.triggers.signals import SignalTrigger

__all__ = ["SignalTrigger", "Trigger", "TriggerTarget"]
