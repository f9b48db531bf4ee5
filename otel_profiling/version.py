"""The library's version and the name it is installed under."""

__version__ = "0.1.0"

DISTRIBUTION = "otel-profiling-agent"
"""The name on PyPI. The import name stays ``otel_profiling`` and the command
``otel-profiling``; PyPI's ``otel-profiling`` is another project."""


def install_hint(*extras: str) -> str:
    """The ``pip install`` line that adds *extras*, for errors that name a missing one."""
    wanted = f"[{','.join(extras)}]" if extras else ""
    return f"pip install '{DISTRIBUTION}{wanted}'"
