"""Chrome DevTools ``.cpuprofile`` (CDP ``Profiler.Profile``) from a call tree.

The tree has no timeline, so samples are synthesised: one sample per node with
self time, in depth-first order, whose duration (the delta to the next sample)
is that self time. DevTools, speedscope and VS Code then compute exactly the
tree's self and total times; the flame chart shows each node's time in one
block rather than interleaved as it really happened.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from otel_profiling.formats.calltree import CallNode


def encode_cpuprofile(root: CallNode, start_us: int, value_to_us: float = 1e6) -> bytes:
    """Encode ``root`` (self values in seconds by default) as ``.cpuprofile`` JSON bytes."""
    script_ids: Dict[str, str] = {}
    nodes: List[Dict[str, Any]] = []
    samples: List[int] = []
    deltas: List[int] = []
    ids: Dict[int, int] = {}
    elapsed = 0.0  # µs since start, as a float, rounded per sample to avoid drift
    last_stamp = 0

    order = list(root.walk())
    for index, (node, _) in enumerate(order, start=1):
        ids[id(node)] = index
    for node, _ in order:
        frame = node.frame
        script = (
            script_ids.setdefault(frame.filename, str(len(script_ids))) if frame.filename else "0"
        )
        self_us = node.self_value * value_to_us
        sampled = self_us >= 0.5
        nodes.append(
            {
                "id": ids[id(node)],
                "callFrame": {
                    "functionName": frame.function,
                    "scriptId": script,
                    "url": frame.filename,
                    "lineNumber": frame.lineno - 1 if frame.lineno > 0 else -1,
                    "columnNumber": -1 if frame.lineno <= 0 else 0,
                },
                "hitCount": 1 if sampled else 0,
                "children": [ids[id(child)] for child in node.children.values()],
            }
        )
        if sampled:
            stamp = round(elapsed)
            samples.append(ids[id(node)])
            deltas.append(stamp - last_stamp)
            last_stamp = stamp
            elapsed += self_us
    profile = {
        "nodes": nodes,
        "startTime": int(start_us),
        "endTime": int(start_us) + max(round(elapsed), last_stamp),
        "samples": samples,
        "timeDeltas": deltas,
    }
    return json.dumps(profile, separators=(",", ":")).encode("utf-8")
