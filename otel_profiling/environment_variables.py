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
"""Comma list: ``fsspec`` (default), ``otlp``, ``console``, ``none``, or a plugin's name."""

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

OTEL_PROFILING_AT_START = "OTEL_PROFILING_AT_START"
"""``true``: profile from the program's start for ``OTEL_PROFILING_DURATION`` seconds, else until
exit (set by ``otel-profiling run``) (default ``false``).
"""

OTEL_PROFILING_FLUSH_ON_SIGTERM = "OTEL_PROFILING_FLUSH_ON_SIGTERM"
"""``true``: a process ended by SIGTERM first exports its open windows and queued profiles
(``flush_on_sigterm()``, installed when the agent starts) (default ``false``).
"""

OTEL_PROFILING_CPU_BUILTINS = "OTEL_PROFILING_CPU_BUILTINS"
"""Also record C functions (default ``true``)."""

OTEL_PROFILING_CPU_BY_SPAN = "OTEL_PROFILING_CPU_BY_SPAN"
"""Group each thread's CPU samples by OpenTelemetry span (``CpuProfiler(by_span=True)``; sampling
engine) (default ``false``).
"""

OTEL_PROFILING_CPU_SIGNAL = "OTEL_PROFILING_CPU_SIGNAL"
"""Under ``OTEL_PROFILING_CPU_CLOCK=cpu`` (sampling engine, Linux), sample the main thread's CPU
time with a timer signal (``SIGRTMIN+6``) on its own CPU clock, so short bursts of work before a
wait keep their time (default ``true``).
"""

OTEL_PROFILING_CPU_CLOCK = "OTEL_PROFILING_CPU_CLOCK"
"""``wall`` or ``cpu`` (default ``wall``)."""

OTEL_PROFILING_CPU_ENGINE = "OTEL_PROFILING_CPU_ENGINE"
"""CPU engine: ``sampling`` (exact stacks, real timeline, low cost) or ``yappi`` (exact call
counts) (default ``sampling``; ``yappi`` for the ``pstats`` and ``callgrind`` formats).
"""

OTEL_PROFILING_CPU_INTERVAL = "OTEL_PROFILING_CPU_INTERVAL"
"""Seconds between two samples of the sampling CPU engine, 0.001 to 60 (default ``0.01``)."""

OTEL_PROFILING_CPU_COOLDOWN = "OTEL_PROFILING_CPU_COOLDOWN"
"""Seconds between two CPU-triggered profiles (default ``300``)."""

OTEL_PROFILING_CPU_FORMAT = "OTEL_PROFILING_CPU_FORMAT"
"""``cpuprofile``, ``pprof``, ``pstats``, ``callgrind`` or ``folded`` (default ``cpuprofile``)."""

OTEL_PROFILING_CPU_FOR_SECONDS = "OTEL_PROFILING_CPU_FOR_SECONDS"
"""Seconds the CPU use must last (default ``30``)."""

OTEL_PROFILING_CPU_THRESHOLD = "OTEL_PROFILING_CPU_THRESHOLD"
"""CPU use, percent of one core, that triggers a CPU profile (default unset: off)."""

OTEL_PROFILING_HEAP_FORMAT = "OTEL_PROFILING_HEAP_FORMAT"
"""``heapprofile``, ``pprof`` or ``folded`` (default ``heapprofile``)."""

OTEL_PROFILING_HEAP_FRAMES = "OTEL_PROFILING_HEAP_FRAMES"
"""Stack depth per allocation (1 to 65535) (default ``64``)."""

OTEL_PROFILING_HTTP_MAX_SECONDS = "OTEL_PROFILING_HTTP_MAX_SECONDS"
"""Largest ``seconds=`` accepted (default ``300``)."""

OTEL_PROFILING_JITTER = "OTEL_PROFILING_JITTER"
"""Largest random delay before the first window, seconds (default the interval)."""

OTEL_PROFILING_MEMORY_COOLDOWN = "OTEL_PROFILING_MEMORY_COOLDOWN"
"""Seconds between two memory-triggered profiles (default ``300``)."""

OTEL_PROFILING_MEMORY_THRESHOLD = "OTEL_PROFILING_MEMORY_THRESHOLD"
"""Resident memory that triggers heap profiling: bytes, ``512MiB``, ``2GB`` (unset: off)."""

OTEL_PROFILING_SNAPSHOT_GC_COLLECT = "OTEL_PROFILING_SNAPSHOT_GC_COLLECT"
"""Run ``gc.collect()`` before a heap snapshot (default ``true``)."""

OTEL_PROFILING_THRESHOLD_DURATION = "OTEL_PROFILING_THRESHOLD_DURATION"
"""Seconds a threshold-triggered heap or CPU profile lasts (default ``10``)."""

DASK_SCHEDULER_ADDRESS = "DASK_SCHEDULER_ADDRESS"
"""Dask's own variable: ``merge`` and ``diff`` run on that scheduler unless given ``--workers``."""

OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT = "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT"
"""URL the ``otlp`` exporter sends profiles to, used as given (default: the generic
``OTEL_EXPORTER_OTLP_ENDPOINT`` plus ``/v1development/profiles`` for HTTP,
``http://localhost:4318/v1development/profiles``; ``http://localhost:4317`` for gRPC).
"""

OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL = "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL"
"""``http/protobuf`` or ``grpc`` (default ``OTEL_EXPORTER_OTLP_PROTOCOL``, else
``http/protobuf``).
"""

OTEL_EXPORTER_OTLP_PROFILES_HEADERS = "OTEL_EXPORTER_OTLP_PROFILES_HEADERS"
"""``key=value,...`` sent with each request (default ``OTEL_EXPORTER_OTLP_HEADERS``); never
logged.
"""

OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT = "OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT"
"""Milliseconds; deadline of one export, retries included (default ``OTEL_EXPORTER_OTLP_TIMEOUT``,
else ``10000``).
"""

OTEL_EXPORTER_OTLP_PROFILES_COMPRESSION = "OTEL_EXPORTER_OTLP_PROFILES_COMPRESSION"
"""``gzip`` or ``none`` (default ``OTEL_EXPORTER_OTLP_COMPRESSION``, else ``none``)."""

OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE = "OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE"
"""PEM file of the CA that signs the receiver's certificate (default
``OTEL_EXPORTER_OTLP_CERTIFICATE``; else the system's).
"""

OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY = "OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY"
"""PEM file of the client's private key for mTLS (default ``OTEL_EXPORTER_OTLP_CLIENT_KEY``)."""

OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE = "OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE"
"""PEM file of the client's certificate for mTLS (default
``OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE``).
"""

OTEL_EXPORTER_OTLP_PROFILES_INSECURE = "OTEL_EXPORTER_OTLP_PROFILES_INSECURE"
"""gRPC to an endpoint without scheme: ``true`` for plain text (default
``OTEL_EXPORTER_OTLP_INSECURE``, else ``false``).
"""
