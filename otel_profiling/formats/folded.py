"""Collapsed stacks (``folded``): one line ``a;b;c <value>`` per stack.

The format of Brendan Gregg's ``flamegraph.pl``, also read by speedscope,
inferno and most flame-graph tools. Frames are written as ``function
(file:line)``; a ``;`` or newline inside a name is replaced, since both are
separators. Only stacks with a nonzero self value are written, root excluded.
"""

from __future__ import annotations

from typing import Dict

from otel_profiling.formats.calltree import CallNode, Frame

_CLEAN = str.maketrans({";": ":", "\n": " ", "\r": " "})


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
    return "".join(lines).encode("utf-8")
