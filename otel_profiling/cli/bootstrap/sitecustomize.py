"""Imported at interpreter start in programs launched by ``otel-profiling run``.

``run`` puts this directory first on ``PYTHONPATH``; Python imports the
module before the program, profiling is set up by ``configure()`` from the
``OTEL_*`` variables ``run`` exported, and then any other ``sitecustomize`` on the path is imported
as it would have been. A failure is reported on stderr and never stops the
program.
"""

import importlib
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _start() -> None:
    try:
        from otel_profiling.config import configure

        configure()  # as opentelemetry-instrument and the application's own call do
    except ImportError as exc:
        sys.stderr.write(
            f"otel-profiling: profiling not started: {exc} "
            f"(install otel-profiling into {sys.executable}'s environment)\n"
        )
    except Exception as exc:  # noqa: BLE001 - the program must run regardless
        sys.stderr.write(f"otel-profiling: profiling not started: {exc}\n")


def _chain() -> None:
    """Import the ``sitecustomize`` this one shadows, if there is one."""
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    module = sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        if module is not None:
            sys.modules["sitecustomize"] = module
    except Exception as exc:  # noqa: BLE001 - as site.py does: report and go on
        sys.stderr.write(f"Error in sitecustomize: {exc}\n")


_start()
_chain()
