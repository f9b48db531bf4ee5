"""Adding call trees together: the merged tree of many profiles of one kind.

Merging walks the source tree once and adds each node's self value and count
to the node at the same path in the target, so the target grows only with
paths it has not seen: memory stays bounded by the merged tree, whatever the
number of inputs.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from otel_profiling.formats.calltree import CallNode, Frame


def merge_into(
    target: CallNode, source: CallNode, frames: Optional[Dict[Frame, Frame]] = None
) -> CallNode:
    """Add ``source`` (a root) into ``target`` (a root), node by node; returns ``target``.

    ``frames`` maps each frame to one shared instance: pass the same dict to
    every call so that new nodes of the merged tree reuse one ``Frame`` (and
    its strings) per code location instead of keeping each input's copies.
    """
    canonical = frames if frames is not None else {}
    target.self_value += source.self_value
    target.self_count += source.self_count
    pending: List[Tuple[CallNode, CallNode]] = [(target, source)]
    while pending:
        into, node = pending.pop()
        for frame, child in node.children.items():
            sub = into.children.get(frame)
            if sub is None:
                shared = canonical.setdefault(frame, frame)
                sub = into.children[shared] = CallNode(shared)
            sub.self_value += child.self_value
            sub.self_count += child.self_count
            if child.children:
                pending.append((sub, child))
    return target
