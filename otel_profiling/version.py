__version__ = "0.1.0"

DISTRIBUTION = "otel-profiling"
"""The name pip installs the package (and its extras) by; the import name is ``otel_profiling``."""


def install_command(extra: str) -> str:
    """The command that installs an extra, for error messages: the one home of install hints."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
