"""Adding call trees together: the merged tree of many profiles of one kind.

Merging walks the source tree once and adds each node's self value and count
to the node at the same path in the target, so the target grows only with
paths it has not seen: memory stays bounded by the merged tree, whatever the
number of inputs.
"""

from __future__ import annotations

from typing import List, Tuple

from otel_profiling.formats.calltree import CallNode


def merge_into(target: CallNode, source: CallNode) -> CallNode:
    """Add ``source`` (a root) into ``target`` (a root), node by node; returns ``target``."""
    target.self_value += source.self_value
    target.self_count += source.self_count
    pending: List[Tuple[CallNode, CallNode]] = [(target, source)]
    while pending:
        into, node = pending.pop()
        for frame, child in node.children.items():
            sub = into.child(frame)
            sub.self_value += child.self_value
            sub.self_count += child.self_count
            if child.children:
                pending.append((sub, child))
    return target
