"""``otel-profiling run [options] -- python app.py``: a program profiled with no code change.

Like ``opentelemetry-instrument``: the options become ``OTEL_*`` variables, a
bootstrap directory holding a ``sitecustomize`` is put first on
``PYTHONPATH``, and the command replaces this process (same PID, so
``otel-profiling trigger PID`` reaches it). Every Python process the program
starts inherits the settings and is profiled too.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List

from opentelemetry.sdk.environment_variables import (
    OTEL_SERVICE_NAME,
)

from otel_profiling.cli.common import CliError
from otel_profiling.environment_variables import (
    OTEL_EXPORTER_FSSPEC_PROFILES_URL,
    OTEL_PROFILING_AT_START,
    OTEL_PROFILING_DURATION,
    OTEL_PROFILING_INTERVAL,
    OTEL_PROFILING_PROFILERS,
    OTEL_PROFILING_SIGNAL,
)
from otel_profiling.redact import redact_url
from otel_profiling.triggers.safe_signals import check_trigger_signal
from otel_profiling.triggers.signals import parse_signal

BOOTSTRAP = Path(__file__).resolve().parent / "bootstrap"


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "run",
        help="run a Python program with profiling configured",
        description="Run COMMAND (a Python program) with profiling set up before it starts. "
        "By default the whole run is profiled and exported at exit; --duration bounds "
        "that window; with --signal or --interval profiling waits for the signal or the "
        "timer instead (add --at-start to also profile the start). Options not given "
        "keep their OTEL_* environment values.",
        epilog="examples:\n"
        "  otel-profiling run --cpu --duration 30 --url s3://bucket/profiles -- python app.py\n"
        "  otel-profiling run --signal SIGUSR2 -m myservice --port 8080",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="CPU profiles (engine: OTEL_PROFILING_CPU_ENGINE, sampling by default)",
    )
    parser.add_argument("--heap", action="store_true", help="heap profiles (tracemalloc)")
    parser.add_argument("--snapshot", action="store_true", help="heap snapshots (gc graph)")
    parser.add_argument("--url", help="where profiles go (OTEL_EXPORTER_FSSPEC_PROFILES_URL)")
    parser.add_argument("--service", help="service.name of the profiles (OTEL_SERVICE_NAME)")
    parser.add_argument("--signal", help="signal that toggles profiling, or 'none'")
    parser.add_argument("--interval", type=float, help="seconds between profiling windows")
    parser.add_argument("--duration", type=float, help="seconds each profiling window lasts")
    parser.add_argument(
        "--at-start",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile from the program's start (default: unless --signal/--interval)",
    )
    parser.add_argument("-m", dest="module", help="run a module, as python -m MODULE")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- python app.py [args]")
    parser.set_defaults(handler=run)


def _command(args: argparse.Namespace) -> List[str]:
    rest = list(args.command)
    if rest and rest[0] == "--":
        rest = rest[1:]
    if args.module:
        return [sys.executable, "-m", args.module, *rest]
    if not rest:
        raise CliError("nothing to run: give the program after --, e.g. -- python app.py")
    if rest[0].endswith(".py"):
        return [sys.executable, *rest]
    return rest


def environment(args: argparse.Namespace) -> Dict[str, str]:
    """The process environment with the options as ``OTEL_*`` variables and the bootstrap."""
    env = dict(os.environ)
    profilers = [name for name in ("cpu", "heap", "snapshot") if getattr(args, name)]
    if profilers:
        env[OTEL_PROFILING_PROFILERS] = ",".join(profilers)
    if args.url:
        _check_url(args.url)
        env[OTEL_EXPORTER_FSSPEC_PROFILES_URL] = args.url
    if args.service:
        env[OTEL_SERVICE_NAME] = args.service
    if args.signal:
        if args.signal.lower() != "none":
            try:
                check_trigger_signal(parse_signal(args.signal))
            except ValueError as exc:
                raise CliError(str(exc)) from None
        env[OTEL_PROFILING_SIGNAL] = args.signal
    for name, value, variable in (
        ("interval", args.interval, OTEL_PROFILING_INTERVAL),
        ("duration", args.duration, OTEL_PROFILING_DURATION),
    ):
        if value is not None:
            if not (0 < value < math.inf):  # also refuses nan, which argparse's float accepts
                raise CliError(f"--{name} must be a positive number of seconds, not {value:g}")
            env[variable] = f"{value:g}"
    at_start = args.at_start
    if at_start is None:
        at_start = not (args.signal or args.interval)
    env[OTEL_PROFILING_AT_START] = "true" if at_start else "false"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(BOOTSTRAP), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    return env


def _check_url(url: str) -> None:
    from otel_profiling.exporters.storage import FsspecProfileExporter

    try:
        FsspecProfileExporter(url)
    except (ImportError, ValueError) as exc:
        raise CliError(f"--url {redact_url(url)}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    command = _command(args)
    env = environment(args)
    executable = shutil.which(command[0], path=env.get("PATH"))
    if executable is None:
        raise CliError(f"command not found: {command[0]} (check the name and PATH)")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(executable, command, env)
    except OSError as exc:
        raise CliError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    return 1  # not reached
