"""The ``OTEL_*`` variables otel-profiling reads (besides the standard ones).

Registered in the ``opentelemetry_environment_variables`` entry-point group, so
``opentelemetry-instrument`` also accepts each as an option: ``OTEL_`` dropped,
lower case, e.g. ``--profiling_enabled true``, ``--profiles_exporter console``.
"""

OTEL_PROFILING_ENABLED = "OTEL_PROFILING_ENABLED"
"""``true`` lets ``opentelemetry-instrument`` start profiling (default ``false``)."""

OTEL_PROFILING_TRACE_LINKS = "OTEL_PROFILING_TRACE_LINKS"
"""``true`` (default): under ``opentelemetry-instrument``, add ``ProfilingSpanProcessor``."""

OTEL_PROFILES_EXPORTER = "OTEL_PROFILES_EXPORTER"
"""Comma list: ``fsspec`` (default), ``console``, ``none``, or an installed plugin's name."""

OTEL_EXPORTER_FSSPEC_PROFILES_URL = "OTEL_EXPORTER_FSSPEC_PROFILES_URL"
"""Where the ``fsspec`` exporter writes (default ``file://./profiles``)."""

OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS = "OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS"
"""JSON object of fsspec storage options (endpoint, credentials, ...); never logged."""

OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE = "OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE"
"""Object name template (default ``{kind}-{start_time}.{extension}``)."""

OTEL_PROFILING_PROFILERS = "OTEL_PROFILING_PROFILERS"
"""Comma list of profilers (default ``cpu``)."""

OTEL_PROFILING_SIGNAL = "OTEL_PROFILING_SIGNAL"
"""Signal that toggles the profilers (default ``SIGUSR2``; ``none`` disables)."""

OTEL_BPP_SCHEDULE_DELAY = "OTEL_BPP_SCHEDULE_DELAY"
"""Milliseconds between batch exports."""

OTEL_BPP_MAX_QUEUE_SIZE = "OTEL_BPP_MAX_QUEUE_SIZE"
"""Profiles queued at most."""

OTEL_BPP_MAX_EXPORT_BATCH_SIZE = "OTEL_BPP_MAX_EXPORT_BATCH_SIZE"
"""Profiles per export."""

OTEL_BPP_EXPORT_TIMEOUT = "OTEL_BPP_EXPORT_TIMEOUT"
"""Milliseconds; bound of ``force_flush`` and ``shutdown``."""

OTEL_BPP_MAX_QUEUE_BYTES = "OTEL_BPP_MAX_QUEUE_BYTES"
"""Bytes queued at most."""

OTEL_PROFILING_INTERVAL = "OTEL_PROFILING_INTERVAL"
"""Seconds between profiling windows (unset: no windows)."""

OTEL_PROFILING_DURATION = "OTEL_PROFILING_DURATION"
"""Seconds each profiling window lasts."""

OTEL_PROFILING_HTTP_PORT = "OTEL_PROFILING_HTTP_PORT"
"""Port of the HTTP trigger (unset: off)."""

OTEL_PROFILING_HTTP_HOST = "OTEL_PROFILING_HTTP_HOST"
"""Interface the HTTP trigger binds."""

OTEL_PROFILING_HTTP_TOKEN = "OTEL_PROFILING_HTTP_TOKEN"
"""Bearer token the HTTP trigger requires."""

OTEL_EXPORTER_FSSPEC_PROFILES_TIMEOUT = "OTEL_EXPORTER_FSSPEC_PROFILES_TIMEOUT"
"""Milliseconds; deadline of one export by the ``fsspec`` exporter, retries included."""

OTEL_PROFILING_SPOOL_DIR = "OTEL_PROFILING_SPOOL_DIR"
"""Root of the spool of profiles not yet exported (default: per-user cache; ``none`` disables)."""

OTEL_PROFILING_SPOOL_MAX_BYTES = "OTEL_PROFILING_SPOOL_MAX_BYTES"
"""Size cap of the spool; the oldest entries are evicted first."""
