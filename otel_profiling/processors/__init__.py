"""Processors: what happens to a profile once it ends (export now, or batch)."""

from otel_profiling.processors.base import ProfileProcessor, SimpleProfileProcessor
from otel_profiling.processors.batch import BatchProfileProcessor
from otel_profiling.processors.spool import Spool

__all__ = ["BatchProfileProcessor", "ProfileProcessor", "SimpleProfileProcessor", "Spool"]
