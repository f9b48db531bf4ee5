"""Chrome DevTools ``.heapprofile`` (CDP ``HeapProfiler.SamplingHeapProfile``) from a call tree.

``{head: Node, samples: [{size, nodeId, ordinal}]}`` with nested nodes
``{callFrame, selfSize, id, children}``. The tree's ``self_value`` is bytes.
A sampling profile lists one sample per sampled allocation; tracemalloc gives
exact totals instead, so each node with live bytes gets one sample carrying
its whole self size — the sums DevTools and speedscope show are then exact.
The JSON is written iteratively, so deep stacks cannot hit the recursion limit.
"""

from __future__ import annotations

import json
from typing import Dict, List, Tuple, Union

from otel_profiling.formats.calltree import CallNode

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _call_frame(node: CallNode, script_ids: Dict[str, int]) -> str:
    frame = node.frame
    script = script_ids.setdefault(frame.filename, len(script_ids) + 1) if frame.filename else 0
    line = frame.lineno - 1 if frame.lineno > 0 else -1
    column = 0 if line >= 0 else -1
    return (
        f'{{"functionName":{_dumps(frame.function)},"scriptId":"{script}",'
        f'"url":{_dumps(frame.filename)},"lineNumber":{line},"columnNumber":{column}}}'
    )


def encode_heapprofile(root: CallNode) -> bytes:
    """Encode ``root`` (self values in bytes) as ``.heapprofile`` JSON bytes."""
    parts: List[str] = ['{"head":']
    samples: List[str] = []
    script_ids: Dict[str, int] = {}
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
            f'{{"callFrame":{_call_frame(node, script_ids)},"selfSize":{size},'
            f'"id":{node_id},"children":['
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
