"""The library's version and the name it is installed under."""

__version__ = "0.1.0"

DISTRIBUTION = "otel-profiling-agent"
"""The name pip installs the package (and its extras) by. The import name is
``otel_profiling`` and the command ``otel-profiling``; PyPI's ``otel-profiling``
is another project."""


def install_command(extra: str) -> str:
    """The command that installs an extra, for error messages: the one home of install hints."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
