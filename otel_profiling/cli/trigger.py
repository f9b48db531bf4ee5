"""``otel-profiling trigger PID``: send the profiling signal to a running process."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import Optional

from otel_profiling.cli.common import CliError, print_json
from otel_profiling.triggers.signals import parse_signal


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "trigger",
        parents=[common],
        help="send the profiling signal to a running process",
        description="Send the trigger signal (SIGUSR2 by default) to PID: the first one "
        "starts its profilers, the next one stops them and exports the profile. The "
        "process must handle the signal (profiling configured); otherwise the signal's "
        "default action would end it, so that is refused unless --force.",
        epilog="example: otel-profiling trigger 4242 --signal SIGUSR2",
    )
    parser.add_argument("pid", type=int, help="process id")
    parser.add_argument(
        "--signal", default="SIGUSR2", help="signal name or number (default SIGUSR2)"
    )
    parser.add_argument(
        "--force", action="store_true", help="send even if the process does not handle the signal"
    )
    parser.set_defaults(handler=run)


def handles_signal(pid: int, signum: int) -> Optional[bool]:
    """Whether ``pid`` catches ``signum`` (Linux ``/proc``); ``None`` when it cannot be told."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return None


def run(args: argparse.Namespace) -> int:
    try:
        signum = parse_signal(args.signal)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.pid <= 0:
        raise CliError(f"{args.pid} is not a process id: give the PID of the profiled program")
    try:
        os.kill(args.pid, 0)
    except ProcessLookupError:
        raise CliError(f"no process {args.pid}: it has exited, or the PID is wrong") from None
    except PermissionError:
        raise CliError(
            f"not allowed to signal process {args.pid}: run as its user (or root)"
        ) from None
    fatal = signum not in (signal.SIGINT, signal.SIGTERM)
    if fatal and not args.force and handles_signal(args.pid, signum) is False:
        raise CliError(
            f"process {args.pid} does not handle {signum.name}, which would end it: start "
            "it with `otel-profiling run` (or enable profiling), or pass --force"
        )
    try:
        os.kill(args.pid, signum)
    except ProcessLookupError:
        raise CliError(f"no process {args.pid}: it has exited") from None
    if args.json:
        print_json({"pid": args.pid, "signal": signum.name})
    else:
        print(f"sent {signum.name} to {args.pid}")
    return 0
