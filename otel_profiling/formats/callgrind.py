"""Callgrind profile data: what KCachegrind, QCachegrind and gprof2dot read.

One block per function (``fl=`` file, ``fn=`` name, then ``<line> <self
cost>``), followed by one call record per callee (``cfl=``, ``cfn=``,
``calls=<count> <callee line>``, then ``<line> <inclusive cost>``). Files and
functions are numbered on first use and referred to by number afterwards
(the format's name compression). Costs are integer microseconds.

Read back (ours, or valgrind's with the first event as the value), each
function becomes one node under the root with its self cost: the file holds
calls between functions, not stacks.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

from otel_profiling.formats.callgraph import CallGraph, FunctionKey
from otel_profiling.formats.calltree import Frame, add_stack, new_root
from otel_profiling.formats.format import (
    CallGraphCapture,
    ProfileFormat,
    ProfileFormatError,
    ProfileTree,
)
from otel_profiling.profile import ProfileKind

_CLEAN = str.maketrans({"\n": " ", "\r": " "})


def encode_callgrind(graph: CallGraph, event: str = "Time", description: str = "") -> bytes:
    """``graph`` in the callgrind format, one event measured in microseconds."""
    files: Dict[str, int] = {}
    functions: Dict[str, int] = {}
    lines: List[str] = [
        "# callgrind format",
        "version: 1",
        "creator: otel-profiling",
        "positions: line",
        f"event: {event} : {description or event} (microseconds)",
        f"events: {event}",
        "",
    ]
    for key, function in graph.items():
        lines.append(_compressed(files, "fl", key.filename or "???"))
        lines.append(_compressed(functions, "fn", _qualified(key)))
        lines.append(f"{key.lineno} {round(function.self_time * 1e6)}")
        for callee, call in function.callees.items():
            lines.append(_compressed(files, "cfl", callee.filename or "???"))
            lines.append(_compressed(functions, "cfn", _qualified(callee)))
            lines.append(f"calls={call.calls} {callee.lineno}")
            lines.append(f"{key.lineno} {round(call.total_time * 1e6)}")
        lines.append("")
    return "\n".join(lines).encode("utf-8")


def _compressed(numbers: Dict[str, int], prefix: str, name: str) -> str:
    """``prefix=(n) name`` the first time a name is used, ``prefix=(n)`` afterwards."""
    number = numbers.get(name)
    if number is None:
        number = numbers[name] = len(numbers) + 1
        return f"{prefix}=({number}) {name.translate(_CLEAN)}"
    return f"{prefix}=({number})"


def _qualified(key: FunctionKey) -> str:
    """Function names must be unique: two ``run`` in different files are two functions."""
    return f"{key.name} {key.filename}:{key.lineno}" if key.filename else key.name


_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")
_MICROSECONDS = re.compile(r"^event:\s*(\S+)\s*:.*\(microseconds\)\s*$")


def _name(numbers: Dict[str, str], value: str) -> str:
    """A compressed ``(n) name`` / ``(n)`` reference, or a plain name."""
    match = _NAMED.match(value)
    if match is None:
        return value
    number, name = match.groups()
    if name is not None:
        numbers[number] = name
        return name
    if number not in numbers:
        raise ProfileFormatError(f"callgrind name ({number}) is used before it is defined")
    return numbers[number]


def decode_callgrind(data: bytes) -> ProfileTree:
    """Self cost per function of the first event (microseconds of time for our files)."""
    files: Dict[str, str] = {}
    functions: Dict[str, str] = {}
    root = new_root()
    timed: List[str] = []
    events: List[str] = []
    filename = ""
    function: Optional[str] = None
    inclusive_next = False
    positions = 1  # position columns before the costs ("positions: instr line" has two)
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep and key in ("fl", "fi", "fe"):
            filename = _name(files, value)
        elif sep and key == "fn":
            function = _name(functions, value)
        elif sep and key in ("cfl", "cfi", "cob", "ob", "cfn"):
            if key in ("cfl", "cfi"):
                _name(files, value)
            elif key == "cfn":
                _name(functions, value)
        elif sep and key == "calls":
            inclusive_next = True  # the next cost line is the call's inclusive cost
        elif line.startswith("positions:"):
            positions = max(len(line.split(":", 1)[1].split()), 1)
        elif line.startswith("events:"):
            events = line.split(":", 1)[1].split()
        elif line.startswith("event:"):
            match = _MICROSECONDS.match(line)
            if match:
                timed.append(match.group(1))
        elif line[0].isdigit() or line[0] in "+-*":
            if inclusive_next:
                inclusive_next = False
                continue
            if function is None:
                raise ProfileFormatError(
                    f"line {number} of the callgrind file has a cost before fn="
                )
            parts = line.split()
            first = parts[positions] if len(parts) > positions else ""
            cost = int(first) if first.isdigit() else 0
            name = function
            suffix = f" {filename}:"
            if filename and suffix in name:  # our unique names: "run file:line"
                name = name[: name.rindex(suffix)]
            where = parts[positions - 1]  # the line is the last position column
            lineno = int(where) if where.isdigit() else 0
            add_stack(root, [Frame(name, "" if filename == "???" else filename, lineno)], cost)
    if not events:
        raise ProfileFormatError("not a callgrind file: no 'events:' line")
    if events[0] in timed:
        for node, _ in root.walk():
            node.self_value /= 1e6
        clock = events[0] if events[0] in ("wall", "cpu") else ""
        return ProfileTree(root, "seconds", "callgrind", measure=clock, has_counts=False)
    return ProfileTree(root, "count", "callgrind", has_counts=False)


class CallgrindFormat(ProfileFormat):
    """Callgrind data (KCachegrind, QCachegrind, gprof2dot), from yappi's exact call graph."""

    readable = True
    writes_from = "the exact call graph of engine='yappi'"

    def __init__(self) -> None:
        super().__init__(
            "callgrind", "callgrind", "text/plain; charset=utf-8", [ProfileKind.CPU_PROFILE]
        )

    def accepts(self, capture: type) -> bool:
        return capture is CallGraphCapture

    def encode(self, capture: object) -> bytes:
        if isinstance(capture, CallGraphCapture):
            return encode_callgrind(capture.graph, capture.clock, f"{capture.clock} time")
        return super().encode(capture)

    def decode(self, data: bytes) -> ProfileTree:
        return decode_callgrind(data)

    def sniff(self, data: bytes) -> bool:
        head = data[:512]
        return head.startswith(b"# callgrind format") or b"\nevents:" in head


FORMAT = CallgrindFormat()
