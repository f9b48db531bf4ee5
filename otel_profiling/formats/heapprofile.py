"""Chrome DevTools ``.heapprofile`` (CDP ``HeapProfiler.SamplingHeapProfile``) from a call tree.

``{head: Node, samples: [{size, nodeId, ordinal}]}`` with nested nodes
``{callFrame, selfSize, id, children}``. The tree's ``self_value`` is bytes.
A sampling profile lists one sample per sampled allocation; tracemalloc gives
exact totals instead, so each node with live bytes gets one sample carrying
its whole self size — the sums DevTools and speedscope show are then exact.
The JSON is written iteratively, so deep stacks cannot hit the recursion limit.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple, Union

from otel_profiling.formats.calltree import CallNode, new_root
from otel_profiling.formats.format import (
    ProfileFormatError,
    ProfileTree,
    TreeFormat,
    json_document,
    json_object,
)
from otel_profiling.formats.v8 import CallFrames, FrameReader
from otel_profiling.profile import ProfileKind


def encode_heapprofile(root: CallNode) -> bytes:
    """Encode ``root`` (self values in bytes) as ``.heapprofile`` JSON bytes."""
    parts: List[str] = ['{"head":']
    samples: List[str] = []
    call_frame = CallFrames()
    next_id = 1
    # Work items: a node to open, or the string that closes an open node.
    work: List[Union[Tuple[CallNode], str]] = [(root,)]
    while work:
        item = work.pop()
        if isinstance(item, str):
            parts.append(item)
            continue
        node = item[0]
        node_id = next_id
        next_id += 1
        size = max(int(round(node.self_value)), 0)
        parts.append(
            f'{{"callFrame":{call_frame(node.frame)},"selfSize":{size},"id":{node_id},"children":['
        )
        if size:
            samples.append(f'{{"size":{size},"nodeId":{node_id},"ordinal":{len(samples) + 1}}}')
        children = list(node.children.values())
        work.append("]}")
        for index in range(len(children) - 1, -1, -1):
            work.append((children[index],))
            if index:
                work.append(",")
    parts.append(',"samples":[')
    parts.append(",".join(samples))
    parts.append("]}")
    return "".join(parts).encode("utf-8")


def decode_heapprofile(doc: Dict[str, Any]) -> ProfileTree:
    """``.heapprofile`` (sampling heap profile): ``selfSize`` bytes per nested node."""
    head = doc.get("head")
    if not isinstance(head, dict):
        raise ProfileFormatError("a .heapprofile needs a 'head' node")
    counts: Dict[int, int] = {}
    for sample in doc.get("samples") or []:
        counts[sample["nodeId"]] = counts.get(sample["nodeId"], 0) + 1
    root = new_root()
    frame_of = FrameReader()
    root.self_value += head.get("selfSize", 0)
    root.self_count += counts.get(head.get("id", -1), 0)
    pending: List[Tuple[Dict[str, Any], CallNode]] = [(head, root)]
    while pending:
        node, tree_node = pending.pop()
        for child in node.get("children", []):
            sub = tree_node.child(frame_of(child["callFrame"]))
            sub.self_value += child.get("selfSize", 0)
            sub.self_count += counts.get(child.get("id", -1), 0)
            pending.append((child, sub))
    # one sample per node with its whole size (see the module docstring): no object counts
    return ProfileTree(root, "bytes", "heapprofile", measure="inuse_space", has_counts=False)


class HeapprofileFormat(TreeFormat):
    """Chrome DevTools' sampling heap profile: the default heap format."""

    readable = True
    aliases = ("heaprofile",)

    def __init__(self) -> None:
        super().__init__(
            "heapprofile", "heapprofile", "application/json", [ProfileKind.HEAP_PROFILE]
        )

    def encode_tree(self, tree: ProfileTree) -> bytes:
        if tree.unit != "bytes":
            raise ProfileFormatError(
                f"a .heapprofile holds bytes, but this profile holds {tree.unit}: "
                "convert it to pprof, folded or speedscope instead"
            )
        return encode_heapprofile(tree.root)

    def decode(self, data: bytes) -> ProfileTree:
        return decode_heapprofile(json_document(data))

    def sniff(self, data: bytes) -> bool:
        doc = json_object(data)
        return doc is not None and "head" in doc


FORMAT = HeapprofileFormat()
