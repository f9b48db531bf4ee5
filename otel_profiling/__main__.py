"""``python -m otel_profiling``: the ``otel-profiling`` command."""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``otel-profiling`` console script."""
    from otel_profiling.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
