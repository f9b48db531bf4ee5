"""Exporters: where finished profiles go."""

from otel_profiling.exporters.base import ProfileExporter, ProfileExportResult
from otel_profiling.exporters.console import ConsoleProfileExporter
from otel_profiling.exporters.memory import InMemoryProfileExporter
from otel_profiling.exporters.otlp import OtlpProfileExporter
from otel_profiling.exporters.s3 import S3Exporter
from otel_profiling.exporters.storage import FsspecProfileExporter

__all__ = [
    "ConsoleProfileExporter",
    "FsspecProfileExporter",
    "InMemoryProfileExporter",
    "OtlpProfileExporter",
    "ProfileExportResult",
    "ProfileExporter",
    "S3Exporter",
]
