"""``otel-profiling trigger PID``: toggle profiling in PID and its children that run an agent.

A started agent publishes its process context (``OTEL_CTX``, see
``otel_profiling.process_context``) with the signal it listens on, so the
command knows before it sends anything which processes run an agent and which
signal each one handles: the master of a gunicorn, uvicorn or uWSGI server and
each of its workers get the signal their agent chose, and a process without an
agent gets nothing (its default action for the signal would end it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from otel_profiling.cli import processes
from otel_profiling.cli.common import PROG, CliError, print_json
from otel_profiling.process_context_reader import (
    ProcessContext,
    ProcessContextUnreadable,
    read_process_context,
)
from otel_profiling.signal_names import signal_name
from otel_profiling.triggers.signals import DEFAULT_SIGNAL, parse_signal

HOW_TO_ENABLE = (
    "start it with `opentelemetry-instrument` and OTEL_PROFILING_ENABLED=true, or with "
    "`otel-profiling run`"
)


MIN_SIGNAL_GAP_S = 1.0  # between a start and a stop signal sent to one process


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "trigger",
        parents=[common],
        help="toggle profiling in a process and its children (e.g. a server's workers)",
        description="Toggle profiling in PID and every process below it that runs an "
        "otel-profiling agent: the first call starts their profilers, the next one stops "
        "them and they export their profiles (a process that is not profiling then, such "
        "as a worker that replaced another, is left alone). Each process gets the signal its agent "
        "listens on (SIGUSR2, or SIGRTMIN+4 under gunicorn, uvicorn and uWSGI), read from "
        "the process context it publishes; processes without an agent get nothing. "
        "Linux only (it reads /proc).",
        epilog="examples:\n"
        "  otel-profiling trigger 4242 --list        # what runs an agent, its signal and URL\n"
        "  otel-profiling trigger 4242 --seconds 30  # profile every worker for 30 s\n"
        "  otel-profiling trigger 4242 --force --signal SIGUSR2   # PID alone, no context",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pid", type=int, help="process id (e.g. a server's master)")
    parser.add_argument(
        "--list", action="store_true", help="only show the processes and their agents"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help="start, wait this long, then stop (one window instead of a toggle)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="send --signal to PID alone without looking for its agent (one that could not "
        "publish a process context); still refused if PID does not catch the signal",
    )
    parser.add_argument("--signal", help="with --force: the signal to send (default SIGUSR2)")
    parser.set_defaults(handler=run)


@dataclass
class Found:
    """One process of the tree and what is known of its agent."""

    process: processes.Process
    context: Optional[ProcessContext] = None
    problem: str = ""

    @property
    def signum(self) -> Optional[int]:
        if self.context is None or self.context.agent_version is None:
            return None
        return self.context.signal

    @property
    def active(self) -> Optional[bool]:
        """Whether its signal trigger profiles now (the next signal stops); ``None``: unknown."""
        return self.context.signal_active if self.context is not None else None

    def row(self) -> Dict[str, Any]:
        context = self.context
        resource = context.resource if context else {}
        return {
            "pid": self.process.pid,
            "ppid": self.process.ppid,
            "name": self.process.name,
            "agent": context.agent_version if context else None,
            "signal": signal_name(self.signum) if self.signum is not None else None,
            "http": context.http_url if context else None,
            "service.name": resource.get("service.name"),
            "service.instance.id": resource.get("service.instance.id"),
            "profiling": self.active,
            "note": self.problem or None,
        }


def run(args: argparse.Namespace) -> int:
    if args.pid <= 0:
        raise CliError(f"{args.pid} is not a process id: give the PID of the profiled program")
    if args.seconds is not None and not 0 < args.seconds <= 3600:
        raise CliError(f"--seconds {args.seconds:g}: give more than 0 and at most 3600 seconds")
    _check_alive(args.pid)
    if args.force:
        return _forced(args)
    if args.signal is not None:
        raise CliError(
            "--signal only applies with --force: without it each process gets the signal "
            "its agent listens on"
        )
    if not processes.has_proc():
        raise CliError(
            "finding the agents needs Linux /proc; pass --force (and --signal) to signal PID alone"
        )
    found = _survey(args.pid)
    if args.list:
        return _print_list(args, found)
    targets = [f for f in found if f.signum is not None and not f.problem]
    if not targets:
        raise CliError(_nobody(args.pid, found))
    targets = _same_direction(targets, starting=args.seconds is not None)
    if not targets:
        raise CliError(
            f"every process of the tree of {args.pid} is already profiling, so nothing was "
            f"sent: `otel-profiling trigger {args.pid}` (without --seconds) stops them"
        )
    sent = _send(args, targets)
    result: Dict[str, Any] = {"signalled": sent}
    if args.seconds is not None and sent:
        _window(args)
        pids = {row["pid"] for row in sent}
        result["stopped"] = _send(
            args, [f for f in targets if f.process.pid in pids], stopping=True
        )
    if args.json:
        result["skipped"] = [f.row() for f in found if f not in targets]
        print_json(result)
    return 0


def _same_direction(targets: List[Found], starting: bool) -> List[Found]:
    """The processes one signal moves the same way: all start, or all stop.

    A toggle stops if any process profiles (its agent says so in its process
    context), and then signals only those that do: a worker forked during the
    window (a replaced worker, a reload) has none open, and the signal would
    start one there. ``--seconds`` (``starting``) starts only those not
    profiling yet. Agents that do not say are signalled either way.
    """
    stopping = not starting and any(f.active for f in targets)
    if stopping:
        chosen = [f for f in targets if f.active is not False]
    else:
        chosen = [f for f in targets if f.active is not True]
    for item in targets:
        if item not in chosen:
            item.problem = (
                "not profiling (started after the others, e.g. a replaced worker): not "
                "signalled, which would start it"
                if stopping
                else "already profiling: not signalled, which would stop it"
            )
            _note(f"process {item.process.pid}: {item.problem}")
    return chosen


def _check_alive(pid: int) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise CliError(f"no process {pid}: it has exited, or the PID is wrong") from None
    except PermissionError:
        raise CliError(f"not allowed to signal process {pid}: run as its user (or root)") from None


def _survey(root: int) -> List[Found]:
    """Every process of the tree with its agent's context, and why it will not be signalled."""
    found: List[Found] = []
    for process in processes.tree(root):
        item = Found(process)
        try:
            item.context = read_process_context(process.pid)
        except ProcessContextUnreadable as exc:
            item.problem = str(exc)
        if item.context is not None and item.context.agent_version is None:
            item.problem = "publishes a process context, but runs no otel-profiling agent"
        elif item.context is not None and item.signum is None:
            item.problem = "its agent has no signal trigger"
        elif item.signum is not None and processes.catches(process.pid, item.signum) is False:
            item.problem = f"does not catch {signal_name(item.signum)} (any more)"
        elif (
            item.context is None
            and process.name.startswith("uwsgi")
            and _has_agent(found, process.ppid)
        ):
            item.problem = (
                "no agent: uWSGI forked it without Python's fork hooks; start uWSGI with "
                "--py-call-uwsgi-fork-hooks (and --enable-threads)"
            )
        found.append(item)
    return found


def _has_agent(found: List[Found], pid: int) -> bool:
    return any(f.process.pid == pid and f.signum is not None for f in found)


def _nobody(root: int, found: List[Found]) -> str:
    notes = "; ".join(f"{f.process.pid}: {f.problem}" for f in found if f.problem)
    return (
        f"no process of the tree of {root} ({len(found)} process(es)) runs an otel-profiling "
        f"agent listening on a signal, so nothing was sent{': ' + notes if notes else ''}. "
        f"To profile it, {HOW_TO_ENABLE}; see `otel-profiling trigger {root} --list`"
    )


def _send(
    args: argparse.Namespace, targets: List[Found], stopping: bool = False
) -> List[Dict[str, Any]]:
    sent = []
    for item in targets:
        assert item.signum is not None
        if stopping and not _may_stop(item.process.pid, item.signum):
            continue
        try:
            os.kill(item.process.pid, item.signum)
        except ProcessLookupError:
            if stopping:
                _exited(item.process.pid)
            continue  # exited meanwhile (a worker being replaced)
        row = {
            "pid": item.process.pid,
            "name": item.process.name,
            "signal": signal_name(item.signum),
        }
        sent.append(row)
        _say(args, f"sent {row['signal']} to {row['pid']} ({row['name']})")
    return sent


def _forced(args: argparse.Namespace) -> int:
    try:
        signum = parse_signal(args.signal) if args.signal else DEFAULT_SIGNAL
    except ValueError as exc:
        raise CliError(str(exc)) from None
    ends_process = signum not in (signal.SIGINT, signal.SIGTERM)
    if ends_process and processes.catches(args.pid, signum) is False:
        raise CliError(
            f"process {args.pid} does not handle {signal_name(signum)}, which would end it: "
            f"{HOW_TO_ENABLE}, or give the --signal its agent listens on"
        )
    row = {"pid": args.pid, "signal": signal_name(signum)}
    os.kill(args.pid, signum)
    _say(args, f"sent {row['signal']} to {args.pid}")
    result: Dict[str, Any] = {"signalled": [row]}
    if args.seconds is not None:
        _window(args)
        result["stopped"] = []
        if _may_stop(args.pid, signum):
            try:
                os.kill(args.pid, signum)
            except ProcessLookupError:
                _exited(args.pid)
            else:
                _say(args, f"sent {row['signal']} to {args.pid}")
                result["stopped"] = [row]
    if args.json:
        result["skipped"] = []
        print_json(result)
    return 0


def _print_list(args: argparse.Namespace, found: List[Found]) -> int:
    rows = [f.row() for f in found]
    if args.json:
        print_json(rows)
        return 0
    print(
        f"{'PID':>7} {'PPID':>7}  {'NAME':<16} {'SIGNAL':<11} {'PROFILING':<9} {'SERVICE':<20} "
        "HTTP / NOTE"
    )
    for row in rows:
        detail = row["http"] or row["note"] or ("no agent" if row["agent"] is None else "")
        profiling = {True: "yes", False: "no", None: "-"}[row["profiling"]]
        print(
            f"{row['pid']:>7} {row['ppid']:>7}  {row['name'][:16]:<16} {row['signal'] or '-':<11} "
            f"{profiling:<9} {str(row['service.name'] or '-')[:20]:<20} {detail}"
        )
    return 0


def _may_stop(pid: int, signum: int) -> bool:
    """Whether ``pid`` still catches the signal it was started with. After the window it
    may have exited, and its PID may belong to another process the signal would end."""
    if processes.catches(pid, signum) is not False:
        return True  # catches it, has exited (the kill says so), or no /proc to tell
    _note(
        f"process {pid} no longer catches {signal_name(signum)} (it exited and its PID was "
        "reused?): not signalled"
    )
    return False


def _exited(pid: int) -> None:
    _note(
        f"process {pid} exited during the window: its agent exported the profile at exit; "
        "list it with `otel-profiling ls`"
    )


def _note(message: str) -> None:
    """On stderr: with --json too, since stdout is the JSON document."""
    sys.stderr.write(f"{PROG}: {message}\n")


def _window(args: argparse.Namespace) -> None:
    """Wait ``--seconds``; Ctrl-C ends the window early (the stop is still sent).

    An early stop still waits ``MIN_SIGNAL_GAP_S`` after the start: two
    deliveries of one standard signal that arrive before the target has
    handled the first merge into one, and the target would never stop.
    """
    began = time.monotonic()
    try:
        _say(args, f"profiling for {args.seconds:g} s (Ctrl-C stops now) ...")
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        _say(args, "interrupted: stopping now")
        rest = min(MIN_SIGNAL_GAP_S, args.seconds) - (time.monotonic() - began)
        if rest > 0:
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(rest)


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.json:
        print(message, flush=True)
