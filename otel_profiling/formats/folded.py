"""Collapsed stacks (``folded``): one line ``a;b;c <value>`` per stack.

The format of Brendan Gregg's ``flamegraph.pl``, also read by speedscope,
inferno and most flame-graph tools. Frames are written as ``function
(file:line)``; a ``;`` or newline inside a name is replaced, since both are
separators. Only stacks with a nonzero self value are written, root excluded;
a profile with none (a heap window that left nothing alive) is the one line
``(empty) 0``, so that it is a file like any other rather than no bytes (which
the exporters treat as a profiler that failed). Lines with a value of 0 add
nothing when read back. Values are integers: microseconds for time, bytes for
memory. The format has no unit: read back, values are counts.
"""

from __future__ import annotations

import re
from typing import Dict

from otel_profiling.formats.calltree import CallNode, Frame, add_stack, new_root
from otel_profiling.formats.format import ProfileFormatError, ProfileTree, TreeFormat
from otel_profiling.profile import ProfileKind

_CLEAN = str.maketrans({";": ":", "\n": " ", "\r": " "})
EMPTY = "(empty) 0\n"
"""The whole of a profile with no stack to write."""


def encode_folded(root: CallNode, value_scale: float = 1.0) -> bytes:
    """``root``'s stacks with ``round(self_value * value_scale)`` as the count."""
    labels: Dict[Frame, str] = {}
    lines = []
    for path, node in root.stacks():
        value = round(node.self_value * value_scale)
        if value <= 0:
            continue
        parts = []
        for frame in path:
            label = labels.get(frame)
            if label is None:
                label = labels[frame] = frame.label().translate(_CLEAN)
            parts.append(label)
        lines.append(f"{';'.join(parts)} {value}\n")
    return ("".join(lines) or EMPTY).encode("utf-8")


SCALES = {"seconds": 1e6, "bytes": 1.0, "count": 1.0}
"""Collapsed stacks hold integers: microseconds for time, bytes for memory."""

_LABEL = re.compile(r"^(?P<function>.*) \((?P<file>.*):(?P<line>\d+)\)$")
_LINE = re.compile(rb"^\S.* [0-9.]+$")


def _parse_label(text: str) -> Frame:
    match = _LABEL.match(text)
    if match:
        return Frame(match["function"], match["file"], int(match["line"]))
    return Frame(text)


def decode_folded(data: bytes, unit: str = "count") -> ProfileTree:
    """Collapsed stacks (``a;b;c 42`` per line), as flamegraph.pl and speedscope read them."""
    root = new_root()
    cache: Dict[str, Frame] = {}
    for number, raw in enumerate(data.decode("utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        stack, _, value = line.rpartition(" ")
        try:
            amount = float(value)
        except ValueError:
            raise ProfileFormatError(
                f"line {number} of the folded stacks does not end with a number: {line[:80]!r}"
            ) from None
        if amount == 0:
            continue  # nothing to add (``EMPTY``, or a stack without value)
        frames = [cache.get(p) or cache.setdefault(p, _parse_label(p)) for p in stack.split(";")]
        add_stack(root, frames, amount)
    return ProfileTree(root, unit, "folded", has_counts=False)


class FoldedFormat(TreeFormat):
    """Collapsed stacks, for flamegraph.pl, inferno and speedscope."""

    readable = True
    aliases = ("collapsed",)

    def __init__(self) -> None:
        super().__init__(
            "folded",
            "folded",
            "text/plain; charset=utf-8",
            [ProfileKind.CPU_PROFILE, ProfileKind.HEAP_PROFILE],
        )

    def encode_tree(self, tree: ProfileTree) -> bytes:
        return encode_folded(tree.root, SCALES[tree.unit])

    def decode(self, data: bytes) -> ProfileTree:
        return decode_folded(data)

    def sniff(self, data: bytes) -> bool:
        return bool(_LINE.match(data.split(b"\n", 1)[0].strip()))


FORMAT = FoldedFormat()
